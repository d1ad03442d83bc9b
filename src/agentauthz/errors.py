"""Every error agentauthz raises, in one tree.

::

    AgentAuthzError
    ├── ConfigurationError      bad configuration, raised at construction
    │   └── PolicyError         an invalid policy; carries every Problem found
    ├── InvalidInputError       a malformed entity, relationship or request (also a ValueError)
    ├── ConditionError          a condition failed to evaluate (becomes a deny reason, never an allow)
    ├── StoreError              the relationship store could not read or write
    │   └── StateStoreUnavailable  the shared state store (Redis) is unreachable or may be stale
    ├── BackendError            a backend could not answer (becomes a deny, or is raised if asked)
    └── AuthorizationError      not allowed; raised by authorize() and enforcement points
        ├── Unauthenticated     there is no principal
        │   └── CredentialError a task credential that cannot be trusted (carries reason)
        ├── Forbidden           may know the resource exists, may not do this
        ├── NotFound            may not even read it: answered as if it did not exist
        └── ApprovalRequired    needs a person's approval first (carries request_id)

A decision never raises for a deny: ``check`` returns a ``Decision``. Errors
met while deciding (a condition that fails, an input that cannot be parsed, a
backend that fails) deny with a reason instead of propagating. ``authorize``
raises an ``AuthorizationError`` that carries the decision.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentauthz.model import Decision

__all__ = [
    "AgentAuthzError",
    "ApprovalRequired",
    "AuthorizationError",
    "BackendError",
    "ConditionError",
    "ConfigurationError",
    "CredentialError",
    "Forbidden",
    "InvalidInputError",
    "NotFound",
    "PolicyError",
    "Problem",
    "StateStoreUnavailable",
    "StoreError",
    "Unauthenticated",
]


class AgentAuthzError(Exception):
    """Root of every error agentauthz raises."""


class ConfigurationError(AgentAuthzError):
    """Configuration that cannot work: raised at construction, never at decision time."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a policy: where it is, what is wrong, how to fix it."""

    message: str
    path: str = ""
    file: str | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file or "<policy>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: "
        if self.path:
            text += f"{self.path}: "
        text += self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class PolicyError(ConfigurationError):
    """An invalid policy. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        count = len(self.problems)
        head = f"invalid policy: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class InvalidInputError(AgentAuthzError, ValueError):
    """A malformed entity, relationship or request."""


class ConditionError(AgentAuthzError):
    """A condition could not be evaluated (missing attribute, wrong type, overflow...)."""


class StoreError(AgentAuthzError):
    """The relationship store failed to read or write."""


class StateStoreUnavailable(StoreError):
    """The shared state store (Redis) cannot be reached, or this process may have missed a change.

    Writes raise it (nothing was acknowledged); decisions that need the
    shared state deny with reason ``state_store_unavailable`` instead.
    """


class AuthorizationError(AgentAuthzError):
    """A request was not allowed. ``decision`` is the decision that said so (``None``
    when there was no principal to decide for)."""

    def __init__(self, decision: Decision | None, message: str | None = None) -> None:
        self.decision = decision
        if message is None and decision is not None and decision.reasons:
            message = decision.reasons[0].message
        super().__init__(message or type(self).__name__)


class Unauthenticated(AuthorizationError):
    """There is no principal: nobody to decide for."""


class CredentialError(Unauthenticated):
    """A task credential that cannot be trusted, so there is no principal to decide for.

    ``reason`` says why, one of ``malformed``, ``unknown_key``,
    ``bad_signature``, ``expired``, ``widened``, ``revoked``, ``wrong_agent``
    and ``too_long``; ``decision`` is ``None``: nothing was decided.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(None, message)
        self.reason = reason


class Forbidden(AuthorizationError):
    """The principal may know the resource exists, but may not do this to it."""


class NotFound(AuthorizationError):
    """The principal may not even read the resource: answer as if it did not exist."""


class ApprovalRequired(AuthorizationError):
    """The action needs a person's approval first; ``request_id`` names the request."""

    def __init__(self, decision: Decision | None, request_id: str,
                 message: str | None = None) -> None:
        super().__init__(decision, message)
        self.request_id = request_id


class BackendError(AgentAuthzError):
    """A backend could not answer: unreachable, timed out, or answered nonsense.

    The authorizer turns it into a deny with reason ``backend_error`` (or
    re-raises it, when configured to).
    """
