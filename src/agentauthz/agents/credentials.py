"""Task credentials: signed, short-lived grants for one task, narrowed without the key.

A task credential says: *agent* may do what *scope* allows, on behalf of
*user*, for *purpose*, until *expiry*. :class:`TaskCredentials` issues it
under the active key of its :class:`KeyRing`; it travels as a compact string
token; whoever holds it can :meth:`~TaskCredential.attenuate` it into a
narrower child for a sub-agent without any key; :meth:`TaskCredentials.verify`
proves the whole chain and raises :class:`~agentauthz.errors.CredentialError`
(with a ``reason``) for anything it cannot trust.

Token format
------------

::

    aat1.<kid>.<payload>[.<caveat>]*.<sig>

Every part after the key id is base64url without padding. The payload and
each caveat are canonical JSON: sorted keys, no white space, ASCII only,
integers only, times in milliseconds since the epoch::

    payload  {"agt": agent, "exp": ms, "iat": ms, "id": task id,
              "obo": user or null, "pur": purpose, "scp": [[action, pattern], ...]}
    caveat   {"exp": ms, "id": credential id,
              "agt"?: sub-agent, "pur"?: purpose, "scp"?: [[action, pattern], ...]}

The signature is a chain of HMAC-SHA256, as in macaroons::

    sig_0 = HMAC(key[kid], "aat1." + kid + "." + payload)
    sig_i = HMAC(sig_i-1, caveat_i)

and the token carries only the last one. Holding a token means knowing its
signature, so a holder can append a caveat; nobody without the key can drop
one or change any part, because HMAC cannot be run backwards. Verification
recomputes the chain from the key, linear in its length (at most
``max_chain`` caveats, at most ``MAX_TOKEN_LENGTH`` characters).

A caveat can only narrow: its scope must be covered by the root scope and by
every earlier caveat's scope, and its expiry may not be later than the one
before it; verify rejects anything else as ``widened``. A caveat's ``agt``
binds the child to a sub-agent (the checker then requires every agent along
the chain to be allowed); its ``pur`` is recorded in ``purposes`` but never
replaces the issuer's ``purpose``, which a holder cannot vouch for.

Each credential has exactly one token: verify rejects duplicate or unknown
JSON keys, non-canonical JSON or base64, and scopes out of canonical order,
so that two parsers can never read one token two ways.

Scopes
------

A :class:`Scope` is a non-empty set of ``(action, pattern)`` grants. The
action is a name or ``*``; the pattern is ``*`` (anything), ``type:*`` (any
entity of a type), ``type:prefix*`` (ids starting with ``prefix``) or an
exact ``type:id``. A scope only ever narrows what the policy allows: it is
checked in addition to the relationship check, never instead of it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, TypeAlias

from agentauthz.agents.revocation import MemoryRevocationStore, Revocation, RevocationStore
from agentauthz.errors import ConfigurationError, CredentialError, InvalidInputError
from agentauthz.model import parse_entity_key

__all__ = ["KeyRing", "Scope", "ScopeItem", "ScopeLike", "TaskCredential", "TaskCredentials"]

MAX_TOKEN_LENGTH: Final = 8192
MAX_PURPOSE_LENGTH: Final = 500
MIN_SECRET_BYTES: Final = 32
_VERSION: Final = "aat1"
# A revocation named only by id (no expiry known) is remembered this much
# longer than any credential can live, to cover clocks that disagree.
_CLOCK_SKEW: Final = 300.0

_ACTION_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")
_TYPE_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_KID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN_RE: Final = re.compile(r"aat1\.[A-Za-z0-9_-]{1,32}(?:\.[A-Za-z0-9_-]+){2,}")
_TOKEN_FORM: Final = "expected 'aat1.<kid>.<payload>[.<caveat>]*.<sig>' in base64url"
_ACCEPTED: Final = ("an action name or '*', and a resource pattern '*', 'type:*', 'type:prefix*' "
                    "or 'type:id'; written ('read', 'document:*') or 'read document:*'")


# ------------------------------------------------------------------ scopes


class ScopeItem(NamedTuple):
    """One grant: ``action`` (or ``*``) on resources matching ``pattern``."""

    action: str
    pattern: str

    def __str__(self) -> str:
        return f"{self.action} {self.pattern}"


_Match: TypeAlias = tuple[bool, str]
_Grant: TypeAlias = tuple[frozenset[str], tuple[str, ...]]


def _pattern_match(pattern: str) -> _Match | None:
    """``(is_prefix, text)``: the resource key must start with / equal ``text``; ``None`` if invalid."""
    if pattern == "*":
        return True, ""
    type_, sep, rest = pattern.partition(":")
    if not sep or not rest or len(rest) > 1024 or not _TYPE_RE.fullmatch(type_):
        return None
    prefix = rest.endswith("*")
    body = rest[:-1] if prefix else rest
    if "*" in body or "#" in body or any(c.isspace() for c in body):
        return None
    return (True, f"{type_}:{body}") if prefix else (False, pattern)


def _parse_item(item: object) -> tuple[ScopeItem, _Match]:
    if isinstance(item, str):
        action, _, pattern = item.partition(" ")
    elif isinstance(item, tuple | list) and len(item) == 2:
        action, pattern = item
    else:
        raise InvalidInputError(f"scope item {_show(item)} is not valid: expected {_ACCEPTED}")
    if type(action) is not str or (action != "*" and not _ACTION_RE.fullmatch(action)):
        raise InvalidInputError(f"scope item {_show(item)}: action {_show(action)} is not valid; "
                                f"expected {_ACCEPTED}")
    match = _pattern_match(pattern) if type(pattern) is str else None
    if match is None:
        raise InvalidInputError(f"scope item {_show(item)}: resource pattern {_show(pattern)} is not "
                                f"valid; expected {_ACCEPTED}")
    return ScopeItem(action, pattern), match


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _grant(matches: Iterable[_Match]) -> _Grant:
    """Exact keys and key prefixes, leaving out whatever a shorter prefix already matches."""
    exact: set[str] = set()
    prefixes: set[str] = set()
    for is_prefix, text in matches:
        if is_prefix:
            prefixes.add(text)
        else:
            exact.add(text)
    kept: list[str] = []
    for text in sorted(prefixes, key=len):
        if not text.startswith(tuple(kept)):
            kept.append(text)
    tail = tuple(kept)
    return frozenset(e for e in exact if not e.startswith(tail)), tail


class Scope:
    """An immutable, non-empty set of ``(action, resource pattern)`` grants.

    Items are kept sorted and without duplicates (the canonical order in a
    token). :meth:`allows` is on the per-decision path and does one dict
    lookup, one set lookup and one ``str.startswith``. ``resource`` is
    assumed to be a valid ``type:id`` key: validating it is the checker's job.
    """

    __slots__ = ("_fallback", "_grants", "_items", "_matches")

    def __init__(self, items: ScopeLike) -> None:
        if isinstance(items, Scope):
            matches = dict(zip(items._items, items._matches, strict=True))
        else:
            if isinstance(items, str):
                items = (items,)
            try:
                iterator = iter(items)
            except TypeError:
                raise InvalidInputError(
                    f"a scope is a list of items, got {type(items).__name__}; each item is {_ACCEPTED}"
                ) from None
            matches = dict(_parse_item(item) for item in iterator)
        if not matches:
            raise InvalidInputError(f"a scope needs at least one item (a task that may do nothing is a "
                                    f"mistake); each item is {_ACCEPTED}")
        self._items: tuple[ScopeItem, ...] = tuple(sorted(matches))
        self._matches: tuple[_Match, ...] = tuple(matches[item] for item in self._items)
        wildcard = [m for item, m in matches.items() if item.action == "*"]
        self._fallback: _Grant = _grant(wildcard)
        self._grants: dict[str, _Grant] = {
            action: _grant([*wildcard, *(m for item, m in matches.items() if item.action == action)])
            for action in {item.action for item in matches if item.action != "*"}
        }

    @classmethod
    def parse(cls, items: ScopeLike) -> Scope:
        """A scope from ``("read", "document:*")`` tuples or ``"read document:*"`` strings.

        Raises :class:`~agentauthz.errors.InvalidInputError` naming the first
        invalid item, and for an empty scope.
        """
        return items if isinstance(items, Scope) else cls(items)

    @property
    def items(self) -> tuple[ScopeItem, ...]:
        return self._items

    def allows(self, action: str, resource: str) -> bool:
        """Whether some item grants ``action`` on the ``type:id`` key ``resource``."""
        exact, prefixes = self._grants.get(action, self._fallback)
        return resource in exact or resource.startswith(prefixes)

    def covers(self, other: Scope) -> bool:
        """Whether this scope allows everything ``other`` allows.

        Decided item by item, from the patterns alone: never true when
        ``other`` allows some request this scope does not. An item with action
        ``*`` is only covered by items with action ``*``, since the set of
        actions is open.
        """
        return not self._uncovered(other)

    def _uncovered(self, other: Scope) -> list[ScopeItem]:
        missing = []
        for item, (is_prefix, text) in zip(other._items, other._matches, strict=True):
            exact, prefixes = self._grants.get(item.action, self._fallback)
            if not (text.startswith(prefixes) or (not is_prefix and text in exact)):
                missing.append(item)
        return missing

    def to_list(self) -> list[list[str]]:
        """The items as ``[[action, pattern], ...]``, as they appear in a token."""
        return [[a, p] for a, p in self._items]

    def __iter__(self) -> Iterator[ScopeItem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scope):
            return NotImplemented
        return self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Scope({[str(i) for i in self._items]!r})"


ScopeLike: TypeAlias = Scope | Iterable[tuple[str, str] | list[str] | str]
"""A :class:`Scope`, or the items to parse into one (``to_list()`` output included)."""


# -------------------------------------------------------------------- keys


def _check_kid(kid: object) -> str:
    if type(kid) is not str or not _KID_RE.fullmatch(kid):
        raise ConfigurationError(f"key id {_show(kid)} must be 1 to 32 letters, digits, '_' or '-'")
    return kid


def _check_secret(kid: str, secret: object) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes | bytearray):
        raise ConfigurationError(f"key {kid!r}: a secret is bytes or str, got {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"key {kid!r} is {len(secret)} bytes; an HMAC-SHA256 key needs at least "
            f"{MIN_SECRET_BYTES} random bytes: make one with secrets.token_bytes({MIN_SECRET_BYTES})"
        )
    return bytes(secret)


class KeyRing:
    """Signing keys by key id; one is active for issuing, all known ones verify.

    Without ``keys``, one random key under a random key id: enough for a
    single process. Processes that verify each other's tokens share the
    keys. To rotate, :meth:`rotate` to a new key (tokens under older keys
    still verify), wait for those tokens to expire, then :meth:`retire` the
    old one. Safe to rotate and retire while other threads verify.
    """

    __slots__ = ("_active", "_keys", "_lock")

    def __init__(self, keys: Mapping[str, bytes | str] | None = None, *,
                 active: str | None = None) -> None:
        self._lock = threading.Lock()
        if keys is None:
            if active is not None:
                raise ConfigurationError("active= names one of keys=; without keys a random key is made")
            active = secrets.token_hex(4)
            table = {active: secrets.token_bytes(MIN_SECRET_BYTES)}
        else:
            if not isinstance(keys, Mapping):
                raise ConfigurationError(f"keys must map key ids to secrets, got {type(keys).__name__}")
            table = {_check_kid(kid): _check_secret(kid, secret) for kid, secret in keys.items()}
            if not table:
                raise ConfigurationError("a key ring needs at least one key")
            if active is None:
                if len(table) > 1:
                    raise ConfigurationError(
                        f"several keys ({', '.join(sorted(table))}): name the one that issues with active=")
                active = next(iter(table))
            elif active not in table:
                raise ConfigurationError(f"active key {active!r} is not one of {sorted(table)}")
        # Replaced, never mutated: a reader sees the old table or the new one.
        self._keys: dict[str, bytes] = table
        self._active: tuple[str, bytes] = (active, table[active])

    @property
    def active_kid(self) -> str:
        """The key id new tokens are issued under."""
        return self._active[0]

    @property
    def kids(self) -> frozenset[str]:
        """Every key id that verifies."""
        return frozenset(self._keys)

    def rotate(self, kid: str, secret: bytes | str) -> None:
        """Add a key and issue under it from now on; older keys still verify.

        A key id names one secret for ever: reusing it for another secret is a
        :class:`~agentauthz.errors.ConfigurationError`.
        """
        kid = _check_kid(kid)
        key = _check_secret(kid, secret)
        with self._lock:
            known = self._keys.get(kid)
            if known is not None and not hmac.compare_digest(known, key):
                raise ConfigurationError(f"key id {kid!r} already names another secret; use a new key id")
            self._keys = {**self._keys, kid: key}
            self._active = (kid, key)

    def retire(self, kid: str) -> None:
        """Forget a key: tokens under it stop verifying. The active key cannot be retired."""
        with self._lock:
            if kid == self._active[0]:
                raise ConfigurationError(f"key {kid!r} is active: rotate to a new key before retiring it")
            if kid not in self._keys:
                raise ConfigurationError(f"no key {kid!r} to retire; known: {sorted(self._keys)}")
            self._keys = {k: v for k, v in self._keys.items() if k != kid}

    def _secret(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def _signing(self) -> tuple[str, bytes]:
        return self._active

    def __repr__(self) -> str:
        return f"KeyRing(kids={sorted(self._keys)!r}, active={self._active[0]!r})"


# ------------------------------------------------------------- the codec


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    """Decode canonical unpadded base64url; ``None`` for anything else."""
    if len(text) % 4 == 1 or not _B64_RE.fullmatch(text):
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if _b64(data) == text else None


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def _sign(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode("ascii"), "sha256")


def _new_id() -> str:
    return secrets.token_urlsafe(12)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def _malformed(message: str) -> CredentialError:
    return CredentialError("malformed", f"malformed task credential: {message}")


def _load(part: str, where: str) -> dict[str, Any]:
    data = _unb64(part)
    if data is None:
        raise _malformed(f"{where} is not canonical base64url")
    try:
        obj = json.loads(data.decode("ascii"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise _malformed(f"{where} is not valid JSON ({exc})") from None
    if type(obj) is not dict:
        raise _malformed(f"{where} is not a JSON object")
    if _canonical(obj) != data:
        raise _malformed(f"{where} is not canonical JSON")
    return obj


def _purpose_problem(purpose: object) -> str | None:
    if not isinstance(purpose, str) or not purpose.strip():
        return "a purpose is a non-empty string"
    if len(purpose) > MAX_PURPOSE_LENGTH:
        return f"a purpose is at most {MAX_PURPOSE_LENGTH} characters, got {len(purpose)}"
    return None


def _check_purpose(purpose: str) -> str:
    problem = _purpose_problem(purpose)
    if problem is not None:
        raise InvalidInputError(problem)
    return purpose


def _ms(seconds: float, what: str, limit: float = math.inf) -> int:
    if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not (0 < seconds <= limit) or not math.isfinite(seconds)):
        bound = "" if limit == math.inf else f" and at most max_ttl={limit:g}"
        raise InvalidInputError(f"{what} must be a number of seconds more than 0{bound}, got {seconds!r}")
    return max(1, round(seconds * 1000))


class _Reader:
    """Typed field access on one decoded part; every failure is ``malformed``."""

    __slots__ = ("obj", "where")

    def __init__(self, obj: dict[str, Any], where: str, required: frozenset[str],
                 optional: frozenset[str] = frozenset()) -> None:
        keys = frozenset(obj)
        if not required <= keys or not keys <= required | optional:
            raise _malformed(f"{where} has keys {sorted(keys)}; expected {sorted(required)}"
                             + (f" and optionally {sorted(optional)}" if optional else ""))
        self.obj = obj
        self.where = where

    def id(self) -> str:
        value = self.obj["id"]
        if type(value) is not str or not _ID_RE.fullmatch(value):
            raise _malformed(f"{self.where} 'id' is not a credential id")
        return value

    def ms(self, key: str) -> int:
        value = self.obj[key]
        if type(value) is not int or value < 0:
            raise _malformed(f"{self.where} {key!r} is not a time in milliseconds")
        return value

    def entity(self, key: str) -> str:
        try:
            type_, id_ = parse_entity_key(self.obj[key])
        except InvalidInputError as exc:
            raise _malformed(f"{self.where} {key!r}: {exc}") from None
        return f"{type_}:{id_}"

    def purpose(self) -> str:
        value: object = self.obj["pur"]
        problem = _purpose_problem(value)
        if problem is not None or not isinstance(value, str):
            raise _malformed(f"{self.where} 'pur': {problem}")
        return value

    def scope(self) -> Scope:
        value = self.obj["scp"]
        if type(value) is not list or not all(
                type(i) is list and len(i) == 2 and type(i[0]) is str and type(i[1]) is str for i in value):
            raise _malformed(f"{self.where} 'scp' is not a list of [action, pattern] pairs")
        items = tuple((a, p) for a, p in value)
        try:
            scope = _wire_scope(items)
        except InvalidInputError as exc:
            raise _malformed(f"{self.where} 'scp': {exc}") from None
        if scope.items != items:
            raise _malformed(f"{self.where} 'scp' is not in canonical order (sorted, no duplicates)")
        return scope


# Tasks tend to share a few scopes: parse each once.
@functools.lru_cache(maxsize=1024)
def _wire_scope(items: tuple[tuple[str, str], ...]) -> Scope:
    return Scope(items)


_PAYLOAD_KEYS: Final = frozenset(("agt", "exp", "iat", "id", "obo", "pur", "scp"))
_CAVEAT_KEYS: Final = frozenset(("exp", "id"))
_CAVEAT_OPTIONAL: Final = frozenset(("agt", "pur", "scp"))


# ------------------------------------------------------------ credentials


@dataclass(frozen=True, slots=True)
class TaskCredential:
    """A verified task credential: who may do what, for whom, why, until when.

    Get one from :meth:`TaskCredentials.issue`, :meth:`TaskCredentials.verify`
    or :meth:`attenuate`; one built by hand proves nothing. ``token`` is a
    bearer secret, so it is left out of ``repr``.
    """

    id: str
    """This credential's id; the task id for the task's own (root) credential."""
    task_id: str
    chain: tuple[str, ...]
    """Ids from the root to this credential: revoking any of them revokes this one."""
    agent: str
    """The agent that may present it: the last agent named along the chain."""
    agents: tuple[str, ...]
    """Every agent along the chain, root agent first; the checker requires all of them."""
    on_behalf_of: str | None
    scope: Scope
    """The root scope, as issued."""
    caveat_scopes: tuple[Scope, ...]
    """The scope of each attenuation that narrowed it, in order; the effective scope is
    the intersection of ``scope`` and all of these."""
    purpose: str
    """The issuer's purpose: a holder may add its own (see ``purposes``), never replace it."""
    purposes: tuple[str, ...]
    """Every purpose stated along the chain, the issuer's first."""
    issued_at: float
    expires_at: float
    """The earliest expiry along the chain."""
    token: str = field(repr=False)

    def allows(self, action: str, resource: str) -> bool:
        """Whether the root scope and every attenuation allow ``action`` on ``resource``."""
        if not self.scope.allows(action, resource):
            return False
        for scope in self.caveat_scopes:
            if not scope.allows(action, resource):
                return False
        return True

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def attenuate(self, *, scope: ScopeLike | None = None, ttl: float | None = None,
                  agent: str | None = None, purpose: str | None = None,
                  clock: Callable[[], float] = time.time) -> TaskCredential:
        """A narrower child, made without any key by appending a caveat.

        ``scope`` must be covered by the root scope and by every earlier
        attenuation (default: unchanged); ``ttl`` may not outlive this
        credential (default: same expiry); ``agent`` binds the child to a
        sub-agent. The child has its own id, so it can be revoked alone.
        Asking for more than this credential has raises
        :class:`~agentauthz.errors.InvalidInputError` rather than quietly
        granting less; an expired credential raises ``CredentialError("expired")``.
        """
        now = clock()
        if self.expired(now):
            raise CredentialError("expired", f"task credential {self.id} has expired: nothing to attenuate")
        parent_exp = round(self.expires_at * 1000)
        exp = parent_exp
        if ttl is not None:
            exp = round(now * 1000) + _ms(ttl, "attenuate ttl")
            if exp > parent_exp:
                raise InvalidInputError(
                    f"attenuate ttl={ttl!r}s would outlive task credential {self.id}, which expires in "
                    f"{self.expires_at - now:.3f}s: a child can only live shorter")
        caveat: dict[str, Any] = {"exp": exp, "id": _new_id()}
        caveat_scopes = self.caveat_scopes
        if scope is not None:
            narrowed = Scope.parse(scope)
            for outer in (self.scope, *self.caveat_scopes):
                missing = outer._uncovered(narrowed)
                if missing:
                    raise InvalidInputError(
                        f"attenuate scope asks for more than task credential {self.id} allows: "
                        f"{', '.join(map(str, missing))} not within {outer!r}")
            caveat["scp"] = narrowed.to_list()
            caveat_scopes = (*caveat_scopes, narrowed)
        agents = self.agents
        if agent is not None:
            parse_entity_key(agent, what="attenuate agent")
            caveat["agt"] = agent
            if agent != self.agent:
                agents = (*agents, agent)
        purposes = self.purposes
        if purpose is not None:
            caveat["pur"] = _check_purpose(purpose)
            purposes = (*purposes, purpose)
        head, _, sig_text = self.token.rpartition(".")
        sig = _unb64(sig_text)
        if not head or sig is None:
            raise InvalidInputError(f"task credential {self.id} has no valid token to attenuate")
        part = _b64(_canonical(caveat))
        token = f"{head}.{part}.{_b64(_sign(sig, part))}"
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidInputError(f"attenuating task credential {self.id} would make a token longer "
                                    f"than {MAX_TOKEN_LENGTH} characters")
        return TaskCredential(
            id=caveat["id"], task_id=self.task_id, chain=(*self.chain, caveat["id"]),
            agent=agents[-1], agents=agents, on_behalf_of=self.on_behalf_of, scope=self.scope,
            caveat_scopes=caveat_scopes, purpose=self.purpose, purposes=purposes,
            issued_at=self.issued_at, expires_at=exp / 1000, token=token,
        )


