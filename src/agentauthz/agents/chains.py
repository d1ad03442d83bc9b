"""Chain rules: decisions over what a task has already done.

The tool guard keeps a :class:`Ledger` per task: one :class:`Step` per call
(tool, action, resource, effect, labels read, a few resource attributes,
outcome). Chain rules, written in the policy's ``chains:`` section, look at
the ledger before each call and deny it or require approval::

    chains:
      - id: no-exfiltration
        effect: external                      # applies to calls with this effect
        after_labels: [confidential, restricted]
        decision: deny                        # or approval_required
      - id: step-up-on-first-write
        effect: [write]
        first: true                           # the first write after reading
        decision: approval_required
      - {id: kb-budget, tool: search_kb, max_calls: 5}
      - {id: one-tenant, same_attribute: tenant}

Only allowed steps count: a denied call left no trace in the world. Ledgers
are isolated per task (and per delegation outside a task) and safe to use
from many threads and asyncio tasks at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from agentauthz.agents.tools import Effect
from agentauthz.errors import InvalidInputError
from agentauthz.model import Reason
from agentauthz.policy.definition import ChainRuleDefinition

__all__ = ["ChainRule", "Ledger", "Ledgers", "Step"]

MAX_STEPS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Step:
    """One tool call a task made (or tried)."""

    tool: str
    action: str
    resource: str
    effect: Effect
    labels: frozenset[str]
    attributes: Mapping[str, Any]
    allowed: bool
    at: float


@dataclass(frozen=True, slots=True)
class ChainRule:
    """A compiled chain rule (see the module docstring)."""

    id: str
    tools: frozenset[str] | None = None
    effects: frozenset[Effect] | None = None
    after_labels: frozenset[str] | None = None
    first: bool = False
    max_calls: int | None = None
    same_attribute: str | None = None
    decision: Literal["deny", "approval_required"] = "deny"
    description: str | None = None

    @classmethod
    def from_definition(cls, d: ChainRuleDefinition) -> ChainRule:
        kinds = [d.after_labels is not None, d.first, d.max_calls is not None,
                 d.same_attribute is not None]
        if sum(kinds) != 1:
            raise InvalidInputError(f"chain rule {d.id!r} needs exactly one of after_labels, "
                                    "first, max_calls, same_attribute")
        if d.max_calls is not None and d.max_calls < 0:
            raise InvalidInputError(f"chain rule {d.id!r}: max_calls must be 0 or more")
        if d.first and not d.effect:
            raise InvalidInputError(f"chain rule {d.id!r}: first needs an effect (e.g. write)")
        return cls(d.id, frozenset(d.tool) if d.tool else None,
                   frozenset(Effect(e) for e in d.effect) if d.effect else None,
                   frozenset(d.after_labels) if d.after_labels is not None else None, d.first,
                   d.max_calls, d.same_attribute, d.decision, d.description)

    def applies(self, tool: str, effect: Effect) -> bool:
        return ((self.tools is None or tool in self.tools)
                and (self.effects is None or effect in self.effects))

    def fires(self, steps: Iterable[Step], tool: str, effect: Effect,
              attributes: Mapping[str, Any]) -> str | None:
        """Why this rule fires for the next call, given the earlier allowed steps."""
        if not self.applies(tool, effect):
            return None
        done = [s for s in steps if s.allowed]
        if self.after_labels is not None:
            for step in done:
                hit = step.labels & self.after_labels
                if hit:
                    article = "an" if effect.value[0] in "aeiou" else "a"
                    return (f"{article} {effect.value} call after this task read "
                            f"{sorted(hit)[0]} data "
                            f"(via {step.tool} on {step.resource})")
            return None
        if self.first:
            assert self.effects is not None
            if any(s.effect in self.effects for s in done):
                return None
            if any(s.effect is Effect.READ for s in done):
                return f"the task's first {effect.value} call after reading"
            return None
        if self.max_calls is not None:
            used = sum(1 for s in done if self.applies(s.tool, s.effect))
            if used >= self.max_calls:
                scope = f"tool {tool}" if self.tools else "this task"
                return f"budget of {self.max_calls} calls for {scope} is spent"
            return None
        name = self.same_attribute
        assert name is not None
        value = attributes.get(name)
        for step in done:
            earlier = step.attributes.get(name)
            if earlier is not None and earlier != value:
                return (f"{name} {str(value)[:64]!r} differs from an earlier step's "
                        f"{str(earlier)[:64]!r} ({step.resource})")
        return None

    def reason(self, why: str) -> Reason:
        kind = "chain_rule" if self.decision == "deny" else "step_up"
        return Reason(kind, f"chain rule {self.id!r}: {why}", self.id)


@dataclass(slots=True)
class Ledger:
    """The steps of one task, in order. Appends and reads hold its lock."""

    key: str
    steps: list[Step] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    truncated: bool = False

    def snapshot(self) -> tuple[Step, ...]:
        with self.lock:
            return tuple(self.steps)

    def append(self, step: Step) -> None:
        with self.lock:
            self.append_locked(step)

    def append_locked(self, step: Step) -> None:
        """Append while the caller holds :attr:`lock` (decide-and-record is one step)."""
        if len(self.steps) >= MAX_STEPS:
            self.truncated = True
            del self.steps[0]
        self.steps.append(step)


class Ledgers:
    """Every live task's ledger, keyed by task (bounded: the oldest are dropped)."""

    def __init__(self, *, max_ledgers: int = 10_000) -> None:
        self._ledgers: OrderedDict[str, Ledger] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_ledgers

    def get(self, key: str) -> Ledger:
        with self._lock:
            ledger = self._ledgers.get(key)
            if ledger is None:
                ledger = self._ledgers[key] = Ledger(key)
                while len(self._ledgers) > self._max:
                    self._ledgers.popitem(last=False)
            else:
                self._ledgers.move_to_end(key)
            return ledger

    def peek(self, key: str) -> Ledger | None:
        return self._ledgers.get(key)

    def drop(self, key: str) -> None:
        with self._lock:
            self._ledgers.pop(key, None)


def now() -> float:
    return time.time()
