"""The agent registry: the inventory of non-human identities the authorizer trusts.

Every agent that may act is registered with an owner (the person or team
answerable for it), a risk tier, a status, a purpose and the tools it is
approved to use. The registry is consulted on **every** decision whose
principal is an agent, before any cache: an agent that is unknown, suspended
or retired is denied on its very next decision, with a reason that says which.

Agents come from the policy file's ``agents:`` section, from a separate YAML
or JSON file (:meth:`AgentRegistry.load`), or from :meth:`AgentRegistry.register`.
Usage is recorded as decisions are made (last use, counts, tools called,
resources reached), so :meth:`AgentRegistry.export` can hand governance its
evidence: who owns each agent, what it may use, when it last acted, and —
with an authorizer, see ``Authorizer.governance_report`` — which of its
grants were never used.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import ValidationError

from agentauthz.errors import ConfigurationError, InvalidInputError, PolicyError
from agentauthz.model import Reason, parse_entity_key
from agentauthz.policy.definition import AgentDefinition

__all__ = ["AgentRecord", "AgentRegistry", "AgentStatus", "AgentUsage", "RiskTier"]

MAX_TRACKED_RESOURCES: Final = 10_000
"""Distinct (action, resource) pairs remembered per agent for the over-privilege report."""


class RiskTier(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class AgentStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    RETIRED = "retired"


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One registered agent. Immutable: a status change replaces the record."""

    id: str
    owner: str
    purpose: str
    risk: RiskTier = RiskTier.MEDIUM
    status: AgentStatus = AgentStatus.ACTIVE
    tools: frozenset[str] = frozenset()
    spiffe_id: str | None = None
    description: str | None = None
    created_at: float = 0.0
    status_reason: str = ""
    status_changed_at: float | None = None

    @property
    def active(self) -> bool:
        return self.status is AgentStatus.ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "purpose": self.purpose,
            "risk": self.risk.value,
            "status": self.status.value,
            "status_reason": self.status_reason or None,
            "status_changed_at": _iso(self.status_changed_at),
            "approved_tools": sorted(self.tools),
            "spiffe_id": self.spiffe_id,
            "description": self.description,
            "created_at": _iso(self.created_at),
        }


@dataclass(slots=True)
class AgentUsage:
    """What an agent has done: kept per agent, updated on each of its decisions."""

    last_used_at: float | None = None
    allowed: int = 0
    denied: int = 0
    tools: dict[str, int] = field(default_factory=dict)
    reached: set[tuple[str, str]] = field(default_factory=set)
    """Allowed (action, resource) pairs, up to :data:`MAX_TRACKED_RESOURCES`."""
    truncated: bool = False

    @property
    def decisions(self) -> int:
        return self.allowed + self.denied


