"""Task credentials: scopes, key rings, issue/verify, attenuation, tampering and revocation.

Hand-made tokens are built here with ``hmac.new``/``hashlib`` straight from the
format in the module docstring, so these tests also pin the wire format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from agentauthz.agents.credentials import (
    KeyRing,
    Scope,
    ScopeItem,
    TaskCredential,
    TaskCredentials,
)
from agentauthz.agents.revocation import MemoryRevocationStore
from agentauthz.errors import (
    AuthorizationError,
    ConfigurationError,
    CredentialError,
    InvalidInputError,
    Unauthenticated,
)

KEY1 = bytes(range(32))
KEY2 = bytes(range(100, 132))
T0 = 1_700_000_000.0
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def mac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def append_caveat(token: str, caveat: dict[str, Any] | bytes) -> str:
    """What any holder can do: extend the HMAC chain from the signature it holds."""
    head, _, sig = token.rpartition(".")
    part = b64(caveat if isinstance(caveat, bytes) else canonical(caveat))
    return f"{head}.{part}.{b64(mac(unb64(sig), part))}"


def root_token(kid: str, key: bytes, payload: dict[str, Any] | bytes) -> str:
    """What only a key holder can do: sign a payload."""
    body = b64(payload if isinstance(payload, bytes) else canonical(payload))
    head = f"aat1.{kid}.{body}"
    return f"{head}.{b64(mac(key, head))}"


def payload_of(token: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(unb64(token.split(".")[2]))
    return result


def reason(excinfo: pytest.ExceptionInfo[CredentialError]) -> str:
    return excinfo.value.reason


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def creds(clock: Clock) -> TaskCredentials:
    return TaskCredentials({"k1": KEY1}, clock=clock)


@pytest.fixture
def root(creds: TaskCredentials) -> TaskCredential:
    return creds.issue(agent="agent:support-bot", on_behalf_of="user:alice",
                       scope=["read document:*", ("write", "document:42")], ttl=600,
                       purpose="answer ticket 7")


@pytest.fixture
def grandchild(root: TaskCredential, clock: Clock) -> TaskCredential:
    child = root.attenuate(scope=["read document:*"], ttl=300, agent="agent:researcher",
                           purpose="find sources", clock=clock)
    return child.attenuate(scope=[("read", "document:4*")], ttl=60, clock=clock)


# ------------------------------------------------------------------ scopes


def test_scope_parses_tuples_strings_and_lists_into_sorted_unique_items() -> None:
    scope = Scope.parse(["write document:42", ("read", "document:*"), ["read", "document:*"]])
    assert scope.items == (ScopeItem("read", "document:*"), ScopeItem("write", "document:42"))
    assert list(scope) == list(scope.items)
    assert len(scope) == 2
    assert scope.to_list() == [["read", "document:*"], ["write", "document:42"]]
    assert scope == Scope.parse(scope.to_list())
    assert hash(scope) == hash(Scope.parse([("write", "document:42"), "read document:*"]))
    assert scope != Scope.parse(["read document:*"])
    assert Scope.parse(scope) is scope
    assert Scope.parse("read document:*") == Scope.parse(["read document:*"])
    assert repr(scope) == "Scope(['read document:*', 'write document:42'])"


@pytest.mark.parametrize("item", [
    "",
    ("read", ""),
    ("read", "docu ment:1"),
    "read docu ment:1",
    ("read", "**"),
    ("read", "document:a*b"),
    ("read", "document:**"),
    ("read", "*:1"),
    ("read", "document:"),
    ("read", ":1"),
    ("read", "document"),
    ("read", "document:a#b"),
    ("read", "1doc:a"),
    ("re ad", "document:1"),
    ("", "document:1"),
    ("**", "document:1"),
    ("9read", "document:1"),
    ("read",),
    ("read", "document:1", "x"),
    ("read", 1),
    42,
    None,
])
def test_scope_rejects_malformed_items_naming_them_and_the_accepted_forms(item: Any) -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        Scope.parse([item])
    message = str(excinfo.value)
    assert f"scope item {item!r}" in message
    assert "'type:prefix*'" in message


def test_scope_must_not_be_empty() -> None:
    with pytest.raises(InvalidInputError, match="at least one item"):
        Scope.parse([])
    with pytest.raises(InvalidInputError, match="list of items"):
        Scope.parse(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(("item", "action", "resource", "allowed"), [
    ("read *", "read", "document:1", True),
    ("read *", "read", "folder:x", True),
    ("read *", "write", "document:1", False),
    ("* *", "delete", "anything:at-all", True),
    ("read document:*", "read", "document:1", True),
    ("read document:*", "read", "documents:1", False),
    ("read document:*", "read", "doc:1", False),
    ("read document:ab*", "read", "document:ab", True),
    ("read document:ab*", "read", "document:abc", True),
    ("read document:ab*", "read", "document:a", False),
    ("read document:ab*", "read", "document:xab", False),
    ("read document:ab*", "read", "folder:abc", False),
    ("read document:42", "read", "document:42", True),
    ("read document:42", "read", "document:421", False),
    ("read document:42", "read", "document:4", False),
    ("read document:a:b", "read", "document:a:b", True),
    ("* document:42", "read", "document:42", True),
    ("* document:42", "*", "document:42", True),
    ("* document:42", "write", "document:43", False),
    ("read document:*", "*", "document:1", False),
    ("read.v2 document:*", "read.v2", "document:1", True),
    ("read.v2 document:*", "read", "document:1", False),
])
def test_scope_allows(item: str, action: str, resource: str, allowed: bool) -> None:
    assert Scope.parse([item]).allows(action, resource) is allowed


def test_scope_allows_combines_named_and_wildcard_actions() -> None:
    scope = Scope.parse(["read document:*", "* folder:7", "write document:a*", "write document:abc"])
    assert scope.allows("read", "folder:7")
    assert scope.allows("write", "folder:7")
    assert scope.allows("share", "folder:7")
    assert scope.allows("write", "document:abc")
    assert scope.allows("write", "document:a")
    assert not scope.allows("write", "document:b")
    assert not scope.allows("share", "document:1")
    assert not scope.allows("read", "folder:8")


@pytest.mark.parametrize(("outer", "inner", "covered"), [
    (["* *"], ["read document:1", "write folder:*"], True),
    (["read *"], ["read document:*"], True),
    (["read *"], ["* document:*"], False),
    (["read document:*"], ["read document:ab*"], True),
    (["read document:a*"], ["read document:ab*", "read document:a"], True),
    (["read document:ab*"], ["read document:a*"], False),
    (["read document:ab*"], ["read document:*"], False),
    (["read document:*"], ["read folder:1"], False),
    (["read document:1"], ["read document:1"], True),
    (["read document:1"], ["read document:1*"], False),
    (["read document:1", "write document:1"], ["read document:1"], True),
    (["read document:1"], ["read document:1", "write document:1"], False),
    (["* document:1"], ["write document:1"], True),
    (["read *", "write *"], ["* *"], False),
])
def test_scope_covers(outer: list[str], inner: list[str], covered: bool) -> None:
    assert Scope.parse(outer).covers(Scope.parse(inner)) is covered


# -------------------------------------------------------------------- keys


def test_key_ring_defaults_to_one_random_key() -> None:
    ring, other = KeyRing(), KeyRing()
    assert ring.kids == {ring.active_kid}
    assert ring.active_kid != other.active_kid
    token = TaskCredentials(ring).issue(agent="agent:a", on_behalf_of=None, scope=["read *"], ttl=60,
                                        purpose="p").token
    with pytest.raises(CredentialError) as excinfo:
        TaskCredentials(other).verify(token)
    assert reason(excinfo) == "unknown_key"


def test_key_ring_validates_its_keys() -> None:
    with pytest.raises(ConfigurationError, match=r"31 bytes.*secrets\.token_bytes\(32\)"):
        KeyRing({"k1": b"x" * 31})
    with pytest.raises(ConfigurationError, match="31 bytes"):
        KeyRing({"k1": "x" * 31})
    assert KeyRing({"k1": "é" * 16}).active_kid == "k1"  # 32 bytes once utf-8 encoded
    with pytest.raises(ConfigurationError, match="key id"):
        KeyRing({"k.1": KEY1})
    with pytest.raises(ConfigurationError, match="key id"):
        KeyRing({"k" * 33: KEY1})
    with pytest.raises(ConfigurationError, match="bytes or str"):
        KeyRing({"k1": 12345})  # type: ignore[dict-item]
    with pytest.raises(ConfigurationError, match="at least one key"):
        KeyRing({})
    with pytest.raises(ConfigurationError, match="active="):
        KeyRing({"k1": KEY1, "k2": KEY2})
    with pytest.raises(ConfigurationError, match="not one of"):
        KeyRing({"k1": KEY1}, active="k2")
    assert KeyRing({"k1": KEY1, "k2": KEY2}, active="k2").active_kid == "k2"


def test_key_ring_repr_shows_no_secret() -> None:
    ring = KeyRing({"k1": "s" * 40})
    assert "sss" not in repr(ring)
    assert "k1" in repr(ring)


def test_rotation_keeps_old_tokens_until_their_key_is_retired(creds: TaskCredentials,
                                                               root: TaskCredential) -> None:
    creds.keys.rotate("k2", KEY2)
    assert creds.keys.active_kid == "k2"
    assert creds.keys.kids == {"k1", "k2"}
    assert creds.verify(root.token) == root
    fresh = creds.issue(agent="agent:a", on_behalf_of=None, scope=["read *"], ttl=60, purpose="p")
    assert fresh.token.split(".")[1] == "k2"

    creds.keys.retire("k1")
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(root.token)
    assert reason(excinfo) == "unknown_key"
    assert creds.verify(fresh.token) == fresh


def test_rotation_and_retirement_refuse_mistakes(creds: TaskCredentials) -> None:
    with pytest.raises(ConfigurationError, match="active"):
        creds.keys.retire("k1")
    with pytest.raises(ConfigurationError, match="no key"):
        creds.keys.retire("k9")
    with pytest.raises(ConfigurationError, match="another secret"):
        creds.keys.rotate("k1", KEY2)
    creds.keys.rotate("k1", KEY1)  # the same key again is harmless
    assert creds.keys.kids == {"k1"}
    with pytest.raises(ConfigurationError, match="31 bytes"):
        creds.keys.rotate("k2", b"x" * 31)


# ---------------------------------------------------------- issue / verify


def test_issue_verify_round_trip(creds: TaskCredentials, root: TaskCredential, clock: Clock) -> None:
    assert isinstance(root.token, str)
    assert root.token.startswith("aat1.k1.")
    assert root.id == root.task_id
    assert root.chain == (root.id,)
    assert root.agent == "agent:support-bot"
    assert root.agents == ("agent:support-bot",)
    assert root.on_behalf_of == "user:alice"
    assert root.scope == Scope.parse(["read document:*", "write document:42"])
    assert root.caveat_scopes == ()
    assert root.purpose == "answer ticket 7"
    assert root.purposes == ("answer ticket 7",)
    assert root.issued_at == T0
    assert root.expires_at == T0 + 600
    assert creds.verify(root.token) == root
    assert creds.verify(root.token, agent="agent:support-bot") == root
    assert payload_of(root.token) == {
        "agt": "agent:support-bot", "exp": int((T0 + 600) * 1000), "iat": int(T0 * 1000),
        "id": root.id, "obo": "user:alice", "pur": "answer ticket 7",
        "scp": [["read", "document:*"], ["write", "document:42"]],
    }


def test_ids_are_unique(creds: TaskCredentials) -> None:
    ids = {creds.issue(agent="agent:a", on_behalf_of=None, scope=["read *"], ttl=60, purpose="p").id
           for _ in range(200)}
    assert len(ids) == 200


def test_a_token_verifies_in_another_process_with_the_same_keys_only(root: TaskCredential,
                                                                      clock: Clock) -> None:
    assert TaskCredentials({"k1": KEY1}, clock=clock).verify(root.token) == root
    with pytest.raises(CredentialError) as excinfo:
        TaskCredentials({"k2": KEY1}, clock=clock).verify(root.token)
    assert reason(excinfo) == "unknown_key"
    with pytest.raises(CredentialError) as excinfo:
        TaskCredentials({"k1": KEY2}, clock=clock).verify(root.token)
    assert reason(excinfo) == "bad_signature"


def test_repr_leaves_out_the_token(root: TaskCredential) -> None:
    assert root.token not in repr(root)
    assert root.id in repr(root)


def test_credential_error_is_unauthenticated_without_a_decision() -> None:
    error = CredentialError("expired", "it expired")
    assert isinstance(error, Unauthenticated)
    assert isinstance(error, AuthorizationError)
    assert error.decision is None
    assert error.reason == "expired"
    assert str(error) == "it expired"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"agent": "support-bot"}, "task agent"),
    ({"agent": None}, "task agent"),
    ({"on_behalf_of": "alice"}, "on_behalf_of"),
    ({"purpose": ""}, "purpose"),
    ({"purpose": "   "}, "purpose"),
    ({"purpose": "x" * 501}, "at most 500"),
    ({"purpose": None}, "purpose"),
    ({"ttl": 0}, "more than 0"),
    ({"ttl": -5}, "more than 0"),
    ({"ttl": 3600.5}, "max_ttl=3600"),
    ({"ttl": float("nan")}, "ttl"),
    ({"ttl": float("inf")}, "ttl"),
    ({"ttl": True}, "ttl"),
    ({"ttl": "60"}, "ttl"),
    ({"scope": []}, "at least one item"),
    ({"scope": ["read docu ment:1"]}, "docu ment"),
])
def test_issue_validates_its_input(creds: TaskCredentials, kwargs: dict[str, Any], match: str) -> None:
    good: dict[str, Any] = {"agent": "agent:bot", "on_behalf_of": "user:alice", "scope": ["read *"],
                            "ttl": 60, "purpose": "p"}
    assert creds.issue(**good).agent == "agent:bot"
    with pytest.raises(InvalidInputError, match=match):
        creds.issue(**{**good, **kwargs})


def test_issue_without_a_user_and_at_max_ttl(creds: TaskCredentials) -> None:
    credential = creds.issue(agent="agent:bot", on_behalf_of=None, scope=["read *"], ttl=3600,
                             purpose="nightly job")
    assert credential.on_behalf_of is None
    assert creds.verify(credential.token) == credential


def test_configuration_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="max_ttl"):
        TaskCredentials(max_ttl=0)
    with pytest.raises(ConfigurationError, match="max_chain"):
        TaskCredentials(max_chain=-1)
    assert TaskCredentials({"k1": KEY1}).keys.active_kid == "k1"
    ring = KeyRing({"k1": KEY1})
    assert TaskCredentials(ring).keys is ring


# ---------------------------------------------------------------- tampering


def _replacements(char: str) -> list[str]:
    return [next(c for c in B64URL if c != char), "." if char != "." else "A", "é"]


def _tokens(root: TaskCredential, grandchild: TaskCredential) -> list[str]:
    assert len(grandchild.token.split(".")) == 6
    return [root.token, grandchild.token]


def test_every_altered_character_is_rejected(creds: TaskCredentials, root: TaskCredential,
                                             grandchild: TaskCredential) -> None:
    for token in _tokens(root, grandchild):
        assert creds.verify(token).token == token
        for i, char in enumerate(token):
            for new in _replacements(char):
                with pytest.raises(CredentialError):
                    creds.verify(token[:i] + new + token[i + 1:])


def test_every_deleted_character_and_every_truncation_is_rejected(
        creds: TaskCredentials, root: TaskCredential, grandchild: TaskCredential) -> None:
    for token in _tokens(root, grandchild):
        for i in range(len(token)):
            with pytest.raises(CredentialError):
                creds.verify(token[:i] + token[i + 1:])
            with pytest.raises(CredentialError):
                creds.verify(token[:i])


def test_dropping_a_caveat_is_rejected(creds: TaskCredentials, grandchild: TaskCredential) -> None:
    parts = grandchild.token.split(".")
    for dropped in (3, 4):
        with pytest.raises(CredentialError) as excinfo:
            creds.verify(".".join(parts[:dropped] + parts[dropped + 1:]))
        assert reason(excinfo) == "bad_signature"


def test_every_payload_byte_resigned_with_a_wrong_key_is_a_bad_signature(
        creds: TaskCredentials, root: TaskCredential) -> None:
    payload = unb64(root.token.split(".")[2])
    for i in range(len(payload)):
        for byte in {payload[i] ^ 0x01, ord("x") if payload[i] != ord("x") else ord("y")}:
            altered = payload[:i] + bytes([byte]) + payload[i + 1:]
            with pytest.raises(CredentialError) as excinfo:
                creds.verify(root_token("k1", KEY2, altered))
            assert reason(excinfo) == "bad_signature"
    assert creds.verify(root_token("k1", KEY1, payload)) == root


def test_every_payload_byte_resigned_with_the_right_key_never_escapes_as_another_error(
        creds: TaskCredentials, root: TaskCredential) -> None:
    """Only a key holder gets this far; the parser must still fail closed and typed."""
    payload = unb64(root.token.split(".")[2])
    for i in range(len(payload)):
        for byte in (payload[i] ^ 0x01, ord("x"), ord("}"), ord('"'), 0xFF):
            altered = payload[:i] + bytes([byte]) + payload[i + 1:]
            try:
                credential = creds.verify(root_token("k1", KEY1, altered))
            except CredentialError:
                continue
            assert credential.token.split(".")[2] == b64(altered)


@pytest.mark.parametrize("token", [
    None, 42, b"aat1.k1.a.b", ["aat1"], "", ".", "aat1", "aat1.", "aat1.k1", "aat1.k1.", "aat1.k1.e30",
    "aat1.k1.e30.", "aat1..e30.sig", "aat1.k1..sig", "aat2.k1.e30.c2ln", "AAT1.k1.e30.c2ln",
    "aat1.k1.e3=.c2ln", "aat1.k1.e3+/.c2ln", "aat1.k1.pay!load.c2ln", "aat1.k1.é.c2ln",
    "aat1.k1.e30.c2ln ", " aat1.k1.e30.c2ln", "aat1.k1.e30.c2ln\n", "aat1.k\u0131.e30.c2ln",
    "aat1.k1.e30..c2ln", "x" * 8192,
])
def test_garbage_is_malformed(creds: TaskCredentials, token: Any) -> None:
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(token)
    assert reason(excinfo) == "malformed"


def test_huge_tokens_are_too_long(creds: TaskCredentials, root: TaskCredential) -> None:
    with pytest.raises(CredentialError) as excinfo:
        creds.verify("x" * 8193)
    assert reason(excinfo) == "too_long"
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(root.token + "A" * 10_000_000)
    assert reason(excinfo) == "too_long"


def test_an_unknown_key_id_is_not_tried_against_other_keys(creds: TaskCredentials,
                                                           root: TaskCredential) -> None:
    parts = root.token.split(".")
    for kid in ("k2", "none", "K1", "k1k1"):
        with pytest.raises(CredentialError) as excinfo:
            creds.verify(".".join([parts[0], kid, *parts[2:]]))
        assert reason(excinfo) == "unknown_key"
    resigned = root_token("k2", KEY1, unb64(parts[2]))
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(resigned)
    assert reason(excinfo) == "unknown_key"


def _payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"agt": "agent:bot", "exp": int(T0 * 1000) + 60_000, "iat": int(T0 * 1000),
                               "id": "task-1", "obo": "user:alice", "pur": "p", "scp": [["read", "*"]]}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not ...}


def test_a_well_formed_hand_made_token_verifies(creds: TaskCredentials) -> None:
    credential = creds.verify(root_token("k1", KEY1, _payload()))
    assert (credential.id, credential.agent, credential.on_behalf_of) == ("task-1", "agent:bot", "user:alice")
    assert creds.verify(root_token("k1", KEY1, _payload(obo=None))).on_behalf_of is None


@pytest.mark.parametrize("payload", [
    b"[]",
    b'"text"',
    b"null",
    b"{}",
    b"not json",
    b"[" * 3000 + b"]" * 3000,
    canonical(_payload())[:-1],
    canonical(_payload()) + b" ",
    json.dumps(_payload(), sort_keys=True).encode(),
    json.dumps(dict(reversed(_payload().items())), separators=(",", ":")).encode(),
    json.dumps(_payload(pur="é"), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
    canonical(_payload()).replace(b'"agt":"agent:bot"', b'"agt":"agent:bot","agt":"agent:bot"'),
    canonical(_payload()).replace(b'{"agt":"agent:bot"', b'{"agt":"agent:evil","agt":"agent:bot"'),
    canonical(_payload()).replace(b'"exp":1700000060000', b'"exp":1700000060000.0'),
    canonical(_payload()).replace(b'"exp":1700000060000', b'"exp":1.70000006e12'),
    canonical(_payload()).replace(b'"exp":1700000060000', b'"exp":NaN'),
    canonical(_payload()).replace(b'"exp":1700000060000', b'"exp":' + b"9" * 5000),
    canonical(_payload(extra=1)),
    canonical(_payload(agt=...)),
    canonical(_payload(obo=...)),
    canonical(_payload(exp=True)),
    canonical(_payload(exp="1700000060000")),
    canonical(_payload(exp=-1)),
    canonical(_payload(exp=int(T0 * 1000))),
    canonical(_payload(iat=None)),
    canonical(_payload(id="")),
    canonical(_payload(id="a.b")),
    canonical(_payload(id=7)),
    canonical(_payload(agt="bot")),
    canonical(_payload(agt=["agent:bot"])),
    canonical(_payload(obo="")),
    canonical(_payload(pur="")),
    canonical(_payload(pur="x" * 501)),
    canonical(_payload(scp=[])),
    canonical(_payload(scp="read *")),
    canonical(_payload(scp=["read *"])),
    canonical(_payload(scp=[["read"]])),
    canonical(_payload(scp=[["read", "*", "x"]])),
    canonical(_payload(scp=[["read", 1]])),
    canonical(_payload(scp=[["read", "docu ment:1"]])),
    canonical(_payload(scp=[["write", "*"], ["read", "*"]])),
    canonical(_payload(scp=[["read", "*"], ["read", "*"]])),
    canonical(_payload(scp={"read": "*"})),
])
def test_payloads_signed_with_the_right_key_but_malformed_are_rejected(creds: TaskCredentials,
                                                                      payload: bytes) -> None:
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(root_token("k1", KEY1, payload))
    assert reason(excinfo) == "malformed"


def test_non_canonical_base64_is_malformed(creds: TaskCredentials) -> None:
    body = b64(canonical(_payload(pur="pq")))
    assert len(body) % 4 in (2, 3)
    last = B64URL.index(body[-1])
    twin = body[:-1] + B64URL[last + 1]  # same bytes when decoded leniently: the spare bits differ
    assert unb64(twin) == unb64(body)
    head = f"aat1.k1.{twin}"
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(f"{head}.{b64(mac(KEY1, head))}")
    assert reason(excinfo) == "malformed"


def test_a_lifetime_beyond_this_verifiers_max_ttl_is_widened(clock: Clock) -> None:
    generous = TaskCredentials({"k1": KEY1}, clock=clock, max_ttl=86_400)
    strict = TaskCredentials({"k1": KEY1}, clock=clock)
    token = generous.issue(agent="agent:a", on_behalf_of=None, scope=["read *"], ttl=7200, purpose="p").token
    assert generous.verify(token).expires_at == T0 + 7200
    with pytest.raises(CredentialError) as excinfo:
        strict.verify(token)
    assert reason(excinfo) == "widened"


# ------------------------------------------------------------- attenuation


def test_attenuation_narrows_and_verifies(creds: TaskCredentials, root: TaskCredential,
                                          grandchild: TaskCredential) -> None:
    assert grandchild.task_id == root.id
    assert len(grandchild.chain) == 3
    assert grandchild.chain[0] == root.id
    assert grandchild.id == grandchild.chain[-1]
    assert len(set(grandchild.chain)) == 3
    assert grandchild.agent == "agent:researcher"
    assert grandchild.agents == ("agent:support-bot", "agent:researcher")
    assert grandchild.on_behalf_of == "user:alice"
    assert grandchild.scope == root.scope
    assert grandchild.caveat_scopes == (Scope.parse(["read document:*"]), Scope.parse(["read document:4*"]))
    assert grandchild.purpose == "answer ticket 7"
    assert grandchild.purposes == ("answer ticket 7", "find sources")
    assert grandchild.issued_at == root.issued_at
    assert grandchild.expires_at == T0 + 60
    assert grandchild.allows("read", "document:42")
    assert not grandchild.allows("read", "document:5")
    assert not grandchild.allows("write", "document:42")
    assert root.allows("write", "document:42")
    assert creds.verify(grandchild.token) == grandchild
    assert creds.verify(grandchild.token, agent="agent:researcher") == grandchild


def test_attenuation_defaults_keep_scope_and_expiry_but_give_a_new_id(
        creds: TaskCredentials, root: TaskCredential, clock: Clock) -> None:
    child = root.attenuate(clock=clock)
    assert child.id != root.id
    assert child.chain == (root.id, child.id)
    assert child.caveat_scopes == ()
    assert child.expires_at == root.expires_at
    assert child.agents == root.agents
    assert json.loads(unb64(child.token.split(".")[3])) == {"exp": int(root.expires_at * 1000),
                                                           "id": child.id}
    assert creds.verify(child.token) == child
    same_agent = root.attenuate(agent=root.agent, clock=clock)
    assert same_agent.agents == root.agents
    assert creds.verify(same_agent.token) == same_agent


def test_attenuation_cannot_widen(root: TaskCredential, clock: Clock) -> None:
    assert root.attenuate(scope=["read document:1"], clock=clock).allows("read", "document:1")
    for wider in (["read *"], ["read folder:*"], ["write document:*"], ["* document:42"],
                  ["read document:*", "delete document:1"]):
        with pytest.raises(InvalidInputError, match="asks for more"):
            root.attenuate(scope=wider, clock=clock)
    child = root.attenuate(scope=["read document:a*"], clock=clock)
    assert child.attenuate(scope=["read document:ab*"], clock=clock).allows("read", "document:abc")
    with pytest.raises(InvalidInputError, match="asks for more"):
        child.attenuate(scope=["read document:b*"], clock=clock)  # within the root, not the caveat
    with pytest.raises(InvalidInputError, match="asks for more"):
        child.attenuate(scope=["write document:42"], clock=clock)


def test_attenuation_cannot_outlive_its_parent(root: TaskCredential, clock: Clock) -> None:
    assert root.attenuate(ttl=600, clock=clock).expires_at == root.expires_at
    with pytest.raises(InvalidInputError, match="outlive"):
        root.attenuate(ttl=600.5, clock=clock)
    clock.now += 500
    with pytest.raises(InvalidInputError, match="outlive"):
        root.attenuate(ttl=101, clock=clock)
    assert root.attenuate(ttl=100, clock=clock).expires_at == root.expires_at
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(InvalidInputError, match="ttl"):
            root.attenuate(ttl=bad, clock=clock)


def test_attenuation_validates_agent_and_purpose(root: TaskCredential, clock: Clock) -> None:
    with pytest.raises(InvalidInputError, match="attenuate agent"):
        root.attenuate(agent="researcher", clock=clock)
    with pytest.raises(InvalidInputError, match="purpose"):
        root.attenuate(purpose="", clock=clock)
    assert root.attenuate(agent="agent:r", purpose="q", clock=clock).purposes == (root.purpose, "q")


def test_an_expired_credential_cannot_be_attenuated(root: TaskCredential, clock: Clock) -> None:
    clock.now = root.expires_at
    with pytest.raises(CredentialError) as excinfo:
        root.attenuate(clock=clock)
    assert reason(excinfo) == "expired"


def _caveat(**fields: Any) -> dict[str, Any]:
    return {"id": "hand-made", **fields}


def test_hand_made_caveats_that_narrow_verify(creds: TaskCredentials, root: TaskCredential) -> None:
    exp = int(root.expires_at * 1000)
    token = append_caveat(root.token, _caveat(exp=exp - 1000, scp=[["read", "document:7"]]))
    credential = creds.verify(token)
    assert credential.allows("read", "document:7")
    assert not credential.allows("read", "document:8")
    assert credential.expires_at == root.expires_at - 1
    assert creds.verify(append_caveat(root.token, _caveat(exp=exp))).id == "hand-made"


@pytest.mark.parametrize("scp", [
    [["read", "*"]],
    [["read", "folder:*"]],
    [["write", "document:*"]],
    [["*", "document:42"]],
    [["read", "document:*"], ["write", "document:43"]],
])
def test_hand_made_caveats_that_widen_the_scope_are_rejected(creds: TaskCredentials, root: TaskCredential,
                                                             scp: list[list[str]]) -> None:
    token = append_caveat(root.token, _caveat(exp=int(root.expires_at * 1000), scp=scp))
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(token)
    assert reason(excinfo) == "widened"


def test_a_hand_made_caveat_wider_than_an_earlier_caveat_is_rejected(
        creds: TaskCredentials, root: TaskCredential, clock: Clock) -> None:
    child = root.attenuate(scope=["read document:a*"], clock=clock)
    exp = int(child.expires_at * 1000)
    assert creds.verify(append_caveat(child.token, _caveat(exp=exp, scp=[["read", "document:ab"]])))
    token = append_caveat(child.token, _caveat(exp=exp, scp=[["read", "document:*"]]))
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(token)
    assert reason(excinfo) == "widened"


def test_a_hand_made_caveat_that_lives_longer_is_rejected(creds: TaskCredentials, root: TaskCredential,
                                                          clock: Clock) -> None:
    child = root.attenuate(ttl=60, clock=clock)
    exp = int(child.expires_at * 1000)
    assert creds.verify(append_caveat(child.token, _caveat(exp=exp))).expires_at == child.expires_at
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(append_caveat(child.token, _caveat(exp=exp + 1)))
    assert reason(excinfo) == "widened"


@pytest.mark.parametrize("caveat", [
    b"[]",
    b"{}",
    canonical({"id": "x"}),
    canonical({"exp": 1}),
    canonical(_caveat(exp=1, extra=1)),
    canonical(_caveat(exp=1, scp=None)),
    canonical(_caveat(exp=1, agt=None)),
    canonical(_caveat(exp=1, agt="bot")),
    canonical(_caveat(exp=1, pur="")),
    canonical(_caveat(exp=1.5)),
    canonical(_caveat(exp=1, scp=[["read", "document:2"], ["read", "document:1"]])),
    canonical({"exp": 1, "id": "dup", "id ": "x"}).replace(b'"id ":"x"', b'"id":"x"'),
    json.dumps(_caveat(exp=1)).encode(),
])
def test_hand_made_caveats_that_are_malformed_are_rejected(creds: TaskCredentials, root: TaskCredential,
                                                           caveat: bytes) -> None:
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(append_caveat(root.token, caveat))
    assert reason(excinfo) == "malformed"


def test_a_caveat_may_not_reuse_an_id_of_its_chain(creds: TaskCredentials, root: TaskCredential) -> None:
    exp = int(root.expires_at * 1000)
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(append_caveat(root.token, {"exp": exp, "id": root.id}))
    assert reason(excinfo) == "malformed"


def test_chains_up_to_max_chain_verify_and_longer_ones_do_not(creds: TaskCredentials,
                                                               root: TaskCredential, clock: Clock) -> None:
    credential = root
    for _ in range(creds.max_chain):
        credential = credential.attenuate(scope=["read document:*"], clock=clock)
    assert len(credential.chain) == creds.max_chain + 1
    assert creds.verify(credential.token) == credential
    longer = credential.attenuate(clock=clock)
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(longer.token)
    assert reason(excinfo) == "too_long"

    short = TaskCredentials({"k1": KEY1}, clock=clock, max_chain=0)
    assert short.verify(root.token) == root
    with pytest.raises(CredentialError) as excinfo:
        short.verify(root.attenuate(clock=clock).token)
    assert reason(excinfo) == "too_long"


def test_attenuation_refuses_to_make_a_token_verify_would_reject_as_too_long(
        root: TaskCredential, clock: Clock) -> None:
    purpose = "x" * 500
    step = len(root.attenuate(purpose=purpose, clock=clock).token) - len(root.token)
    credential = root
    while len(credential.token) + step <= 8192:
        credential = credential.attenuate(purpose=purpose, clock=clock)
    with pytest.raises(InvalidInputError, match="longer than 8192"):
        credential.attenuate(purpose=purpose, clock=clock)


# -------------------------------------------------- expiry, agents, revocation


def test_expiry_follows_the_injected_clock(creds: TaskCredentials, root: TaskCredential,
                                           clock: Clock) -> None:
    clock.now = root.expires_at - 0.001
    assert creds.verify(root.token) == root
    assert not root.expired(clock.now)
    assert creds.status(root) is None
    clock.now = root.expires_at
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(root.token)
    assert reason(excinfo) == "expired"
    assert root.expired(clock.now)
    assert creds.status(root) == "expired"
    assert creds.verify(root.token, now=T0) == root
    with pytest.raises(CredentialError, match="expired"):
        creds.verify(root.token, now=T0 + 10_000)


def test_a_child_expires_with_its_own_ttl(creds: TaskCredentials, root: TaskCredential,
                                          clock: Clock) -> None:
    child = root.attenuate(ttl=10, clock=clock)
    clock.now += 10
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(child.token)
    assert reason(excinfo) == "expired"
    assert creds.verify(root.token) == root


def test_a_token_replayed_by_another_agent_is_rejected(creds: TaskCredentials, root: TaskCredential,
                                                       grandchild: TaskCredential) -> None:
    assert creds.verify(root.token, agent="agent:support-bot") == root
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(root.token, agent="agent:other")
    assert reason(excinfo) == "wrong_agent"
    assert creds.verify(grandchild.token, agent="agent:researcher") == grandchild
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(grandchild.token, agent="agent:support-bot")
    assert reason(excinfo) == "wrong_agent"


def test_revoking_a_credential_revokes_its_descendants_only(
        creds: TaskCredentials, root: TaskCredential, clock: Clock) -> None:
    child = root.attenuate(scope=["read document:*"], clock=clock)
    grandchild = child.attenuate(clock=clock)
    sibling = root.attenuate(clock=clock)
    creds.revoke(child, reason="sub-agent misbehaved")
    for revoked in (child, grandchild):
        with pytest.raises(CredentialError, match="sub-agent misbehaved") as excinfo:
            creds.verify(revoked.token)
        assert reason(excinfo) == "revoked"
        assert creds.status(revoked) == "revoked"
    assert creds.verify(root.token) == root
    assert creds.verify(sibling.token) == sibling
    assert creds.status(root) is None
    (entry,) = creds.revocations.list("credential")
    assert (entry.id, entry.until) == (child.id, child.expires_at)


def test_revoking_by_id(creds: TaskCredentials, root: TaskCredential, clock: Clock) -> None:
    child = root.attenuate(clock=clock)
    creds.revoke(child.id)
    with pytest.raises(CredentialError, match="revoked"):
        creds.verify(child.token)
    assert creds.verify(root.token) == root
    with pytest.raises(InvalidInputError, match="verify it first"):
        creds.revoke(child.token)


def test_revoking_a_task_revokes_everything_derived_from_it(
        creds: TaskCredentials, root: TaskCredential, grandchild: TaskCredential) -> None:
    other = creds.issue(agent="agent:support-bot", on_behalf_of="user:alice", scope=["read *"], ttl=60,
                        purpose="another task")
    creds.revoke_task(root.task_id, reason="done")
    for credential in (root, grandchild):
        with pytest.raises(CredentialError) as excinfo:
            creds.verify(credential.token)
        assert reason(excinfo) == "revoked"
        assert creds.status(credential) == "revoked"
    assert creds.verify(other.token) == other
    with pytest.raises(InvalidInputError):
        creds.revoke_task("")


def test_revoking_an_agent_revokes_every_chain_it_is_on(
        creds: TaskCredentials, root: TaskCredential, grandchild: TaskCredential) -> None:
    creds.revocations.revoke("agent", "agent:researcher")
    with pytest.raises(CredentialError) as excinfo:
        creds.verify(grandchild.token)
    assert reason(excinfo) == "revoked"
    assert creds.verify(root.token) == root
    creds.revocations.revoke("agent", "agent:support-bot")
    assert creds.status(root) == "revoked"


def test_a_shared_revocation_store_is_seen_by_every_verifier(root: TaskCredential, clock: Clock) -> None:
    store = MemoryRevocationStore(clock=clock)
    one = TaskCredentials({"k1": KEY1}, revocations=store, clock=clock)
    two = TaskCredentials({"k1": KEY1}, revocations=store, clock=clock)
    assert two.verify(root.token) == root
    one.revoke(root)
    with pytest.raises(CredentialError, match="revoked"):
        two.verify(root.token)
