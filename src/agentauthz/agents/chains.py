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

Where ledgers live is a :class:`LedgerStore`: :class:`Ledgers` in memory by
default, or a shared store (Redis, :mod:`agentauthz.scale`) so that the
workers of one deployment see each other's steps. Its core operation,
:meth:`LedgerStore.record`, is atomic: read the task's summary, let the guard
decide, append the step if the guard allows it — so concurrent calls, in one
process or many, cannot overspend a budget.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, Protocol, runtime_checkable

from agentauthz.agents.tools import Effect
from agentauthz.errors import InvalidInputError
from agentauthz.model import Reason
from agentauthz.policy.definition import ChainRuleDefinition

__all__ = ["ChainRule", "Decide", "Ledger", "LedgerStore", "Ledgers", "Step", "Summary"]

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
    n: int = -1
    """The step's number in its ledger: the ledger's :attr:`Summary.count` when it was recorded."""


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

    def fires(self, seen: Summary, tool: str, effect: Effect,
              attributes: Mapping[str, Any]) -> str | None:
        """Why this rule fires for the next call, given what the task has done so far."""
        if not self.applies(tool, effect):
            return None
        if self.after_labels is not None:
            for label in sorted(self.after_labels & seen.labels.keys()):
                step = seen.labels[label]
                article = "an" if effect.value[0] in "aeiou" else "a"
                return (f"{article} {effect.value} call after this task read {label} data "
                        f"(via {step.tool} on {step.resource})")
            return None
        if self.first:
            assert self.effects is not None
            if self.effects & seen.effects or Effect.READ not in seen.effects:
                return None
            return f"the task's first {effect.value} call after reading"
        if self.max_calls is not None:
            used = sum(n for (t, e), n in seen.calls.items() if self.applies(t, e))
            if used >= self.max_calls:
                scope = f"tool {tool}" if self.tools else "this task"
                return f"budget of {self.max_calls} calls for {scope} is spent"
            return None
        name = self.same_attribute
        assert name is not None
        value = attributes.get(name)
        for earlier, step in seen.values.get(name, {}).items():
            if earlier != _hashed(value):
                return (f"{name} {str(value)[:64]!r} differs from an earlier step's "
                        f"{str(step.attributes.get(name))[:64]!r} ({step.resource})")
        return None

    def reason(self, why: str) -> Reason:
        kind = "chain_rule" if self.decision == "deny" else "step_up"
        return Reason(kind, f"chain rule {self.id!r}: {why}", self.id)