class AgentRegistry:
    """The agents an authorizer knows, their status, and what they have used.

    Thread-safe. Reads on the decision path take no lock: records are
    immutable and replaced whole.
    """

    def __init__(self, agents: Iterable[AgentRecord | AgentDefinition | Mapping[str, Any]] = (),
                 *, agent_types: Iterable[str] = ("agent",),
                 clock: Callable[[], float] = time.time) -> None:
        self._records: dict[str, AgentRecord] = {}
        self._spiffe: dict[str, str] = {}
        self._usage: dict[str, AgentUsage] = {}
        self._lock = threading.RLock()
        self._clock = clock
        self._types: set[str] = set(agent_types)
        self._listeners: list[Callable[[str], None]] = []
        for agent in agents:
            self._add(_record(agent, clock()), replace_existing=False)

    # ------------------------------------------------------------- loading
    @classmethod
    def load(cls, source: str | os.PathLike[str] | Mapping[str, Any], *,
             known_types: Iterable[str] = ()) -> AgentRegistry:
        """A registry from a YAML/JSON file (or mapping) with an ``agents:`` list.

        Problems are reported all at once with file, line and hint, as for a
        policy; ``known_types`` (the policy's types) are checked when given.
        """
        registry = cls()
        registry.load_into(source, known_types=known_types)
        return registry

    def load_into(self, source: str | os.PathLike[str] | Mapping[str, Any], *,
                  known_types: Iterable[str] = ()) -> list[AgentRecord]:
        """Register every agent of a file or mapping; all or nothing."""
        from agentauthz.policy.loader import read_source
        from agentauthz.policy.schema import resolve_agents

        src = read_source(source)
        positions = src.positions
        data = src.data
        if not isinstance(data, dict) or not isinstance(data.get("agents"), list):
            raise PolicyError([positions.problem((), "an agent registry file needs an "
                                                 "'agents:' list", hint="agents:\n  - id: ...")])
        problems = []
        definitions = []
        for index, item in enumerate(data["agents"]):
            try:
                definitions.append((index, AgentDefinition.model_validate(item)))
            except ValidationError as exc:
                for err in exc.errors():
                    path = ("agents", index, *(p for p in err["loc"] if isinstance(p, str | int)))
                    message = (f"unknown field {path[-1]!r}" if err["type"] == "extra_forbidden"
                               else err["msg"])
                    problems.append(positions.problem(path, message))
        types = dict.fromkeys(known_types)
        with self._lock:
            resolved = resolve_agents([d for _, d in definitions], types, positions, problems,
                                      indices=[i for i, _ in definitions])
            for definition in resolved:
                if definition.id in self._records:
                    problems.append(positions.problem(("agents",),
                                                      f"agent {definition.id!r} is already "
                                                      "registered"))
            if problems:
                raise PolicyError(problems)
            now = self._clock()
            return [self._add(_record(d, now), replace_existing=False) for d in resolved]

    # -------------------------------------------------------------- writes
    def register(self, id: str, *, owner: str, purpose: str,
                 risk: RiskTier | str = RiskTier.MEDIUM, tools: Iterable[str] = (),
                 status: AgentStatus | str = AgentStatus.ACTIVE, spiffe_id: str | None = None,
                 description: str | None = None, replace: bool = False) -> AgentRecord:
        """Register an agent (``replace=True`` to update one already registered)."""
        return self._add(_record({"id": id, "owner": owner, "purpose": purpose, "risk": str(risk),
                                  "tools": list(tools), "status": str(status),
                                  "spiffe_id": spiffe_id, "description": description},
                                 self._clock()), replace_existing=replace)

    def suspend(self, agent: str, *, reason: str = "") -> AgentRecord:
        """Stop an agent on its next decision; :meth:`activate` brings it back."""
        return self._set_status(agent, AgentStatus.SUSPENDED, reason)

    def retire(self, agent: str, *, reason: str = "") -> AgentRecord:
        """Stop an agent for good: a retired agent cannot be activated again."""
        return self._set_status(agent, AgentStatus.RETIRED, reason)

    def activate(self, agent: str, *, reason: str = "") -> AgentRecord:
        return self._set_status(agent, AgentStatus.ACTIVE, reason)

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(agent_key)`` after each change; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _set_status(self, agent: str, status: AgentStatus, reason: str) -> AgentRecord:
        key = _key(agent)
        with self._lock:
            record = self._records.get(key)
            if record is None:
                raise InvalidInputError(f"agent {key!r} is not registered")
            if record.status is AgentStatus.RETIRED and status is not AgentStatus.RETIRED:
                raise InvalidInputError(f"agent {key!r} is retired; register a new agent instead")
            updated = replace(record, status=status, status_reason=reason,
                              status_changed_at=self._clock())
            self._records[key] = updated
        self._changed(key)
        return updated

    def _add(self, record: AgentRecord, *, replace_existing: bool) -> AgentRecord:
        with self._lock:
            old = self._records.get(record.id)
            if old is not None and not replace_existing:
                raise ConfigurationError(f"agent {record.id!r} is already registered; pass "
                                         "replace=True to update it")
            if record.spiffe_id is not None:
                holder = self._spiffe.get(record.spiffe_id)
                if holder is not None and holder != record.id:
                    raise ConfigurationError(f"SPIFFE id {record.spiffe_id!r} already names "
                                             f"{holder!r}")
            if old is not None:
                if old.spiffe_id is not None:
                    self._spiffe.pop(old.spiffe_id, None)
                record = replace(record, created_at=old.created_at)
            self._records[record.id] = record
            if record.spiffe_id is not None:
                self._spiffe[record.spiffe_id] = record.id
            self._types.add(record.id.partition(":")[0])
            self._usage.setdefault(record.id, AgentUsage())
        self._changed(record.id)
        return record

    def _changed(self, key: str) -> None:
        for listener in list(self._listeners):
            listener(key)

    # --------------------------------------------------------------- reads
    @property
    def agent_types(self) -> frozenset[str]:
        """Entity types whose principals are agents (and so must be registered)."""
        return frozenset(self._types)

    def get(self, agent: str) -> AgentRecord | None:
        return self._records.get(agent if agent.__class__ is str else _key(agent))

    def by_spiffe_id(self, spiffe_id: str) -> AgentRecord | None:
        key = self._spiffe.get(spiffe_id)
        return self._records.get(key) if key is not None else None

    def __contains__(self, agent: object) -> bool:
        return isinstance(agent, str) and agent in self._records

    def __iter__(self) -> Iterator[AgentRecord]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def is_agent(self, principal_key: str) -> bool:
        """Whether a principal key names an agent type (registered or not)."""
        return principal_key.partition(":")[0] in self._types

    def gate(self, agent_key: str) -> Reason | None:
        """``None`` if the agent may act now; else the reason it may not."""
        record = self._records.get(agent_key)
        if record is None:
            return Reason("unknown_agent", f"agent {agent_key[:128]!r} is not registered; "
                          "unregistered agents are denied")
        if record.status is AgentStatus.ACTIVE:
            return None
        why = f" ({record.status_reason})" if record.status_reason else ""
        return Reason(f"agent_{record.status.value}",
                      f"agent {agent_key!r} is {record.status.value}{why}")

    # --------------------------------------------------------------- usage
    def record_use(self, agent_key: str, action: str, resource: str, allowed: bool) -> None:
        """Note one decision of a registered agent (unregistered ones are not tracked)."""
        usage = self._usage.get(agent_key)
        if usage is None:
            return
        usage.last_used_at = self._clock()
        if allowed:
            usage.allowed += 1
            reached = usage.reached
            if len(reached) < MAX_TRACKED_RESOURCES:
                reached.add((action, resource))
            elif (action, resource) not in reached:
                usage.truncated = True
        else:
            usage.denied += 1

    def record_tool(self, agent_key: str, tool: str) -> None:
        """Note that an agent called a tool (the tool guard calls this)."""
        usage = self._usage.get(agent_key)
        if usage is not None:
            usage.tools[tool] = usage.tools.get(tool, 0) + 1
            usage.last_used_at = self._clock()

    def usage(self, agent: str) -> AgentUsage | None:
        return self._usage.get(_key(agent))

    # -------------------------------------------------------------- export
    def export(self, *, grants: Callable[[AgentRecord, AgentUsage], dict[str, Any]] | None = None
               ) -> dict[str, Any]:
        """Governance evidence as a JSON-ready dict: every agent, its owner, use and tools.

        ``grants``, given by the authorizer, adds each agent's grants and the
        ones it never used.
        """
        agents = []
        for record in sorted(self, key=lambda r: r.id):
            usage = self._usage.get(record.id) or AgentUsage()
            entry = record.to_dict()
            used_tools = set(usage.tools)
            entry.update({
                "last_used_at": _iso(usage.last_used_at),
                "decisions": {"total": usage.decisions, "allowed": usage.allowed,
                              "denied": usage.denied},
                "tools_used": dict(sorted(usage.tools.items())),
                "approved_tools_never_used": sorted(record.tools - used_tools),
                "tools_used_without_approval": sorted(used_tools - record.tools),
            })
            if grants is not None:
                entry.update(grants(record, usage))
            agents.append(entry)
        return {"generated_at": _iso(self._clock()), "agents": agents}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.export(**kwargs), indent=2, sort_keys=False)


