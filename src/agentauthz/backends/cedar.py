"""Cedar, in process: Cedar policies decide over entities built from our relationship store.

::

    backend = CedarBackend("policy.cedar", "schema.cedarschema", data="data.yaml")
    authz = Authorizer(backend=backend)

Needs the ``cedar`` extra (``pip install 'agentauthz[cedar]'``, which brings
``cedarpy``); ``import agentauthz`` never imports cedarpy, constructing a
``CedarBackend`` does.

**Loading.** The schema (Cedar syntax, or Cedar JSON when the file ends in
``.json``) is parsed and the policies are parsed and validated against it at
construction. Any problem raises :class:`~agentauthz.errors.PolicyError` (a
:class:`~agentauthz.errors.ConfigurationError`) naming the file, the line of
the policy when it can be found, and Cedar's message.

**Entities from relationships.** The backend holds a
:class:`~agentauthz.engine.MemoryStore` of relationships and attributes (its
own, or one it is given) and turns it into a Cedar entity set, rebuilt once
per store version:

- an entity ``type:id`` is ``Type::"id"`` (first letter upper-cased, inside
  ``namespace`` if one is set; ``type_names`` renames types); its stored
  attributes are its Cedar attributes;
- a relationship ``object#relation@subject`` puts the subject in the userset
  ``Userset::"object#relation"``, which ``object`` carries as its *tag*
  ``relation``: ``principal in resource.getTag("owner")`` reads "the
  principal holds ``owner`` on the resource";
- a userset subject (``team:eng#member``) is the Userset
  ``Userset::"team:eng#member"`` inside the object's Userset; the typed
  wildcard ``user:*`` is ``Userset::"user:*"``, which every ``User`` is in
  (also a principal the store does not know);
- a *hierarchy* relation (``parent`` by default) also makes its subject the
  Cedar parent of its object (``resource in Folder::"tickets"``), and passes
  every other relation of the parent down to the child: a folder's viewers
  are viewers of its subfolders and documents. A relation the child only
  inherits, from one parent, is the parent's userset itself (shared, not
  copied: Cedar materialises every entity's ancestors);
- a userset named as a subject holds what its object's tag holds.

Cedar's hierarchy must be acyclic: data that forms a cycle is refused.

**Checks.** ``check(principal, action, resource, context)`` asks Cedar
``is_authorized(Type::"id", Action::"action", Type::"id", context)`` with the
schema, so Cedar also validates the request. The answer:

- *allow*, reasons ``Reason("permit", description, rule)`` for each
  determining permit policy (``rule`` is its ``@id`` annotation, else Cedar's
  policy id; the message its ``@description``);
- *deny* by forbid, ``Reason("forbid", ...)`` for each determining forbid;
- *deny* by default, ``Reason("default_deny", ...)``;
- a policy that fails to evaluate never helps the principal, as in the local
  evaluator: an erroring forbid denies (even where Cedar itself would have
  allowed), an erroring permit grants nothing; either adds
  ``Reason("condition_error", <Cedar's message>, rule)``;
- a request Cedar's schema rejects (an undeclared type, an action that does
  not apply to the resource type, an undeclared context field) or input that
  cannot be made into Cedar values denies with ``invalid_input`` (or
  ``unknown_type``).

Entities passed with attributes override the stored ones for that check (the
entity set is then rebuilt for the call: slower). Data that Cedar refuses
(``write``, ``set_attributes`` or ``load_data`` of an attribute the schema does
not declare, a cycle) raises :class:`~agentauthz.errors.InvalidInputError` and
leaves the store unchanged; data written to a shared store behind the
backend's back and refused at the next decision makes every decision raise
:class:`~agentauthz.errors.BackendError` (a deny with ``backend_error`` through
the Authorizer) until it is fixed.

**Lists.** ``list_resources`` evaluates every entity of the type the store
knows, in one ``is_authorized_batch`` (a scan: cost grows with the store);
``list_actions`` evaluates every action the schema declares.

**Async.** cedarpy holds the GIL while Cedar evaluates, so nothing would run
beside it on another thread: the async twins answer inline, as the local
backend does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from agentauthz.backends.base import BaseBackend
from agentauthz.engine.data import load_data
from agentauthz.engine.evaluator import CheckRequest
from agentauthz.engine.store import MemoryStore, RelationTuple
from agentauthz.errors import (
    BackendError,
    ConfigurationError,
    InvalidInputError,
    PolicyError,
    Problem,
)
from agentauthz.model import Decision, Entity, Outcome, Reason, Relationship, parse_entity_key
from agentauthz.typing import Context, EntityLike

__all__ = ["CedarBackend"]

_ALLOW: Final = Outcome.ALLOW
_DENY: Final = Outcome.DENY
_INSTALL: Final = ("the Cedar backend needs cedarpy: pip install 'agentauthz[cedar]'")
_CEDAR_NAME: Final = re.compile(r"[_A-Za-z][_A-Za-z0-9]*(::[_A-Za-z][_A-Za-z0-9]*)*")
_POLICY_ERROR: Final = re.compile(r"error while evaluating policy `([^`]+)`: (.*)", re.DOTALL)
_ENTITIES_ERROR: Final = "failed to parse entities from:\n"
_ESCAPES: Final = frozenset({"__entity", "__extn", "__expr"})
_INT64: Final = (-(2 ** 63), 2 ** 63 - 1)
_SKIP: Final = re.compile(r"(?:\s+|//[^\n]*)*")
_MAX_DELTAS: Final = 256
_BATCH: Final = 2048
_EMPTY_CONTEXT: Final = "{}"
_MESSAGE_LIMIT: Final = 500


def _import_cedarpy() -> Any:
    try:
        import cedarpy
    except ImportError as exc:  # pragma: no cover - cedarpy is in the dev extra
        raise ImportError(_INSTALL) from exc
    return cedarpy


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "..."


class _DataError(Exception):
    """The store's data cannot be made into a Cedar entity set."""


