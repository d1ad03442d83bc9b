"""Properties of scopes and attenuation, on random scopes and random requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentauthz.agents.credentials import Scope, TaskCredential, TaskCredentials
from agentauthz.errors import CredentialError, InvalidInputError

KEY = bytes(range(32))
T0 = 1_700_000_000.0
TYPES = ["doc", "folder"]
PREFIXES = ["a", "ab", "b"]
IDS = ["a", "ab", "abc", "abd", "b", "ba", "c"]

patterns = st.one_of(
    st.just("*"),
    st.sampled_from(TYPES).map(lambda t: f"{t}:*"),
    st.builds(lambda t, p: f"{t}:{p}*", st.sampled_from(TYPES), st.sampled_from(PREFIXES)),
    st.builds(lambda t, i: f"{t}:{i}", st.sampled_from(TYPES), st.sampled_from(IDS)),
)
items = st.tuples(st.sampled_from(["read", "write", "delete", "*"]), patterns)
scope_items = st.lists(items, min_size=1, max_size=4)
requests = st.lists(
    st.tuples(st.sampled_from(["read", "write", "delete", "share", "*"]),
              st.builds(lambda t, i: f"{t}:{i}", st.sampled_from([*TYPES, "user"]), st.sampled_from(IDS))),
    min_size=1, max_size=20)
examples = settings(max_examples=300, deadline=None)


def naive_allows(grants: list[tuple[str, str]], action: str, resource: str) -> bool:
    """The pattern semantics, spelled out item by item."""
    rtype, _, rid = resource.partition(":")
    for granted, pattern in grants:
        if granted not in ("*", action):
            continue
        if pattern == "*":
            return True
        ptype, _, pid = pattern.partition(":")
        if ptype != rtype:
            continue
        if pid.endswith("*") and rid.startswith(pid[:-1]):
            return True
        if pid == rid:
            return True
    return False


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


def issuer() -> TaskCredentials:
    return TaskCredentials({"k1": KEY}, clock=Clock())


@examples
@given(scope_items, requests)
def test_allows_matches_the_pattern_semantics(grants: list[tuple[str, str]],
                                              asked: list[tuple[str, str]]) -> None:
    scope = Scope.parse(grants)
    for action, resource in asked:
        assert scope.allows(action, resource) is naive_allows(grants, action, resource)


@examples
@given(scope_items, scope_items, requests)
def test_covers_is_sound(outer: list[tuple[str, str]], inner: list[tuple[str, str]],
                         asked: list[tuple[str, str]]) -> None:
    big, small = Scope.parse(outer), Scope.parse(inner)
    if big.covers(small):
        for action, resource in asked:
            assert not small.allows(action, resource) or big.allows(action, resource)


@examples
@given(scope_items, st.data())
def test_a_scope_covers_any_part_of_itself(grants: list[tuple[str, str]], data: st.DataObject) -> None:
    part = data.draw(st.lists(st.sampled_from(grants), min_size=1))
    assert Scope.parse(grants).covers(Scope.parse(part))


@examples
@given(scope_items, st.lists(scope_items, min_size=1, max_size=3), requests)
def test_attenuation_only_narrows_and_survives_the_round_trip(
        granted: list[tuple[str, str]], narrowings: list[list[tuple[str, str]]],
        asked: list[tuple[str, str]]) -> None:
    creds = issuer()
    parent: TaskCredential = creds.issue(agent="agent:a", on_behalf_of="user:u", scope=granted, ttl=600,
                                         purpose="p")
    for narrowing in narrowings:
        wanted = Scope.parse(narrowing)
        fits = all(s.covers(wanted) for s in (parent.scope, *parent.caveat_scopes))
        try:
            child = parent.attenuate(scope=wanted, ttl=60, clock=Clock())
        except InvalidInputError:
            assert not fits
            continue
        assert fits
        verified = creds.verify(child.token)
        assert verified == child
        for action, resource in asked:
            allowed = child.allows(action, resource)
            assert verified.allows(action, resource) is allowed
            if allowed:
                assert parent.allows(action, resource)
                assert wanted.allows(action, resource)
        parent = child


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8)
payload_keys = st.sampled_from(["agt", "exp", "iat", "id", "obo", "pur", "scp", "x"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


VALID = {"agt": "agent:a", "exp": int(T0 * 1000) + 60_000, "iat": int(T0 * 1000), "id": "t1",
         "obo": "user:u", "pur": "p", "scp": [["read", "doc:*"]]}
near_valid = st.builds(lambda key, value: {**VALID, key: value}, payload_keys, json_values)


@settings(max_examples=500, deadline=None)
@given(near_valid | st.dictionaries(payload_keys, json_values) | json_values)
def test_any_signed_payload_is_either_read_or_rejected_as_a_credential_error(payload: Any) -> None:
    body = _b64(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())
    head = f"aat1.k1.{body}"
    token = f"{head}.{_b64(hmac.new(KEY, head.encode(), hashlib.sha256).digest())}"
    try:
        credential = issuer().verify(token)
    except CredentialError as exc:
        outcome = exc.reason
    else:
        outcome = "read" if credential.token == token else "misread"
    assert outcome in {"read", "malformed", "widened", "expired"}
