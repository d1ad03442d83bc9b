"""The shared part of every backend: batch and async defaults built on the four questions.

A backend must implement ``check``, ``list_resources`` and ``list_actions``
(and their async twins when it does I/O). ``check_many`` defaults to one
``check`` per request. Anything a backend does not support raises
``NotImplementedError`` with a message, never returns a silent default.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from agentauthz.engine.evaluator import CheckRequest
from agentauthz.model import Decision
from agentauthz.typing import Context, EntityLike

__all__ = ["BaseBackend"]


class BaseBackend:
    """Inherit to write a backend; override what your engine answers."""

    name = "base"

    def version(self) -> Hashable | None:
        """The state decisions depend on; ``None`` when unknown (the cache then relies on TTL)."""
        return None

    def check(self, principal: EntityLike, action: str, resource: EntityLike,
              context: Context | None = None) -> Decision:
        raise NotImplementedError(f"{type(self).__name__} does not implement check()")

    def check_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        return [self.check(r.principal, r.action, r.resource, r.context) for r in requests]

    def list_resources(self, principal: EntityLike, action: str, resource_type: str,
                       context: Context | None = None) -> frozenset[str]:
        raise NotImplementedError(f"{type(self).__name__} does not implement list_resources()")

    def list_actions(self, principal: EntityLike, resource: EntityLike,
                     context: Context | None = None) -> frozenset[str]:
        raise NotImplementedError(f"{type(self).__name__} does not implement list_actions()")

    async def acheck(self, principal: EntityLike, action: str, resource: EntityLike,
                     context: Context | None = None) -> Decision:
        raise NotImplementedError(f"{type(self).__name__} does not implement acheck()")

    async def acheck_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        return [await self.acheck(r.principal, r.action, r.resource, r.context)
                for r in requests]

    async def alist_resources(self, principal: EntityLike, action: str, resource_type: str,
                              context: Context | None = None) -> frozenset[str]:
        raise NotImplementedError(f"{type(self).__name__} does not implement alist_resources()")

    async def alist_actions(self, principal: EntityLike, resource: EntityLike,
                            context: Context | None = None) -> frozenset[str]:
        raise NotImplementedError(f"{type(self).__name__} does not implement alist_actions()")
