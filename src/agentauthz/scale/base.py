"""What an :class:`~agentauthz.Authorizer` asks of a shared state: the seam, without Redis.

An authorizer given ``state=`` takes its revocation store, ledger store,
approval store and break-glass grants from the state, hands it a
:class:`Replica` — the parts of itself the state keeps up to date from the
change feed — and from then on:

- asks :meth:`SharedState.ready` before every decision, and denies with
  :meth:`SharedState.unavailable` while the state cannot vouch for this
  process's copies (the decision cache is not consulted then);
- sends relationship and attribute writes, policy reloads and invalidations
  through the state, which applies them to every worker, this one included.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agentauthz.agents.approvals import ApprovalStore
    from agentauthz.agents.breakglass import BreakGlass
    from agentauthz.agents.chains import LedgerStore
    from agentauthz.agents.revocation import RevocationStore
    from agentauthz.engine.store import MemoryStore, RelationTuple
    from agentauthz.model import Reason
    from agentauthz.policy.schema import Policy

__all__ = ["Replica", "SharedState"]


@dataclass(frozen=True, slots=True)
class Replica:
    """The parts of one authorizer that a shared state keeps in step with every other worker."""

    store: MemoryStore | None
    """This process's relationships and attributes (``None``: a remote backend holds them)."""
    policy_version: Callable[[], str]
    set_policy: Callable[[Policy], None] | None
    """Swap in a policy another worker reloaded, without publishing it again."""
    invalidate: Callable[[], None]
    """Drop this process's cached decisions."""


@runtime_checkable
class SharedState(Protocol):
    """State shared by every worker of one deployment (see the module docstring)."""

    @property
    def revocations(self) -> RevocationStore:
        """Revocations, shared."""
        ...

    @property
    def ledgers(self) -> LedgerStore:
        """Task ledgers, shared."""
        ...

    @property
    def approvals(self) -> ApprovalStore:
        """Approval requests and approvals, shared."""
        ...

    def breakglass(self, *, on_change: Callable[[], None]) -> BreakGlass:
        """The break-glass grants, shared; ``on_change`` runs whenever they change."""
        ...

    def bind(self, replica: Replica) -> None:
        """Connect, load the shared state into ``replica`` and follow the feed.

        Raises :class:`~agentauthz.errors.ConfigurationError` when the store
        cannot be reached, naming where it looked and what to fix.
        """
        ...

    def ready(self) -> bool:
        """Whether this process's copies are known to be current (cheap: every decision asks)."""
        ...

    def unavailable(self) -> Reason:
        """The deny reason (``state_store_unavailable``) while not :meth:`ready`."""
        ...

    def write(self, add: Sequence[RelationTuple], remove: Sequence[RelationTuple]) -> int:
        """Apply validated relationship changes everywhere; returns how many changed."""
        ...

    def set_attributes(self, items: Sequence[tuple[str, Mapping[str, Any] | None]]) -> None:
        """Replace entities' attributes everywhere (``None`` removes them)."""
        ...

    def publish_policy(self, policy: Policy) -> None:
        """Tell every other worker to swap in ``policy`` (already in force here)."""
        ...

    def invalidate_everywhere(self) -> None:
        """Make every worker drop its cached decisions (a remote backend changed)."""
        ...

    def claim_seed(self) -> bool:
        """Whether this worker is the first on the shared state, so ``data=`` should seed it."""
        ...

    def close(self) -> None:
        """Stop following the feed and close connections."""
        ...
