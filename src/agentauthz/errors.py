"""Every error agentauthz raises, in one tree.

::

    AgentAuthzError
    ├── ConfigurationError      bad configuration, raised at construction
    │   └── PolicyError         an invalid policy; carries every Problem found
    ├── InvalidInputError       a malformed entity, relationship or request (also a ValueError)
    ├── ConditionError          a condition failed to evaluate (becomes a deny reason, never an allow)
    └── StoreError              the relationship store could not read or write

A decision never raises for a deny: ``check`` returns a ``Decision``. Errors
met while deciding (a condition that fails, an input that cannot be parsed)
deny with a reason instead of propagating.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "AgentAuthzError",
    "ConditionError",
    "ConfigurationError",
    "InvalidInputError",
    "PolicyError",
    "Problem",
    "StoreError",
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
