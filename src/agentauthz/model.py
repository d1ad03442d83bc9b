"""The nouns of authorization: entities, relationships, decisions and their reasons.

Everything here is immutable. Every public API that takes an entity also
takes its plain ``"type:id"`` string, and the hot path works on those strings
directly: an :class:`Entity` is only built when a caller asks for one.
"""

from __future__ import annotations

import enum
import itertools
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from agentauthz.errors import InvalidInputError

__all__ = [
    "Decision",
    "Entity",
    "EntityLike",
    "Outcome",
    "Reason",
    "Relationship",
    "parse_entity_key",
]

MAX_ID_LENGTH: Final = 1024
_TYPE_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_NAME_RE = _TYPE_RE
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _check_type(type_: object, what: str) -> str:
    if type(type_) is not str or not _TYPE_RE.fullmatch(type_):
        raise InvalidInputError(
            f"{what}: type {type_!r} must be a name of letters, digits and '_' "
            "(at most 64, not starting with a digit)"
        )
    return type_


def _check_id(id_: object, what: str, *, wildcard: bool = False) -> str:
    if type(id_) is not str:
        raise InvalidInputError(f"{what}: id must be a string, got {type(id_).__name__}")
    if not id_ or len(id_) > MAX_ID_LENGTH:
        raise InvalidInputError(f"{what}: id must be 1 to {MAX_ID_LENGTH} characters")
    if "#" in id_ or any(c.isspace() for c in id_):
        raise InvalidInputError(f"{what}: id {id_!r} must not contain '#' or white space")
    if id_ == "*" and not wildcard:
        raise InvalidInputError(f"{what}: '*' is a wildcard subject, not an entity id")
    return id_


def parse_entity_key(text: object, *, what: str = "entity") -> tuple[str, str]:
    """Split ``"type:id"`` into ``(type, id)``, validating both halves.

    The id may itself contain ``:`` (``user:alice@example.com`` and
    ``doc:a:b`` are fine); it may not contain ``#`` or white space.
    """
    if type(text) is not str:
        raise InvalidInputError(f"{what}: expected 'type:id', got {type(text).__name__}")
    type_, sep, id_ = text.partition(":")
    if not sep:
        raise InvalidInputError(f"{what}: expected 'type:id', got {text[:80]!r}")
    return _check_type(type_, what), _check_id(id_, what)


@dataclass(frozen=True, slots=True)
class Entity:
    """A typed id such as ``document:42``, with optional attributes.

    Equality and hashing use ``type`` and ``id`` only: the attributes describe
    the entity for one check, they are not part of its identity.
    """

    type: str
    id: str
    attributes: Mapping[str, Any] = field(
        default_factory=lambda: _EMPTY, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        _check_type(self.type, "entity")
        _check_id(self.id, "entity")
        if self.attributes is not _EMPTY:
            if not isinstance(self.attributes, Mapping):
                raise InvalidInputError("entity attributes must be a mapping")
            for reserved in ("id", "type"):
                if reserved in self.attributes:
                    raise InvalidInputError(
                        f"entity attribute {reserved!r} is reserved: it is the entity's own {reserved}"
                    )
            object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))

    @classmethod
    def parse(cls, text: str, attributes: Mapping[str, Any] | None = None) -> Entity:
        """Build an entity from ``"type:id"``; raises :class:`InvalidInputError` if malformed."""
        type_, id_ = parse_entity_key(text)
        return cls(type_, id_, attributes if attributes is not None else _EMPTY)

    @classmethod
    def of(cls, value: EntityLike) -> Entity:
        """Return ``value`` if it is an entity, else parse it."""
        return value if isinstance(value, Entity) else cls.parse(value)

    @property
    def key(self) -> str:
        """The ``"type:id"`` form."""
        return f"{self.type}:{self.id}"

    def __str__(self) -> str:
        return f"{self.type}:{self.id}"


EntityLike: TypeAlias = Entity | str
"""An :class:`Entity` or its ``"type:id"`` string."""


