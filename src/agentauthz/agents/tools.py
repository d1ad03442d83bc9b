"""Tool declarations: what a tool does, to which resource, and what it may return.

A :class:`ToolSpec` tells the guard how to turn a call into an authorization
request: the **action** it performs, the **resource** derived from its
arguments (a template such as ``"ticket:{ticket_id}"`` or a callable), its
**effect** class (``read``; ``write``; ``external`` — data leaves the system;
``privileged``), the **labels** of the data it returns (static, or read from
the resource's attribute, ``classification`` by default), **constraints** on
its arguments (allowed values, ranges, patterns, URL hosts), how its
**result** maps to resources for filtering, and — for tools that change
privileges, mint tokens or change credentials — its **hard-block** category.

Write them in Python (``ToolSpec(...)``, or ``@guarded_tool(...)`` in
:mod:`~agentauthz.agents.guard`) or in the policy file's ``tools:`` section::

    tools:
      read_ticket: {action: read, resource: "ticket:{ticket_id}"}
      export_csv:
        action: export
        resource: "document:{doc_id}"
        effect: external
        constraints: {to: {pattern: ".*@acme\\\\.example"}}
      create_api_key: {hard_block: token_minting}

A tool without a resource template is checked as ``action`` on ``tool:<name>``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from agentauthz.agents.hardblock import HardBlock
from agentauthz.errors import InvalidInputError
from agentauthz.model import Entity, parse_entity_key
from agentauthz.policy.definition import (
    ArgumentConstraintDefinition,
    ResultDefinition,
    ToolDefinition,
)

__all__ = ["ArgumentConstraint", "Effect", "ResultSpec", "ToolSpec", "fill_template"]

_FORMATTER: Final = string.Formatter()
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
MAX_ARGUMENT_TEXT: Final = 4096


class Effect(StrEnum):
    READ = "read"
    WRITE = "write"
    EXTERNAL = "external"
    PRIVILEGED = "privileged"


@dataclass(frozen=True, slots=True)
class ArgumentConstraint:
    """What one argument may be. Every given check must hold; ``None`` skips it."""

    one_of: frozenset[Any] | None = None
    min: float | None = None
    max: float | None = None
    pattern: re.Pattern[str] | None = None
    hosts: tuple[str, ...] | None = None
    max_length: int | None = None
    required: bool = False

    @classmethod
    def of(cls, spec: ArgumentConstraint | ArgumentConstraintDefinition | Mapping[str, Any]
           ) -> ArgumentConstraint:
        if isinstance(spec, ArgumentConstraint):
            return spec
        if not isinstance(spec, ArgumentConstraintDefinition):
            spec = ArgumentConstraintDefinition.model_validate(dict(spec))
        try:
            pattern = re.compile(spec.pattern) if spec.pattern is not None else None
        except re.error as exc:
            raise InvalidInputError(f"pattern {spec.pattern!r} does not compile: {exc}") from None
        hosts = None
        if spec.hosts is not None:
            hosts = tuple(h.lower().rstrip(".") for h in spec.hosts)
            if not all(hosts):
                raise InvalidInputError("hosts must be non-empty host names")
        return cls(frozenset(spec.one_of) if spec.one_of is not None else None, spec.min,
                   spec.max, pattern, hosts, spec.max_length, spec.required)

    def problem(self, name: str, value: Any, present: bool) -> str | None:
        """Why ``value`` breaks this constraint, or ``None``. Never echoes long values."""
        if not present:
            return f"argument {name!r} is required" if self.required else None
        if self.one_of is not None and (not _hashable(value) or value not in self.one_of):
            return f"argument {name!r} must be one of {sorted(map(str, self.one_of))}"
        if self.min is not None or self.max is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"argument {name!r} must be a number"
            if self.min is not None and value < self.min:
                return f"argument {name!r} must be at least {self.min:g}"
            if self.max is not None and value > self.max:
                return f"argument {name!r} must be at most {self.max:g}"
        if self.pattern is not None or self.hosts is not None or self.max_length is not None:
            if not isinstance(value, str):
                return f"argument {name!r} must be a string"
            if self.max_length is not None and len(value) > self.max_length:
                return f"argument {name!r} is longer than {self.max_length} characters"
            if len(value) > MAX_ARGUMENT_TEXT:
                return f"argument {name!r} is longer than {MAX_ARGUMENT_TEXT} characters"
            if self.pattern is not None and not self.pattern.fullmatch(value):
                return f"argument {name!r} does not match {self.pattern.pattern!r}"
            if self.hosts is not None:
                host = _host(value)
                if host is None:
                    return f"argument {name!r} must be an http(s) URL"
                if not any(host == h or (h.startswith(".") and host.endswith(h))
                           for h in self.hosts):
                    return f"argument {name!r} names host {host[:100]!r}, not one of " \
                           f"{list(self.hosts)}"
        return None


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _host(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host or parts.username \
            or parts.password:
        return None
    return host.lower().rstrip(".")


@dataclass(frozen=True, slots=True)
class ResultSpec:
    """How a result maps to resources: records dropped, fields removed or masked.

    ``resource`` is a template filled from each record (``"document:{id}"``);
    ``records`` names the key holding the list (``None``: the result itself is
    a record or a list of records); ``fields`` maps result keys to the
    resource's declared fields; ``mask`` replaces a withheld value instead of
    removing its key.
    """

    resource: str
    action: str = "read"
    records: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    mask: str | None = None

    @classmethod
    def of(cls, spec: ResultSpec | ResultDefinition | Mapping[str, Any]) -> ResultSpec:
        if isinstance(spec, ResultSpec):
            return spec
        if not isinstance(spec, ResultDefinition):
            spec = ResultDefinition.model_validate(dict(spec))
        _check_template(spec.resource, "result.resource")
        return cls(spec.resource, spec.action, spec.records, dict(spec.fields), spec.mask)


ResourceSource = str | Callable[[Mapping[str, Any]], "Entity | str"] | None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool's declaration (see the module docstring)."""

    name: str
    action: str = "call"
    resource: ResourceSource = None
    effect: Effect = Effect.READ
    labels: frozenset[str] = frozenset()
    label_attribute: str | None = "classification"
    constraints: Mapping[str, ArgumentConstraint] = field(default_factory=dict)
    result: ResultSpec | None = None
    hard_block: HardBlock | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if type(self.name) is not str or not _NAME.fullmatch(self.name):
            raise InvalidInputError(f"tool name {self.name!r} must be letters, digits, '_', "
                                    "'.', '-' (at most 128)")
        if type(self.action) is not str or not self.action.isidentifier():
            raise InvalidInputError(f"tool {self.name!r}: action {self.action!r} is not a name")
        if isinstance(self.resource, str):
            _check_template(self.resource, f"tool {self.name!r} resource")
        elif self.resource is not None and not callable(self.resource):
            raise InvalidInputError(f"tool {self.name!r}: resource must be a template or a "
                                    "callable")
        object.__setattr__(self, "effect", Effect(self.effect))
        object.__setattr__(self, "labels", frozenset(self.labels))
        object.__setattr__(self, "constraints", {k: ArgumentConstraint.of(v)
                                                 for k, v in dict(self.constraints).items()})
        if self.result is not None:
            object.__setattr__(self, "result", ResultSpec.of(self.result))
        if self.hard_block is not None:
            object.__setattr__(self, "hard_block", HardBlock(self.hard_block))

    @classmethod
    def from_definition(cls, name: str, definition: ToolDefinition) -> ToolSpec:
        return cls(name, definition.action, definition.resource, Effect(definition.effect),
                   frozenset(definition.labels), definition.label_attribute,
                   {k: ArgumentConstraint.of(v) for k, v in definition.constraints.items()},
                   ResultSpec.of(definition.result) if definition.result else None,
                   HardBlock(definition.hard_block) if definition.hard_block else None,
                   definition.description)

    def resource_for(self, arguments: Mapping[str, Any]) -> str:
        """The resource key a call acts on; raises InvalidInputError if it cannot be built."""
        source = self.resource
        if source is None:
            return f"tool:{self.name}"
        if isinstance(source, str):
            return fill_template(source, arguments)
        value = source(arguments)
        if isinstance(value, Entity):
            return value.key
        if not isinstance(value, str):
            raise InvalidInputError(f"tool {self.name!r}: the resource callable returned "
                                    f"{type(value).__name__}, not an entity")
        parse_entity_key(value, what=f"tool {self.name!r} resource")
        return value

    def argument_problem(self, arguments: Mapping[str, Any]) -> str | None:
        for name, constraint in self.constraints.items():
            problem = constraint.problem(name, arguments.get(name), name in arguments)
            if problem is not None:
                return problem
        return None


def _check_template(template: str, what: str) -> None:
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise InvalidInputError(f"{what}: bad template {template!r}: {exc}") from None
    for _, name, spec, conv in parts:
        if name is not None and (not name.isidentifier() or spec or conv):
            raise InvalidInputError(f"{what}: template fields are plain argument names, got "
                                    f"{{{name}}} in {template!r}")
    type_, colon, _ = template.partition(":")
    if not colon or not type_.isidentifier():
        raise InvalidInputError(f"{what}: {template!r} must look like 'type:{{argument}}'")


def fill_template(template: str, values: Mapping[str, Any]) -> str:
    """``"ticket:{ticket_id}"`` filled from ``values``: a valid ``type:id`` key, or an error."""
    out = []
    for literal, name, _, _ in _FORMATTER.parse(template):
        out.append(literal)
        if name is None:
            continue
        if name not in values:
            raise InvalidInputError(f"argument {name!r} is missing")
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidInputError(f"argument {name!r} must be a string or an integer to name "
                                    "a resource")
        out.append(str(value))
    key = "".join(out)
    _, id_ = parse_entity_key(key, what="tool resource")
    if id_ == "*":
        raise InvalidInputError("a tool's resource cannot be a wildcard")
    return key
