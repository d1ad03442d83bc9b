"""The embedded default: the local evaluator behind the backend protocol.

It does no I/O, so its async twins answer inline: awaiting them never yields
to the event loop, and costs what the sync call costs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from agentauthz.backends.base import BaseBackend
from agentauthz.engine.evaluator import CheckRequest, Evaluator
from agentauthz.engine.store import MemoryStore
from agentauthz.model import Decision
from agentauthz.policy.schema import Policy
from agentauthz.typing import Context, EntityLike

__all__ = ["LocalBackend"]


class LocalBackend(BaseBackend):
    """Decides in process with an :class:`~agentauthz.engine.Evaluator`."""

    name = "local"

    def __init__(self, policy: Policy, store: MemoryStore | None = None, *,
                 max_depth: int = 50) -> None:
        self.evaluator = Evaluator(policy, store, max_depth=max_depth)
        # bound methods: the hot path pays no extra frame
        self.check = self.evaluator.check  # type: ignore[method-assign]
        self.list_resources = self.evaluator.list_resources  # type: ignore[method-assign]
        self.list_actions = self.evaluator.list_actions  # type: ignore[method-assign]

    def version(self) -> Hashable:
        ev = self.evaluator
        return (ev.policy_version, ev.store.version)

    def check_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        return self.evaluator.check_many(requests)

    async def acheck(self, principal: EntityLike, action: str, resource: EntityLike,
                     context: Context | None = None) -> Decision:
        return self.evaluator.check(principal, action, resource, context)

    async def acheck_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        return self.evaluator.check_many(requests)

    async def alist_resources(self, principal: EntityLike, action: str, resource_type: str,
                              context: Context | None = None) -> frozenset[str]:
        return self.evaluator.list_resources(principal, action, resource_type, context)

    async def alist_actions(self, principal: EntityLike, resource: EntityLike,
                            context: Context | None = None) -> frozenset[str]:
        return self.evaluator.list_actions(principal, resource, context)
