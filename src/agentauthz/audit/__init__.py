"""Audit: one record per decision, redacted, sent to sinks; a hash-chained file to prove it.

::

    from agentauthz import Authorizer
    from agentauthz.audit import JsonlFileSink, LoggingSink

    authz = Authorizer(policy="policy.yaml",
                       audit=[LoggingSink(), JsonlFileSink("decisions.jsonl")])

Then ``agentauthz audit verify decisions.jsonl`` proves nothing was edited,
dropped, reordered or inserted; ``agentauthz audit show`` and ``report``
read the evidence. See ``docs/audit.md``.
"""

from agentauthz.audit.auditor import Auditor
from agentauthz.audit.chain import GENESIS, VerifyResult, verify
from agentauthz.audit.records import AuditRecord
from agentauthz.audit.redaction import DEFAULT_KEYS, DEFAULT_VALUES, MASK, Redactor
from agentauthz.audit.sinks import JsonlFileSink, LoggingSink, MemorySink
from agentauthz.typing import AuditSink

__all__ = [
    "DEFAULT_KEYS",
    "DEFAULT_VALUES",
    "GENESIS",
    "MASK",
    "AuditRecord",
    "AuditSink",
    "Auditor",
    "JsonlFileSink",
    "LoggingSink",
    "MemorySink",
    "Redactor",
    "VerifyResult",
    "verify",
]
