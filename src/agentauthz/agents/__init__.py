"""Agents as first-class identities: registry, delegation, tasks, revocation, break-glass.

Each concept has one home:

- :mod:`~agentauthz.agents.registry` — the inventory of agents and their status;
- :mod:`~agentauthz.agents.identity` — workload identity (JWT-SVID, SPIFFE) to a registered agent;
- :mod:`~agentauthz.agents.delegation` — the rule for an agent acting for a user, in a task;
- :mod:`~agentauthz.agents.credentials` — signed, attenuable task credentials;
- :mod:`~agentauthz.agents.tasks` — a credential in force for one ``with`` block;
- :mod:`~agentauthz.agents.revocation` — revoked agents, tasks and credentials;
- :mod:`~agentauthz.agents.breakglass` — narrow, expiring emergency grants.
"""

from agentauthz.agents.breakglass import BreakGlass, BreakGlassGrant
from agentauthz.agents.credentials import KeyRing, Scope, ScopeItem, TaskCredential, TaskCredentials
from agentauthz.agents.delegation import AgentLayer, Delegation
from agentauthz.agents.registry import AgentRecord, AgentRegistry, AgentStatus, AgentUsage, RiskTier
from agentauthz.agents.revocation import (
    MemoryRevocationStore,
    Revocation,
    RevocationKind,
    RevocationStore,
)
from agentauthz.agents.tasks import Task

__all__ = [
    "AgentLayer",
    "AgentRecord",
    "AgentRegistry",
    "AgentStatus",
    "AgentUsage",
    "BreakGlass",
    "BreakGlassGrant",
    "Delegation",
    "KeyRing",
    "MemoryRevocationStore",
    "Revocation",
    "RevocationKind",
    "RevocationStore",
    "RiskTier",
    "Scope",
    "ScopeItem",
    "Task",
    "TaskCredential",
    "TaskCredentials",
]