def _hashed(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


@dataclass(slots=True)
class Summary:
    """What a task has done, kept up to date as steps are added: rules read only this."""

    labels: dict[str, Step] = field(default_factory=dict)
    """Each label read, with the first step that read it."""
    effects: set[Effect] = field(default_factory=set)
    calls: dict[tuple[str, Effect], int] = field(default_factory=dict)
    values: dict[str, dict[Any, Step]] = field(default_factory=dict)
    """Per attribute name, each value seen (up to 8), with the first step that saw it."""
    count: int = 0
    """How many steps have been recorded."""

    def copy(self) -> Summary:
        """An independent copy (steps are immutable: they are shared)."""
        return Summary(dict(self.labels), set(self.effects), dict(self.calls),
                       {name: dict(seen) for name, seen in self.values.items()}, self.count)

    def add(self, step: Step) -> None:
        self.count += 1
        for label in step.labels:
            self.labels.setdefault(label, step)
        self.effects.add(step.effect)
        key = (step.tool, step.effect)
        self.calls[key] = self.calls.get(key, 0) + 1
        for name, value in step.attributes.items():
            seen = self.values.setdefault(name, {})
            if len(seen) < 8:
                seen.setdefault(_hashed(value), step)


@dataclass(slots=True)
class Ledger:
    """The steps of one task, in order, and their summary. Writers hold :attr:`lock`."""

    key: str
    steps: list[Step] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    lock: threading.Lock = field(default_factory=threading.Lock)
    truncated: bool = False

    def snapshot(self) -> tuple[Step, ...]:
        with self.lock:
            return tuple(self.steps)

    def append(self, step: Step) -> None:
        with self.lock:
            self.append_locked(step)

    def append_locked(self, step: Step) -> None:
        """Append while the caller holds :attr:`lock` (decide-and-record is one step).

        The summary keeps counting past :data:`MAX_STEPS`; only the oldest
        step records are dropped.
        """
        if len(self.steps) >= MAX_STEPS:
            self.truncated = True
            del self.steps[0]
        self.steps.append(step)
        self.summary.add(step)

    def add_labels_locked(self, step: Step, labels: frozenset[str]) -> Step:
        """Replace ``step`` by a copy with more labels (a result revealed them)."""
        updated = replace(step, labels=step.labels | labels)
        for i in range(len(self.steps) - 1, -1, -1):
            if self.steps[i] is step:
                self.steps[i] = updated
                break
        for label in labels:
            self.summary.labels.setdefault(label, updated)
        return updated


Decide = Callable[[Summary], "Step | None"]
"""Given what a task has done, the step to record now, or ``None`` to record nothing.

A shared store may call it more than once (it retries when another worker
recorded a step in between), so it must depend on its argument only, and the
last call is the one that counts.
"""


@runtime_checkable
class LedgerStore(Protocol):
    """Where the guard keeps each task's ledger. Every method is safe from many threads.

    Keys are ``task:<task id>`` or ``principal:<principal key>``. ``expires_at``
    (epoch seconds, ``None``: the store's default) says how long a ledger must
    be kept: a task's ledger is useless once its credential has expired.
    """

    def record(self, key: str, decide: Decide, *, expires_at: float | None = None
               ) -> Step | None:
        """Atomically: read ``key``'s summary, call ``decide``, append the step it returns.

        Returns the step as recorded (numbered), or ``None``. A shared store
        that cannot be reached raises
        :class:`~agentauthz.errors.StateStoreUnavailable`.
        """
        ...

    async def arecord(self, key: str, decide: Decide, *, expires_at: float | None = None
                      ) -> Step | None:
        """:meth:`record` for asyncio."""
        ...

    def add_labels(self, key: str, step: Step, labels: frozenset[str]) -> Step:
        """Add labels to a recorded step (a result revealed them); returns the updated step."""
        ...

    async def aadd_labels(self, key: str, step: Step, labels: frozenset[str]) -> Step:
        """:meth:`add_labels` for asyncio."""
        ...

    def steps(self, key: str) -> tuple[Step, ...]:
        """The recorded steps of ``key``, oldest first (at most :data:`MAX_STEPS`)."""
        ...

    def drop(self, key: str) -> None:
        """Forget ``key``'s ledger."""
        ...


class Ledgers:
    """Every live task's ledger in memory, keyed by task (bounded: the oldest are dropped).

    The in-process :class:`LedgerStore`: :meth:`record` decides and appends
    under the ledger's lock.
    """

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

    def record(self, key: str, decide: Decide, *, expires_at: float | None = None
               ) -> Step | None:
        ledger = self.get(key)
        with ledger.lock:
            step = decide(ledger.summary)
            if step is not None:
                ledger.append_locked(step)
            return step

    async def arecord(self, key: str, decide: Decide, *, expires_at: float | None = None
                      ) -> Step | None:
        return self.record(key, decide, expires_at=expires_at)

    def add_labels(self, key: str, step: Step, labels: frozenset[str]) -> Step:
        ledger = self.get(key)
        with ledger.lock:
            return ledger.add_labels_locked(step, labels)

    async def aadd_labels(self, key: str, step: Step, labels: frozenset[str]) -> Step:
        return self.add_labels(key, step, labels)

    def steps(self, key: str) -> tuple[Step, ...]:
        ledger = self.peek(key)
        return ledger.snapshot() if ledger is not None else ()


def now() -> float:
    return time.time()
