"""The public contracts: protocols and type aliases, in one place.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

from agentauthz.engine.evaluator import CheckRequest
from agentauthz.model import Decision, Entity

if TYPE_CHECKING:
    from agentauthz.audit.records import AuditRecord

__all__ = ["AuditSink", "Backend", "Context", "EntityLike", "PrincipalResolver"]

EntityLike: TypeAlias = Entity | str
"""An :class:`~agentauthz.model.Entity` or its ``"type:id"`` string."""

Context: TypeAlias = Mapping[str, Any]
"""Request-time facts a condition can read as ``context.*``."""


@runtime_checkable
class Backend(Protocol):
    """What decides: the local evaluator, or an adapter to a remote engine.

    Four questions, each with an async twin. ``check`` never raises for a
    deny; an adapter that cannot reach its engine raises
    :class:`~agentauthz.errors.BackendError` and the
    :class:`~agentauthz.Authorizer` turns that into a deny (``backend_error``).
    ``version()`` identifies the state decisions depend on (policy and data),
    or returns ``None`` when the backend cannot tell; the decision cache keys
    on it.

    .. versionadded:: 0.1
    """

    name: str

    def version(self) -> Hashable | None: ...

    def check(self, principal: EntityLike, action: str, resource: EntityLike,
              context: Context | None = None) -> Decision: ...

    def check_many(self, requests: Sequence[CheckRequest]) -> list[Decision]: ...

    def list_resources(self, principal: EntityLike, action: str, resource_type: str,
                       context: Context | None = None) -> frozenset[str]: ...

    def list_actions(self, principal: EntityLike, resource: EntityLike,
                     context: Context | None = None) -> frozenset[str]: ...

    async def acheck(self, principal: EntityLike, action: str, resource: EntityLike,
                     context: Context | None = None) -> Decision: ...

    async def acheck_many(self, requests: Sequence[CheckRequest]) -> list[Decision]: ...

    async def alist_resources(self, principal: EntityLike, action: str, resource_type: str,
                              context: Context | None = None) -> frozenset[str]: ...

    async def alist_actions(self, principal: EntityLike, resource: EntityLike,
                            context: Context | None = None) -> frozenset[str]: ...


@runtime_checkable
class PrincipalResolver(Protocol):
    """Turns an incoming request into a principal, or ``None`` when there is none.

    .. versionadded:: 0.1
    """

    def __call__(self, request: Any) -> EntityLike | None: ...


@runtime_checkable
class AuditSink(Protocol):
    """Where audit records go: one method, called once per decision.

    ``emit`` runs on the decision path: it must be quick and should not
    block (buffer and write elsewhere, as
    :class:`~agentauthz.audit.JsonlFileSink` does). What it raises is counted
    and logged by the :class:`~agentauthz.audit.Auditor`, never passed to the
    caller. A sink may also have ``flush()`` and ``close()``; the auditor
    calls them when they exist.

    .. versionadded:: 0.1
    """

    def emit(self, record: AuditRecord) -> None: ...