@dataclass(frozen=True, slots=True)
class Relationship:
    """A tuple ``(resource, relation, subject)``, written ``document:42#parent@folder:7``.

    ``subject`` is an entity (``user:alice``), a userset (``team:eng#member``:
    everyone with ``member`` on ``team:eng``) or a typed wildcard (``user:*``:
    every user, and no other type).
    """

    resource: str
    relation: str
    subject: str

    def __post_init__(self) -> None:
        parse_entity_key(self.resource, what="relationship resource")
        if type(self.relation) is not str or not _NAME_RE.fullmatch(self.relation):
            raise InvalidInputError(f"relationship relation {self.relation!r} is not a valid name")
        self.subject_parts()

    @classmethod
    def parse(cls, text: str) -> Relationship:
        """Parse ``resource#relation@subject``, e.g. ``team:eng#member@user:alice``."""
        if type(text) is not str:
            raise InvalidInputError("relationship: expected 'type:id#relation@subject'")
        resource, sep1, rest = text.partition("#")
        relation, sep2, subject = rest.partition("@")
        if not sep1 or not sep2:
            raise InvalidInputError(
                f"relationship: expected 'type:id#relation@subject', got {text[:120]!r}"
            )
        return cls(resource, relation, subject)

    @classmethod
    def of(cls, value: Relationship | str | tuple[str, str, str]) -> Relationship:
        """Accept a relationship, its string form, or a ``(resource, relation, subject)`` tuple."""
        if isinstance(value, Relationship):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, tuple | list) and len(value) == 3:
            return cls(*value)
        raise InvalidInputError(f"relationship: cannot read {type(value).__name__}")

    def subject_parts(self) -> tuple[str, str, str | None]:
        """``(type, id, relation or None)`` of the subject; id ``*`` for a wildcard."""
        body, sep, srel = self.subject.rpartition("#") if "#" in self.subject else (
            self.subject, "", "")
        if type(body) is not str:  # pragma: no cover - partition always gives str
            raise InvalidInputError("relationship subject must be a string")
        type_, colon, id_ = body.partition(":")
        if not colon:
            raise InvalidInputError(
                f"relationship subject: expected 'type:id', 'type:id#relation' or 'type:*', "
                f"got {self.subject[:80]!r}"
            )
        _check_type(type_, "relationship subject")
        _check_id(id_, "relationship subject", wildcard=not sep)
        if sep:
            if not _NAME_RE.fullmatch(srel):
                raise InvalidInputError(f"relationship subject relation {srel!r} is not a valid name")
            return type_, id_, srel
        return type_, id_, None

    def __str__(self) -> str:
        return f"{self.resource}#{self.relation}@{self.subject}"


class Outcome(enum.StrEnum):
    """What a decision says."""

    ALLOW = "allow"
    DENY = "deny"
    APPROVAL_REQUIRED = "approval_required"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a decision came out as it did.

    ``kind`` is one of ``permission`` (a relation path granted), ``permit``
    (a permit rule granted), ``forbid`` (a forbid rule matched),
    ``default_deny`` (nothing granted), ``condition_error`` (a condition
    failed to evaluate; it never helps the principal), ``invalid_input``,
    ``unknown_type``, ``depth_exceeded``, ``evaluation_error`` (an internal
    failure, denied and logged); later layers add their own.
    """

    kind: str
    message: str
    rule: str | None = None

    def __str__(self) -> str:
        return f"[{self.kind}{f' {self.rule}' if self.rule else ''}] {self.message}"


_ID_PREFIX: Final = os.urandom(6).hex()
_next_seq = itertools.count(1).__next__
_now = time.time


class Decision:
    """The answer to one authorization question. Immutable.

    ``allowed`` is the only field an enforcement point needs; the rest
    explains and correlates the decision. ``decision_id`` is unique per
    decision (process-random prefix plus a sequence number), built only when
    read so that answering stays cheap.
    """

    __slots__ = ("_allowed", "_at", "_outcome", "_reasons", "_seq", "_version")

    def __init__(
        self,
        allowed: bool,
        outcome: Outcome,
        reasons: tuple[Reason, ...],
        policy_version: str,
    ) -> None:
        self._allowed = allowed
        self._outcome = outcome
        self._reasons = reasons
        self._version = policy_version
        self._seq = 0
        self._at = _now()

    @property
    def allowed(self) -> bool:
        """True only for an allow; a deny and an approval-required are both not allowed."""
        return self._allowed

    @property
    def outcome(self) -> Outcome:
        return self._outcome

    @property
    def reasons(self) -> tuple[Reason, ...]:
        """What granted or denied, most decisive first."""
        return self._reasons

    @property
    def policy_version(self) -> str:
        """Content hash of the policy that decided."""
        return self._version

    @property
    def decision_id(self) -> str:
        # numbered on first read, so that deciding pays nothing for ids nobody reads
        if not self._seq:
            self._seq = _next_seq()
        return f"{_ID_PREFIX}-{self._seq:010x}"

    @property
    def evaluated_at(self) -> float:
        """Unix time at which the decision was made."""
        return self._at

    def __bool__(self) -> bool:
        return self._allowed

    def __iter__(self) -> Iterator[Reason]:
        return iter(self._reasons)

    def explain(self) -> str:
        """A human-readable explanation: the outcome, then every reason on its own line."""
        lines = [f"{self._outcome.value.upper()} (policy {self._version}, decision {self.decision_id})"]
        lines.extend(f"  - {r}" for r in self._reasons)
        return "\n".join(lines)

    __str__ = explain

    def __repr__(self) -> str:
        first = self._reasons[0].message if self._reasons else ""
        return f"<Decision {self._outcome.value} {first!r}>"
