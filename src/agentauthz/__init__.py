"""agentauthz: embeddable authorization for AI-native products.

Schema-driven relationships plus conditions, decided in process::

    from agentauthz import Authorizer

    authz = Authorizer(policy="policy.yaml", data="data.yaml")
    decision = authz.check("user:alice", "read", "document:42")
    if decision.allowed: ...
    print(decision.explain())
"""

from agentauthz.authorizer import Authorizer
from agentauthz.engine.evaluator import CheckRequest
from agentauthz.engine.explain import Explanation
from agentauthz.engine.sqlite import SQLiteStore
from agentauthz.engine.store import MemoryStore
from agentauthz.errors import (
    AgentAuthzError,
    ConditionError,
    ConfigurationError,
    InvalidInputError,
    PolicyError,
    Problem,
    StoreError,
)
from agentauthz.model import Decision, Entity, Outcome, Reason, Relationship
from agentauthz.policy.schema import Policy

__version__ = "0.1.0"

__all__ = [
    "AgentAuthzError",
    "Authorizer",
    "CheckRequest",
    "ConditionError",
    "ConfigurationError",
    "Decision",
    "Entity",
    "Explanation",
    "InvalidInputError",
    "MemoryStore",
    "Outcome",
    "Policy",
    "PolicyError",
    "Problem",
    "Reason",
    "Relationship",
    "SQLiteStore",
    "StoreError",
    "__version__",
]