@dataclass(frozen=True, slots=True)
class _Rule:
    """What the backend knows of one Cedar policy, for reasons."""

    effect: str
    name: str
    reason: Reason


@dataclass(slots=True)
class _Snapshot:
    """The Cedar entity set of one store version (or why there is none)."""

    version: int
    entities: Any = None  # cedarpy.Entities
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    wildcards: frozenset[str] = frozenset()
    error: str | None = None
    deltas: dict[str, Any] = field(default_factory=dict)


class _Names:
    """Our entity types to Cedar's, one to one."""

    def __init__(self, type_names: Mapping[str, str], namespace: str | None,
                 userset_type: str) -> None:
        prefix = f"{namespace}::" if namespace else ""
        for label, name in (("namespace", namespace or "X"), ("userset_type", userset_type)):
            if not isinstance(name, str) or not _CEDAR_NAME.fullmatch(name):
                raise ConfigurationError(f"{label}={name!r} is not a Cedar name")
        self.prefix = prefix
        self.action = prefix + "Action"
        self.userset = prefix + userset_type
        self._memo: dict[str, str] = {}
        self._owner: dict[str, str] = {}
        for type_, name in type_names.items():
            if not isinstance(name, str) or not _CEDAR_NAME.fullmatch(name):
                raise ConfigurationError(f"type_names[{type_!r}] = {name!r} is not a Cedar type name")
            full = name if "::" in name else prefix + name
            if full in (self.action, self.userset):
                raise ConfigurationError(f"type_names[{type_!r}] = {name!r} is reserved for "
                                         "actions and usersets")
            if full in self._owner:
                raise ConfigurationError(f"type_names maps both {self._owner[full]!r} and "
                                         f"{type_!r} to {full!r}")
            self._memo[type_] = full
            self._owner[full] = type_

    def cedar(self, type_: str) -> str | None:
        """The Cedar type of ``type_``; ``None`` when it has none (never two types, one name)."""
        name = self._memo.get(type_)
        if name is not None:
            return name
        first = type_[:1]
        if not ("a" <= first <= "z"):
            return None  # `User` would alias `user`: only lower-case types map by default
        name = self.prefix + first.upper() + type_[1:]
        if name in self._owner or name in (self.action, self.userset):
            return None
        if len(self._memo) < 4096:
            self._memo[type_] = name
        return name


def _statements(text: str) -> list[tuple[int, str]]:
    """The Cedar statements of ``text`` with the line each starts on (comments and strings aware)."""
    out: list[tuple[int, str]] = []
    start = i = 0
    n = len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c == ";":
            out.append((start, text[start:i + 1]))
            start = i + 1
        i += 1
    if text[start:].strip():
        out.append((start, text[start:]))
    lines = []
    for offset, body in out:
        skipped = _SKIP.match(body)
        lead = skipped.end() if skipped else 0
        if lead < len(body):
            lines.append((text.count("\n", 0, offset + lead) + 1, body))
    return lines


def _read(source: str | os.PathLike[str], what: str) -> tuple[str, str]:
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the Cedar {what} {str(path)[:200]!r}: {exc} (for "
                                 "text rather than a file, use CedarBackend.from_text)") from exc