def _key(agent: object) -> str:
    if isinstance(agent, str):
        text = agent if ":" in agent else f"agent:{agent}"
    else:
        found = getattr(agent, "key", None)
        if not isinstance(found, str):
            raise InvalidInputError(f"an agent is an Entity or a 'type:id' string, got "
                                    f"{type(agent).__name__}")
        text = found
    parse_entity_key(text, what="agent")
    return text


def _record(agent: AgentRecord | AgentDefinition | Mapping[str, Any], now: float) -> AgentRecord:
    if isinstance(agent, AgentRecord):
        return agent if agent.created_at else replace(agent, created_at=now)
    if not isinstance(agent, AgentDefinition):
        data = {k: v for k, v in agent.items() if v is not None or k == "spiffe_id"}
        try:
            agent = AgentDefinition.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInputError(f"agent {data.get('id')!r}: {where}: {first['msg']}") from None
    from agentauthz.policy.loader import Positions
    from agentauthz.policy.schema import resolve_agents

    problems: list[Any] = []
    resolved = resolve_agents([agent], {}, Positions(None), problems)
    if problems:
        raise InvalidInputError("; ".join(f"{p.path}: {p.message}" + (f" ({p.hint})" if p.hint
                                                                        else "")
                                          for p in problems))
    definition = resolved[0]
    return AgentRecord(id=definition.id, owner=definition.owner, purpose=definition.purpose,
                       risk=RiskTier(definition.risk), status=AgentStatus(definition.status),
                       tools=frozenset(definition.tools), spiffe_id=definition.spiffe_id,
                       description=definition.description, created_at=now)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
