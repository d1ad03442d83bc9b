"""agentauthz: embeddable authorization for AI-native products.

Schema-driven relationships plus conditions, decided in process::

    from agentauthz import Authorizer

    authz = Authorizer(policy="policy.yaml", data="data.yaml")
    decision = authz.check("user:alice", "read", "document:42")
    if decision.allowed: ...
    print(decision.explain())
"""

from agentauthz.agents import Delegation
from agentauthz.authorizer import Authorizer
from agentauthz.backends import BaseBackend, LocalBackend
from agentauthz.cache import CacheStats, DecisionCache
from agentauthz.enforce import acting_as, authorize, current_authorizer, current_principal
from agentauthz.engine.evaluator import CheckRequest
from agentauthz.engine.explain import Explanation
from agentauthz.engine.sqlite import SQLiteStore
from agentauthz.engine.store import MemoryStore
from agentauthz.errors import (
    AgentAuthzError,
    ApprovalRequired,
    AuthorizationError,
    BackendError,
    ConditionError,
    ConfigurationError,
    CredentialError,
    Forbidden,
    InvalidInputError,
    NotFound,
    PolicyError,
    Problem,
    StateStoreUnavailable,
    StoreError,
    Unauthenticated,
)
from agentauthz.model import Decision, Entity, Outcome, Reason, Relationship
from agentauthz.policy.schema import Policy
from agentauthz.typing import Backend

__version__ = "0.1.0"

__all__ = [
    "AgentAuthzError",
    "ApprovalRequired",
    "AuthorizationError",
    "Authorizer",
    "Backend",
    "BackendError",
    "BaseBackend",
    "CacheStats",
    "CheckRequest",
    "ConditionError",
    "ConfigurationError",
    "CredentialError",
    "Decision",
    "DecisionCache",
    "Delegation",
    "Entity",
    "Explanation",
    "Forbidden",
    "InvalidInputError",
    "LocalBackend",
    "MemoryStore",
    "NotFound",
    "Outcome",
    "Policy",
    "PolicyError",
    "Problem",
    "Reason",
    "Relationship",
    "SQLiteStore",
    "StateStoreUnavailable",
    "StoreError",
    "Unauthenticated",
    "__version__",
    "acting_as",
    "authorize",
    "current_authorizer",
    "current_principal",
]