class CedarBackend(BaseBackend):
    """Decides with Cedar (``cedarpy``) over entities built from a relationship store.

    ``policies`` and ``schema`` are paths (:meth:`from_text` takes the text).
    Keyword-only settings:

    ``store``
        the relationships and attributes to decide on (a new
        :class:`~agentauthz.engine.MemoryStore` by default).
    ``data``
        a data file or mapping (``relationships:``, ``attributes:``) to load.
    ``hierarchy``
        relations whose subject is the Cedar parent of their object, and which
        pass the parent's other relations down (default ``("parent",)``).
    ``type_names``
        Cedar type names for our types, where the default (``user`` ->
        ``User``) does not fit.
    ``namespace``
        the Cedar namespace of the schema's entity types and actions.
    ``userset_type``
        the Cedar entity type of usersets (default ``Userset``).
    ``validate_requests``
        pass the schema with each request so Cedar validates it (default
        ``True``; ``False`` evaluates undeclared types and context fields too).
    """

    name = "cedar"

    def __init__(self, policies: str | os.PathLike[str], schema: str | os.PathLike[str], *,
                 store: MemoryStore | None = None,
                 data: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                 hierarchy: Iterable[str] = ("parent",),
                 type_names: Mapping[str, str] | None = None,
                 namespace: str | None = None, userset_type: str = "Userset",
                 validate_requests: bool = True) -> None:
        policy_text, policy_file = _read(policies, "policies")
        schema_text, schema_file = _read(schema, "schema")
        self._setup(policy_text, policy_file, schema_text, schema_file, store=store, data=data,
                    hierarchy=hierarchy, type_names=type_names, namespace=namespace,
                    userset_type=userset_type, validate_requests=validate_requests)

    @classmethod
    def from_text(cls, policies: str, schema: str, *, store: MemoryStore | None = None,
                  data: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                  hierarchy: Iterable[str] = ("parent",),
                  type_names: Mapping[str, str] | None = None, namespace: str | None = None,
                  userset_type: str = "Userset", validate_requests: bool = True) -> CedarBackend:
        """Build from Cedar policy text and schema text (Cedar syntax, or JSON if it starts with ``{``)."""
        self = cls.__new__(cls)
        self._setup(policies, "<policies>", schema,
                    "<schema>.json" if schema.lstrip().startswith("{") else "<schema>",
                    store=store, data=data, hierarchy=hierarchy, type_names=type_names,
                    namespace=namespace, userset_type=userset_type,
                    validate_requests=validate_requests)
        return self

    # ----------------------------------------------------------------- loading
    def _setup(self, policy_text: str, policy_file: str, schema_text: str, schema_file: str, *,
               store: MemoryStore | None,
               data: str | os.PathLike[str] | Mapping[str, Any] | None,
               hierarchy: Iterable[str], type_names: Mapping[str, str] | None,
               namespace: str | None, userset_type: str, validate_requests: bool) -> None:
        self._cedar = _import_cedarpy()
        if store is not None and not isinstance(store, MemoryStore):
            raise ConfigurationError("store must be an agentauthz.engine.MemoryStore")
        if isinstance(hierarchy, str):
            raise ConfigurationError("hierarchy is a collection of relation names, not one string")
        self.hierarchy: frozenset[str] = frozenset(hierarchy)
        self._names = _Names(type_names or {}, namespace, userset_type)
        self.policy_file = policy_file
        self.schema_file = schema_file
        self._schema = self._load_schema(schema_text, schema_file)
        self._policyset, self._rules = self._load_policies(policy_text, policy_file)
        self._request_schema = self._schema if validate_requests else None
        self._uids: dict[str, tuple[dict[str, str], str]] = {}
        self._action_uids: dict[str, dict[str, str]] = {}
        self._granted: dict[tuple[str, ...], tuple[Reason, ...]] = {}
        order = {pid: i for i, pid in enumerate(sorted(self._rules, key=_natural))}
        self._position: Callable[[str], tuple[int, str]] = \
            lambda pid: (order.get(pid, len(order)), pid)
        self._actions = self._schema_actions()
        digest = hashlib.sha256()
        for part in (policy_text, schema_text, repr(sorted(self.hierarchy)),
                     repr(sorted((type_names or {}).items())), self._names.prefix, userset_type):
            digest.update(part.encode())
            digest.update(b"\0")
        self.policy_version: str = "sha256:" + digest.hexdigest()[:16]
        """Content hash of the policies, the schema and the entity mapping."""
        self.store: MemoryStore = store if store is not None else MemoryStore()
        with self.store.lock:
            self._snap = self._build()
        if self._snap.error is not None:
            raise ConfigurationError(f"the store's data does not fit the Cedar schema "
                                     f"{schema_file}: {self._snap.error}")
        if data is not None:
            try:
                self.load_data(data)
            except InvalidInputError as exc:
                where = data if isinstance(data, str | os.PathLike) else "data"
                raise ConfigurationError(f"{where}: {exc}") from exc

    def _load_schema(self, text: str, file: str) -> Any:
        cedar = self._cedar
        try:
            if file.endswith(".json"):
                return cedar.Schema.from_json_str(text)
            return cedar.Schema.from_str(text)
        except ValueError as exc:
            raise PolicyError([Problem(f"Cedar could not read the schema: {exc}", file=file)]) \
                from exc

    def _load_policies(self, text: str, file: str) -> tuple[Any, dict[str, _Rule]]:
        cedar = self._cedar
        statements = _statements(text)
        try:
            policyset = cedar.PolicySet.from_str(text)
            est = json.loads(cedar.policies_to_json_str(text))
        except ValueError as exc:
            raise PolicyError([self._parse_problem(statements, file, exc)]) from exc
        rules: dict[str, _Rule] = {}
        templates = est.get("templates") or {}
        for pid, policy in {**templates, **(est.get("staticPolicies") or {})}.items():
            effect = str(policy.get("effect"))
            annotations = policy.get("annotations") or {}
            name = str(annotations.get("id") or pid)
            description = annotations.get("description") or annotations.get("doc")
            if effect == "permit":
                reason = Reason("permit", str(description or f"granted by Cedar policy {name!r}"),
                                name)
            else:
                reason = Reason("forbid", str(description or f"forbidden by Cedar policy "
                                                             f"{name!r}"), name)
            rules[pid] = _Rule(effect, name, reason)
        for link in est.get("templateLinks") or []:
            template = rules.get(str(link.get("templateId")))
            if template is not None:
                rules[str(link.get("newId"))] = template
        result = cedar.validate_policies(text, self._schema)
        if not result.validation_passed:
            lines = {f"policy{i}": line for i, (line, _) in enumerate(statements)}
            raise PolicyError([
                Problem(str(err.error), file=file, line=lines.get(err.policy_id),
                        path=f"policy {rules[err.policy_id].name!r}"
                        if err.policy_id in rules else "")
                for err in result.errors])
        return policyset, rules

    def _parse_problem(self, statements: list[tuple[int, str]], file: str,
                       exc: ValueError) -> Problem:
        """Cedar names no line for a parse error: find the first statement that fails alone."""
        for line, body in statements:
            try:
                self._cedar.PolicySet.from_str(body)
            except ValueError as inner:
                return Problem(f"Cedar could not parse the policy: {inner}", file=file, line=line)
        return Problem(f"Cedar could not parse the policies: {exc}", file=file)

    def _schema_actions(self) -> tuple[str, ...]:
        """The actions the schema declares (Cedar adds them to an entity set built with it)."""
        rendered = json.loads(str(self._cedar.Entities.from_json_str("[]", self._schema)))
        return tuple(sorted(str(e["uid"]["id"]) for e in rendered
                            if e["uid"]["type"] == self._names.action))

    # ------------------------------------------------------------ entity set
    def _current(self) -> _Snapshot:
        snap = self._snap
        store = self.store
        if snap.version != store.version:
            with store.lock:
                snap = self._snap
                if snap.version != store.version:
                    snap = self._snap = self._build()
        if snap.error is not None:
            raise BackendError(f"the relationship store does not fit the Cedar schema "
                               f"{self.schema_file}: {snap.error}")
        return snap

    def _build(self) -> _Snapshot:
        """Turn the store into a Cedar entity set; call holding the store's lock."""
        store = self.store
        version = store.version
        try:
            docs, wildcards = self._documents(store)
        except _DataError as exc:
            return _Snapshot(version, error=str(exc))
        text = json.dumps(list(docs.values()))
        try:
            entities = self._cedar.Entities.from_json_str(text, self._schema)
        except ValueError as exc:
            return _Snapshot(version, error=self._rejection(text, exc))
        return _Snapshot(version, entities, docs, wildcards)

    def _rejection(self, text: str, exc: Exception) -> str:
        """Cedar's own words for why it refused entities (the handle's error is terse)."""
        names = self._names
        probe = {"principal": {"type": names.userset, "id": "?"},
                 "action": {"type": names.action, "id": "?"},
                 "resource": {"type": names.userset, "id": "?"}, "context": _EMPTY_CONTEXT}
        try:
            errors = self._cedar.is_authorized(probe, self._policyset, text,
                                               schema=self._schema).diagnostics.errors
        except Exception:  # the terse message is still an answer
            errors = []
        head = _ENTITIES_ERROR + text + ": "
        for err in errors:
            if err.startswith(head):
                return _short(err[len(head):])
        return _short(str(exc))

    def _uid(self, key: str) -> tuple[str, str]:
        type_, _, id_ = key.partition(":")
        ctype = self._names.cedar(type_)
        if ctype is None:
            raise _DataError(f"type {type_!r} (of {key!r}) has no Cedar name; name it in "
                             "type_names=")
        return ctype, id_

    def _documents(self, store: MemoryStore) -> tuple[dict[str, dict[str, Any]], frozenset[str]]:
        """The Cedar JSON of every entity and userset the store implies (see the module doc)."""
        userset = self._names.userset
        hierarchy = self.hierarchy
        uids: dict[str, tuple[str, str]] = {}
        parents: dict[str, set[tuple[str, str]]] = {}
        tags: dict[str, dict[str, str]] = {}
        inner: dict[str, set[str]] = {}  # userset -> the usersets it is in
        own: dict[str, set[str]] = {}  # object -> its relations that pass down
        up: dict[str, list[str]] = {}  # object -> its hierarchy parents
        wildcards: set[str] = set()
        named: set[str] = set()  # usersets named as subjects

        def entity(key: str) -> None:
            if key not in uids:
                uids[key] = self._uid(key)
                parents[key] = set()

        for rel in store.relationships():
            obj, relation, subject = rel.resource, rel.relation, rel.subject
            entity(obj)
            group = f"{obj}#{relation}"
            inner.setdefault(group, set())
            tags.setdefault(obj, {})[relation] = group
            stype, sid, srel = rel.subject_parts()
            if srel is not None or sid == "*":
                if sid == "*":
                    self._uid(subject)  # the type must have a Cedar name
                    wildcards.add(stype)
                else:
                    named.add(subject)
                inner.setdefault(subject, set()).add(group)
            else:
                entity(subject)
                parents[subject].add((userset, group))
            if relation in hierarchy:
                if srel is None and sid != "*":
                    parents[obj].add(uids[subject])
                    up.setdefault(obj, []).append(subject)
            else:
                own.setdefault(obj, set()).add(relation)
        self._pass_down(up, own, inner, tags)
        for subject in named:  # `doc:7#viewer` holds who its tag holds, passed down included
            obj, _, relation = subject.rpartition("#")
            holder = tags.get(obj, {}).get(relation)
            if holder is not None and holder != subject:
                inner[holder].add(subject)
        attributes: dict[str, dict[str, Any]] = {}
        for key in list(store.attributes):
            values = store.get_attributes(key)
            if values:
                entity(key)
                attributes[key] = self._record(values, f"attributes of {key}")
        for key in uids:
            if key.partition(":")[0] in wildcards:
                parents[key].add((userset, key.partition(":")[0] + ":*"))
        self._refuse_cycles(uids, parents, inner)
        docs: dict[str, dict[str, Any]] = {}
        for key, (ctype, id_) in uids.items():
            doc: dict[str, Any] = {
                "uid": {"type": ctype, "id": id_}, "attrs": attributes.get(key, {}),
                "parents": [{"type": t, "id": i} for t, i in sorted(parents[key])]}
            held = tags.get(key)
            if held:
                doc["tags"] = {r: {"__entity": {"type": userset, "id": g}}
                               for r, g in sorted(held.items())}
            docs[key] = doc
        for group, outer in inner.items():
            docs[group] = {"uid": {"type": userset, "id": group}, "attrs": {},
                           "parents": [{"type": userset, "id": g} for g in sorted(outer)]}
        return docs, frozenset(wildcards)

    @staticmethod
    def _pass_down(up: Mapping[str, list[str]], own: Mapping[str, set[str]],
                   inner: dict[str, set[str]], tags: dict[str, dict[str, str]]) -> None:
        """Give each object below another the relations of everything above it.

        Parents first. A relation the object holds itself is its own userset,
        with its parents' usersets inside; one it only inherits from a single
        parent *is* that parent's userset, shared rather than copied (Cedar
        materialises every ancestor of every entity: copying would give each
        user one ancestor per document below each folder it may view). Objects
        on a cycle are left alone: the cycle is refused afterwards.
        """
        below: dict[str, list[str]] = {}
        waiting: dict[str, int] = {}
        for child, above in up.items():
            waiting[child] = len(above)
            for parent in above:
                below.setdefault(parent, []).append(child)
                waiting.setdefault(parent, 0)
        ready = [node for node, count in waiting.items() if count == 0]
        held: dict[str, dict[str, str]] = {}  # object -> relation -> the userset holding it
        while ready:
            node = ready.pop()
            mine = own.get(node, set())
            from_above = [held[p] for p in up.get(node, ()) if p in held]
            groups: dict[str, str] = {}
            for relation in mine.union(*from_above):
                found = sorted({m[relation] for m in from_above if relation in m})
                if relation not in mine and len(found) == 1:
                    groups[relation] = found[0]
                    continue
                group = groups[relation] = f"{node}#{relation}"
                inner.setdefault(group, set())
                for outer in found:
                    inner[outer].add(group)
            held[node] = groups
            if groups:
                tags.setdefault(node, {}).update(groups)
            for child in below.get(node, ()):
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)

    def _refuse_cycles(self, uids: Mapping[str, tuple[str, str]],
                       parents: Mapping[str, set[tuple[str, str]]],
                       inner: Mapping[str, set[str]]) -> None:
        """Cedar refuses a cyclic hierarchy with a terse error: name the cycle instead."""
        userset = self._names.userset
        by_uid = {uid: key for key, uid in uids.items()}

        def edges(node: str) -> list[str]:
            if node in inner:
                return sorted(inner[node])
            return sorted(g if t == userset else by_uid.get((t, g), f"{t}::{g}")
                          for t, g in parents.get(node, ()))

        state: dict[str, int] = {}  # 1: on the path, 2: done
        for root in [*uids, *inner]:
            if root in state:
                continue
            path = [root]
            state[root] = 1
            stack = [iter(edges(root))]
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    state[path.pop()] = 2
                    stack.pop()
                    continue
                seen = state.get(nxt)
                if seen == 1:
                    cycle = [*path[path.index(nxt):], nxt]
                    raise _DataError("the relationships form a cycle, which Cedar's entity "
                                     "hierarchy cannot hold: " + " -> ".join(cycle))
                if seen is None:
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(edges(nxt)))

    # ------------------------------------------------------------ values
    def _record(self, values: Mapping[str, Any], where: str) -> dict[str, Any]:
        out = {}
        for key, value in values.items():
            if not isinstance(key, str):
                raise _DataError(f"{where}: field names must be strings, got {key!r}")
            if key in _ESCAPES:
                raise _DataError(f"{where}: field {key!r} is reserved by Cedar's JSON format")
            out[key] = self._value(value, f"{where}.{key}")
        return out

    def _value(self, value: Any, where: str) -> Any:
        """One value in Cedar's JSON form; what Cedar has no type for is refused, not guessed."""
        if value is None:
            raise _DataError(f"{where}: Cedar has no null; leave the field out")
        if isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            if not (_INT64[0] <= value <= _INT64[1]):
                raise _DataError(f"{where}: {value} does not fit Cedar's 64-bit Long")
            return value
        if isinstance(value, float):
            raise _DataError(f"{where}: Cedar has no floating-point numbers; store an integer "
                             "or a decimal string")
        if isinstance(value, Entity):
            ctype = self._names.cedar(value.type)
            if ctype is None:
                raise _DataError(f"{where}: type {value.type!r} has no Cedar name")
            return {"__entity": {"type": ctype, "id": value.id}}
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise _DataError(f"{where}: a datetime needs a time zone for Cedar")
            utc = value.astimezone(UTC)
            text = utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond // 1000:03d}Z"
            return {"__extn": {"fn": "datetime", "arg": text}}
        if isinstance(value, timedelta):
            return {"__extn": {"fn": "duration",
                               "arg": f"{value // timedelta(milliseconds=1)}ms"}}
        if isinstance(value, Mapping):
            return self._record(value, where)
        if isinstance(value, list | tuple | set | frozenset):
            return [self._value(v, f"{where}[]") for v in value]
        raise _DataError(f"{where}: Cedar has no type for {type(value).__name__}")

    # ---------------------------------------------------------------- writes
    def write(self, add: Iterable[Relationship | str | tuple[str, str, str]] = (),
              remove: Iterable[Relationship | str | tuple[str, str, str]] = ()) -> int:
        """Add and remove relationships in one batch; returns how many changed.

        Raises :class:`~agentauthz.errors.InvalidInputError`, and changes
        nothing, if a relationship is malformed or Cedar refuses the result.
        """
        adds, removes = _tuples(add), _tuples(remove)
        store = self.store
        with self._changing() as undo:
            new = [t for t in dict.fromkeys(adds) if not store.has(t)]
            gone = [t for t in dict.fromkeys(removes) if store.has(t)]
            changed = store.write(adds, removes)
            undo.append(lambda: store.write(gone, new))
        return changed

    def set_attributes(self, entity: EntityLike, attributes: Mapping[str, Any] | None) -> None:
        """Store the attributes of an entity (replacing earlier ones; ``None`` removes them)."""
        key = entity.key if isinstance(entity, Entity) else entity
        parse_entity_key(key)
        if attributes is not None and not isinstance(attributes, Mapping):
            raise InvalidInputError("attributes must be a mapping")
        for reserved in ("id", "type"):
            if attributes and reserved in attributes:
                raise InvalidInputError(f"attribute {reserved!r} is reserved")
        store = self.store
        with self._changing() as undo:
            old = store.get_attributes(key) or None
            store.set_attributes(key, attributes)
            undo.append(lambda: store.set_attributes(key, old))

    def load_data(self, source: str | os.PathLike[str] | Mapping[str, Any]) -> None:
        """Load a data file's relationships and attributes, all or nothing."""
        dataset = load_data(source)
        adds = _tuples(dataset.relationships)
        store = self.store
        with self._changing() as undo:
            new = [t for t in dict.fromkeys(adds) if not store.has(t)]
            old = {key: store.get_attributes(key) or None for key in dataset.attributes}
            store.write(adds)
            undo.append(lambda: store.write(remove=new))
            store.set_many_attributes(dataset.attributes.items())
            undo.append(lambda: store.set_many_attributes(old.items()))

    @contextmanager
    def _changing(self) -> Iterator[list[Callable[[], object]]]:
        """Hold the store for a write, then rebuild the entity set; undo what Cedar refuses.

        The body appends how to undo each step. Readers keep deciding on the
        previous entity set until the new one is in place; after a refusal the
        previous set, still current, is put back without a rebuild.
        """
        store = self.store
        with store.lock:
            before, version = self._snap, store.version
            undo: list[Callable[[], object]] = []
            yield undo
            if store.version == version:
                return
            snap = self._build()
            if snap.error is None:
                self._snap = snap
                return
            for step in reversed(undo):
                step()
            if before.version == version and before.error is None:
                self._snap = replace(before, version=store.version, deltas={})
            raise InvalidInputError(f"Cedar refuses the data (schema {self.schema_file}): "
                                    f"{snap.error}")

    # ---------------------------------------------------------------- checks
    def version(self) -> Hashable:
        return (self.policy_version, self.store.version)

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions the schema declares."""
        return self._actions

    def entities_json(self) -> str:
        """The current Cedar entity set as Cedar's JSON, e.g. for the ``cedar`` CLI."""
        docs = sorted(self._current().docs.values(),
                      key=lambda d: (d["uid"]["type"], d["uid"]["id"]))
        return json.dumps(docs, indent=2) + "\n"

    def check(self, principal: EntityLike, action: str, resource: EntityLike,
              context: Context | None = None) -> Decision:
        prepared = self._prepare(self._current(), principal, action, resource, context, None)
        if isinstance(prepared, Decision):
            return prepared
        request, entities = prepared
        return self._ask(entities, [request], [(action, resource)])[0]

    def check_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        items = []
        for r in requests:
            if isinstance(r, CheckRequest):
                items.append((r.principal, r.action, r.resource, r.context))
            else:
                items.append((None, "", None, None))  # denies as invalid input
        return self._decide(self._current(), items)

    def list_resources(self, principal: EntityLike, action: str, resource_type: str,
                       context: Context | None = None) -> frozenset[str]:
        """Every entity of ``resource_type`` the store knows that ``check`` would allow (a scan)."""
        if not isinstance(resource_type, str):
            raise InvalidInputError("resource_type must be a string")
        snap = self._current()
        candidates = sorted(self.store.entities(resource_type))
        decisions = self._decide(snap, [(principal, action, c, context) for c in candidates])
        return frozenset(c for c, d in zip(candidates, decisions, strict=True) if d.allowed)

    def list_actions(self, principal: EntityLike, resource: EntityLike,
                     context: Context | None = None) -> frozenset[str]:
        """Every action of the schema that ``check`` would allow on ``resource``."""
        actions = self._actions
        decisions = self._decide(self._current(),
                                 [(principal, a, resource, context) for a in actions])
        return frozenset(a for a, d in zip(actions, decisions, strict=True) if d.allowed)

    async def acheck(self, principal: EntityLike, action: str, resource: EntityLike,
                     context: Context | None = None) -> Decision:
        return self.check(principal, action, resource, context)

    async def acheck_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        return self.check_many(requests)

    async def alist_resources(self, principal: EntityLike, action: str, resource_type: str,
                              context: Context | None = None) -> frozenset[str]:
        return self.list_resources(principal, action, resource_type, context)

    async def alist_actions(self, principal: EntityLike, resource: EntityLike,
                            context: Context | None = None) -> frozenset[str]:
        return self.list_actions(principal, resource, context)

    # ------------------------------------------------------------- deciding
    def _decide(self, snap: _Snapshot, items: Sequence[tuple[Any, Any, Any, Any]]
                ) -> list[Decision]:
        """Prepare each request, ask Cedar in batches (one per entity set), translate."""
        out: list[Decision | None] = [None] * len(items)
        groups: dict[int, tuple[Any, list[int], list[dict[str, Any]]]] = {}
        memo: dict[str, Any] = {}
        for i, (principal, action, resource, context) in enumerate(items):
            prepared = self._prepare(snap, principal, action, resource, context, memo)
            if isinstance(prepared, Decision):
                out[i] = prepared
                continue
            request, entities = prepared
            group = groups.get(id(entities))
            if group is None:
                group = groups[id(entities)] = (entities, [], [])
            group[1].append(i)
            group[2].append(request)
        for entities, indices, requests in groups.values():
            answers = self._ask(entities, requests, [(items[i][1], items[i][2]) for i in indices])
            for i, decision in zip(indices, answers, strict=True):
                out[i] = decision
        return out  # type: ignore[return-value]  # every slot is filled above

    def _ask(self, entities: Any, requests: list[dict[str, Any]],
             labels: list[tuple[str, Any]]) -> list[Decision]:
        """Cedar's decisions on ``requests`` over one entity set, in batches."""
        out = []
        batch = self._cedar.is_authorized_batch
        for start in range(0, len(requests), _BATCH):
            chunk = requests[start:start + _BATCH]
            try:
                results = batch(chunk, self._policyset, entities, self._request_schema)
            except Exception as exc:  # a failing engine is not an answer
                raise BackendError(f"cedarpy failed ({type(exc).__name__}: "
                                   f"{_short(str(exc))})") from exc
            if len(results) != len(chunk):
                raise BackendError(f"cedarpy answered {len(results)} results for "
                                   f"{len(chunk)} requests")
            for (action, resource), result in zip(labels[start:start + _BATCH], results,
                                                  strict=True):
                out.append(self._translate(result, action, resource))
        return out

    def _uid_of(self, key: str, what: str) -> tuple[dict[str, str], str] | None:
        """``({"type", "id"}, our type)`` of a request's ``type:id``; ``None``: no Cedar type.

        Validated as the local evaluator validates (no wildcard, no userset),
        then remembered: the hot path parses each key once.
        """
        hit = self._uids.get(key)
        if hit is not None:
            return hit
        type_, id_ = parse_entity_key(key, what=what)
        ctype = self._names.cedar(type_)
        if ctype is None:
            return None
        if len(self._uids) >= 8192:
            self._uids.clear()
        hit = self._uids[key] = ({"type": ctype, "id": id_}, type_)
        return hit

    def _prepare(self, snap: _Snapshot, principal: Any, action: Any, resource: Any,
                 context: Any, memo: dict[str, Any] | None
                 ) -> Decision | tuple[dict[str, Any], Any]:
        """The Cedar request and its entity set, or the deny that malformed input earns."""
        try:
            if principal.__class__ is str:
                pkey, pattrs = principal, None
            else:
                pkey, pattrs = _key(principal, "principal")
            if resource.__class__ is str:
                rkey, rattrs = resource, None
            else:
                rkey, rattrs = _key(resource, "resource")
            p = self._uid_of(pkey, "principal")
            r = self._uid_of(rkey, "resource")
            if p is None or r is None:
                unknown = (pkey if p is None else rkey).partition(":")[0]
                return Decision(False, _DENY, (Reason(
                    "unknown_type", f"type {unknown[:64]!r} has no Cedar type"),),
                    self.policy_version)
            if action.__class__ is not str or not action:
                raise InvalidInputError("action must be a non-empty string")
            action_uid = self._action_uids.get(action)
            if action_uid is None:
                action_uid = {"type": self._names.action, "id": action}
                if len(self._action_uids) < 1024:
                    self._action_uids[action] = action_uid
            if not context:
                if context is not None and not isinstance(context, Mapping):
                    raise InvalidInputError("context must be a mapping")
                ctx = _EMPTY_CONTEXT
            elif isinstance(context, Mapping):
                ctx = json.dumps(self._record(context, "context"))
            else:
                raise InvalidInputError("context must be a mapping")
            if pattrs is None and rattrs is None and (
                    p[1] not in snap.wildcards or pkey in snap.docs):
                entities = snap.entities
            else:
                entities = self._entities(snap, pkey, p[1], pattrs, rkey, rattrs, memo)
                if isinstance(entities, Decision):
                    return entities
        except (InvalidInputError, _DataError) as exc:
            return Decision(False, _DENY, (Reason("invalid_input", _short(str(exc))),),
                            self.policy_version)
        return {"principal": p[0], "action": action_uid, "resource": r[0], "context": ctx}, entities

    def _entities(self, snap: _Snapshot, pkey: str, ptype: str, pattrs: Mapping[str, Any] | None,
                  rkey: str, rattrs: Mapping[str, Any] | None, memo: dict[str, Any] | None
                  ) -> Any:
        """The entity set for one request: the snapshot's, unless the request adds to it.

        A principal the store does not know, of a type with a wildcard, needs
        its ``Userset::"type:*"`` parent (a delta, cached per principal);
        attributes passed with the request replace the stored entity (the set
        is rebuilt for the call).
        """
        overrides = {k: a for k, a in ((pkey, pattrs), (rkey, rattrs)) if a}
        wild = ptype in snap.wildcards and pkey not in snap.docs
        if not overrides and not wild:
            return snap.entities
        if not overrides:
            cached = snap.deltas.get(pkey)
            if cached is None:
                doc = self._fresh(pkey, snap)
                cached = self._add(snap, [doc])
                if isinstance(cached, Decision):
                    return cached
                if len(snap.deltas) >= _MAX_DELTAS:
                    snap.deltas.clear()
                snap.deltas[pkey] = cached
            return cached
        changed: dict[str, dict[str, Any]] = {}
        if wild:
            changed[pkey] = self._fresh(pkey, snap)
        for key, extra in overrides.items():
            base = snap.docs.get(key) or changed.get(key) or self._fresh(key, snap)
            doc = dict(base)
            doc["attrs"] = {**base["attrs"], **self._record(extra, f"attributes of {key}")}
            changed[key] = doc
        text = json.dumps(list(changed.values()))
        hit = memo.get(text) if memo is not None else None
        if hit is not None:
            return hit
        if any(k in snap.docs for k in changed):
            full = json.dumps([*(changed.get(k, d) for k, d in snap.docs.items()),
                               *(d for k, d in changed.items() if k not in snap.docs)])
            try:
                built = self._cedar.Entities.from_json_str(full, self._schema)
            except ValueError as exc:
                return _refused(self._rejection(full, exc), self.policy_version)
        else:
            built = self._add(snap, list(changed.values()))
            if isinstance(built, Decision):
                return built
        if memo is not None and len(memo) < 64:
            memo[text] = built
        return built

    def _fresh(self, key: str, snap: _Snapshot) -> dict[str, Any]:
        """The Cedar JSON of an entity the store does not hold."""
        ctype, id_ = self._uid(key)
        type_ = key.partition(":")[0]
        doc_parents = ([{"type": self._names.userset, "id": f"{type_}:*"}]
                       if type_ in snap.wildcards else [])
        return {"uid": {"type": ctype, "id": id_}, "attrs": {}, "parents": doc_parents}

    def _add(self, snap: _Snapshot, docs: list[dict[str, Any]]) -> Any:
        text = json.dumps(docs)
        try:
            return snap.entities.with_added_json_str(text, self._schema)
        except ValueError as exc:
            return _refused(self._rejection(text, exc), self.policy_version)

    def _translate(self, result: Any, action: str, resource: Any) -> Decision:
        """Cedar's answer as a Decision; whatever cannot be read denies."""
        version = self.policy_version
        cedar = self._cedar
        try:
            verdict = result.decision
            diagnostics = result.diagnostics
            # Cedar names them in no stable order: file order makes reasons repeatable
            determining = tuple(sorted(diagnostics.reasons, key=self._position))
            errors = sorted(str(e) for e in diagnostics.errors)
        except Exception as exc:  # an answer we cannot read is no answer
            raise BackendError(f"cedarpy answered something unreadable ({type(exc).__name__})") \
                from exc
        if not errors and verdict is cedar.Decision.Allow:
            granted = self._granted.get(determining)
            if granted is None:
                granted = tuple(self._rules[p].reason for p in determining
                                if p in self._rules and self._rules[p].effect == "permit")
                if len(self._granted) < 1024:
                    self._granted[determining] = granted
            if granted:
                return Decision(True, _ALLOW, granted, version)
            return Decision(False, _DENY, (Reason(
                "evaluation_error", "Cedar allowed without naming a permit policy; denied"),),
                version)
        if verdict is not cedar.Decision.Allow and verdict is not cedar.Decision.Deny:
            message = "; ".join(errors) or "Cedar reached no decision"
            kind = "unknown_type" if "is not declared in the schema" in message \
                else "invalid_input"
            return Decision(False, _DENY, (Reason(kind, _short(
                f"Cedar's schema rejects the request: {message}")),), version)
        rules = self._rules
        failed_forbids: list[Reason] = []
        failed_permits: list[Reason] = []
        for err in errors:
            match = _POLICY_ERROR.match(err)
            rule = rules.get(match[1]) if match else None
            detail = _short(match[2] if match else err)
            if rule is not None and rule.effect == "permit":
                failed_permits.append(Reason("condition_error", f"Cedar policy {rule.name!r} "
                                             f"could not be evaluated ({detail}); it grants "
                                             "nothing", rule.name))
            else:  # an erroring forbid, or an error we cannot place: deny
                name = rule.name if rule is not None else (match[1] if match else None)
                if rule is not None:
                    failed_forbids.append(rule.reason)
                failed_forbids.append(Reason("condition_error", f"Cedar policy {name!r} could "
                                             f"not be evaluated ({detail}); an erroring forbid "
                                             "denies", name))
        if verdict is cedar.Decision.Allow and not failed_forbids:
            # allowed despite permits that failed: the failures are noted, the grant stands
            granted = tuple(rules[p].reason for p in determining
                            if p in rules and rules[p].effect == "permit")
            if granted:
                return Decision(True, _ALLOW, (*granted, *failed_permits), version)
            return Decision(False, _DENY, (Reason(
                "evaluation_error", "Cedar allowed without naming a permit policy; denied"),),
                version)
        reasons: list[Reason] = []
        if verdict is cedar.Decision.Deny:
            for p in determining:
                rule = rules.get(p)
                reasons.append(rule.reason if rule is not None else Reason(
                    "forbid", f"forbidden by Cedar policy {p!r}", p))
        if not reasons and not failed_forbids:
            rtype = resource.type if isinstance(resource, Entity) else \
                str(resource).partition(":")[0]
            reasons.append(Reason("default_deny", f"no Cedar policy permits {action[:64]!r} on "
                                                  f"{rtype[:64]}"))
        return Decision(False, _DENY, (*reasons, *failed_forbids, *failed_permits), version)


def _natural(pid: str) -> tuple[int, str]:
    """Cedar's positional ids (``policy0``, ``policy1``...) in file order, others after."""
    digits = pid.removeprefix("policy")
    return (int(digits) if digits.isdigit() else 1 << 62, pid)


def _refused(message: str, version: str) -> Decision:
    return Decision(False, _DENY, (Reason("invalid_input", _short(
        f"Cedar refuses the request's entities: {message}")),), version)


def _key(value: Any, what: str) -> tuple[str, Mapping[str, Any] | None]:
    if value.__class__ is str:
        return value, None
    if isinstance(value, Entity):
        return value.key, value.attributes or None
    raise InvalidInputError(f"{what} must be an Entity or a 'type:id' string")


def _tuples(items: Iterable[Relationship | str | tuple[str, str, str]]) -> list[RelationTuple]:
    out = []
    for item in items:
        rel = Relationship.of(item)
        out.append((rel.resource, rel.relation, rel.subject))
    return out