class TaskCredentials:
    """Issues and verifies task credentials.

    Processes that accept each other's tokens share the keys and the
    revocation store. ``max_ttl`` bounds every task's lifetime, and so how
    long a revocation must be remembered; ``max_chain`` bounds the number of
    attenuations a token may carry.
    """

    def __init__(self, keys: KeyRing | Mapping[str, bytes | str] | None = None, *,
                 revocations: RevocationStore | None = None, clock: Callable[[], float] = time.time,
                 max_ttl: float = 3600.0, max_chain: int = 16) -> None:
        if isinstance(max_ttl, bool) or not isinstance(max_ttl, int | float) \
                or not (0 < max_ttl < math.inf):
            raise ConfigurationError(f"max_ttl must be a positive number of seconds, got {max_ttl!r}")
        if type(max_chain) is not int or max_chain < 0:
            raise ConfigurationError(f"max_chain must be an integer >= 0, got {max_chain!r}")
        self.keys: KeyRing = keys if isinstance(keys, KeyRing) else KeyRing(keys)
        self.revocations: RevocationStore = (
            revocations if revocations is not None else MemoryRevocationStore(clock=clock))
        self.max_ttl = float(max_ttl)
        self.max_chain = max_chain
        self._clock = clock

    def issue(self, *, agent: str, on_behalf_of: str | None, scope: ScopeLike, ttl: float,
              purpose: str) -> TaskCredential:
        """Sign a new root credential; its id is the task id."""
        parse_entity_key(agent, what="task agent")
        if on_behalf_of is not None:
            parse_entity_key(on_behalf_of, what="task on_behalf_of")
        granted = Scope.parse(scope)
        lifetime = _ms(ttl, "task ttl", self.max_ttl)
        _check_purpose(purpose)
        iat = round(self._clock() * 1000)
        task_id = _new_id()
        payload = {"agt": agent, "exp": iat + lifetime, "iat": iat, "id": task_id, "obo": on_behalf_of,
                   "pur": purpose, "scp": granted.to_list()}
        kid, secret = self.keys._signing()
        head = f"{_VERSION}.{kid}.{_b64(_canonical(payload))}"
        token = f"{head}.{_b64(_sign(secret, head))}"
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidInputError(f"this task credential would be a token longer than "
                                    f"{MAX_TOKEN_LENGTH} characters: give it a smaller scope")
        return TaskCredential(
            id=task_id, task_id=task_id, chain=(task_id,), agent=agent, agents=(agent,),
            on_behalf_of=on_behalf_of, scope=granted, caveat_scopes=(), purpose=purpose,
            purposes=(purpose,), issued_at=iat / 1000, expires_at=(iat + lifetime) / 1000, token=token,
        )

    def verify(self, token: str, *, agent: str | None = None, now: float | None = None) -> TaskCredential:
        """The credential ``token`` carries, if every check passes; else :class:`CredentialError`.

        Checks, cheapest first: length (``too_long``), form (``malformed``),
        key id (``unknown_key``), the HMAC chain (``bad_signature``), every
        part's JSON (``malformed``), that no caveat widens (``widened``),
        expiry (``expired``), that ``agent``, if given, is the agent it was
        issued or attenuated to (``wrong_agent``: a replay by another agent),
        and revocation of any credential in the chain, the task or any agent
        along it (``revoked``).
        """
        credential = self._decode(token)
        at = self._clock() if now is None else now
        if credential.expired(at):
            raise CredentialError("expired", f"task credential {credential.id} (task {credential.task_id}) "
                                  f"expired {at - credential.expires_at:.3f}s ago")
        if agent is not None and agent != credential.agent:
            raise CredentialError("wrong_agent", f"task credential {credential.id} is bound to "
                                  f"{credential.agent!r}; {agent!r} presented it")
        revoked = self._revocation(credential)
        if revoked is not None:
            raise CredentialError("revoked", f"task credential {credential.id} is revoked: {revoked.kind} "
                                  f"{revoked.id!r}" + (f" ({revoked.reason})" if revoked.reason else ""))
        return credential

    def status(self, credential: TaskCredential, *, now: float | None = None) -> str | None:
        """Why a verified credential cannot be used now (``expired``, ``revoked``), or ``None``.

        For every decision made under the credential: no signature work, just
        the clock and the revocation store.
        """
        if credential.expired(self._clock() if now is None else now):
            return "expired"
        if self._revocation(credential) is not None:
            return "revoked"
        return None

    def revoke(self, credential: TaskCredential | str, *, reason: str = "") -> None:
        """Revoke one credential (a :class:`TaskCredential` or its id) and everything derived from it."""
        if isinstance(credential, TaskCredential):
            self.revocations.revoke("credential", credential.id, reason=reason,
                                    until=credential.expires_at)
        else:
            self.revocations.revoke("credential", self._check_id(credential, "credential"),
                                    reason=reason, until=self._forget_after())

    def revoke_task(self, task_id: str, *, reason: str = "") -> None:
        """Revoke a task: its own credential and every one derived from it."""
        self.revocations.revoke("task", self._check_id(task_id, "task"), reason=reason,
                                until=self._forget_after())

    def _check_id(self, value: object, what: str) -> str:
        if type(value) is not str or not _ID_RE.fullmatch(value):
            raise InvalidInputError(f"{_show(value)} is not a {what} id (to revoke by token, verify it "
                                    f"first and pass the credential)")
        return value

    def _forget_after(self) -> float:
        return self._clock() + self.max_ttl + _CLOCK_SKEW

    def _revocation(self, credential: TaskCredential) -> Revocation | None:
        store = self.revocations
        return (store.revoked("credential", credential.chain)
                or store.revoked("task", (credential.task_id,))
                or store.revoked("agent", credential.agents))

    def _decode(self, token: object) -> TaskCredential:
        if type(token) is not str:
            raise _malformed(f"a token is a string, got {type(token).__name__}")
        if len(token) > MAX_TOKEN_LENGTH:
            raise CredentialError("too_long", f"task credential token is {len(token)} characters; "
                                  f"at most {MAX_TOKEN_LENGTH} are accepted")
        if not _TOKEN_RE.fullmatch(token):
            raise _malformed(_TOKEN_FORM)
        parts = token.split(".")
        if len(parts) - 4 > self.max_chain:
            raise CredentialError("too_long", f"task credential token has {len(parts) - 4} caveats; "
                                  f"at most max_chain={self.max_chain} are accepted")
        kid = parts[1]
        secret = self.keys._secret(kid)
        if secret is None:
            raise CredentialError("unknown_key", f"task credential signed with unknown key {kid!r} "
                                  f"(retired, or another deployment's)")
        sig = _sign(secret, f"{_VERSION}.{kid}.{parts[2]}")
        for part in parts[3:-1]:
            sig = _sign(sig, part)
        if not hmac.compare_digest(_b64(sig), parts[-1]):
            raise CredentialError("bad_signature", "task credential signature does not match: "
                                  "altered, or signed with another key")

        root = _Reader(_load(parts[2], "payload"), "payload", _PAYLOAD_KEYS)
        ids = [root.id()]
        agents = [root.entity("agt")]
        on_behalf_of = None if root.obj["obo"] is None else root.entity("obo")
        purposes = [root.purpose()]
        scope = root.scope()
        iat = root.ms("iat")
        exp = root.ms("exp")
        if exp <= iat:
            raise _malformed("payload 'exp' is not after 'iat'")
        if exp - iat > round(self.max_ttl * 1000):
            raise CredentialError("widened", f"task credential lives {(exp - iat) / 1000:g}s, longer "
                                  f"than max_ttl={self.max_ttl:g}s")
        narrowest = scope
        caveat_scopes: list[Scope] = []
        for n, part in enumerate(parts[3:-1], 1):
            where = f"caveat {n}"
            caveat = _Reader(_load(part, where), where, _CAVEAT_KEYS, _CAVEAT_OPTIONAL)
            id_ = caveat.id()
            if id_ in ids:
                raise _malformed(f"{where} repeats the id {id_!r}")
            ids.append(id_)
            if "scp" in caveat.obj:
                # covers() is transitive, so the scope before is the only one to check against.
                narrowed = caveat.scope()
                if not narrowest.covers(narrowed):
                    raise CredentialError("widened", f"task credential {where} scope {narrowed!r} "
                                          f"is not within {narrowest!r}")
                caveat_scopes.append(narrowed)
                narrowest = narrowed
            later = caveat.ms("exp")
            if later > exp:
                raise CredentialError("widened", f"task credential {where} expires after its parent")
            exp = later
            if "agt" in caveat.obj:
                sub_agent = caveat.entity("agt")
                if sub_agent != agents[-1]:
                    agents.append(sub_agent)
            if "pur" in caveat.obj:
                purposes.append(caveat.purpose())
        return TaskCredential(
            id=ids[-1], task_id=ids[0], chain=tuple(ids), agent=agents[-1], agents=tuple(agents),
            on_behalf_of=on_behalf_of, scope=scope, caveat_scopes=tuple(caveat_scopes),
            purpose=purposes[0], purposes=tuple(purposes), issued_at=iat / 1000, expires_at=exp / 1000,
            token=token,
        )
