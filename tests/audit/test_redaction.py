from __future__ import annotations

import pytest

from agentauthz.audit import DEFAULT_KEYS, MASK, Redactor
from agentauthz.errors import ConfigurationError

JWT = ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAwMH0."
       "c2lnbmF0dXJlLWJ5dGVzLWhlcmU")
AWS = "AKIAIOSFODNN7EXAMPLE"
OPENAI = "sk-proj-abcdefghijklmnopqrstuvwxyz012345"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


@pytest.mark.parametrize("key", ["password", "db_password", "Passwd", "client_secret", "token",
                                 "refresh_token", "api_key", "apiKey", "API-KEY", "Authorization",
                                 "cookie", "Set-Cookie", "private_key", "credentials",
                                 "aws_access_key_id", "session_id"])
def test_secret_keys_are_masked_whole(key: str) -> None:
    out = Redactor().context({key: {"anything": "at all"}, "tenant": "acme"})
    assert out == {key: MASK, "tenant": "acme"}


@pytest.mark.parametrize("key", ["tenant", "author", "passenger", "classification", "task"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert Redactor().context({key: "acme"}) == {key: "acme"}


@pytest.mark.parametrize(("secret", "text"), [
    (JWT, "id token {}"), (AWS, "key {} in use"), (OPENAI, "use {} please"),
    ("Bearer abc.DEF-123_456789", "header {}"), (PEM, "here: {} done"),
    ("ghp_" + "a" * 36, "gh {}"), ("xoxb-1234567890-abcdef", "slack {}"),
])
def test_secret_values_are_masked_inside_text(secret: str, text: str) -> None:
    out = Redactor().context({"note": text.format(secret)})
    assert out is not None
    assert secret not in out["note"]
    assert out["note"] == text.format(MASK)


def test_nested_structures_are_walked() -> None:
    context = {"request": {"headers": {"Authorization": "Basic dXNlcjpwYXNz", "accept": "json"},
                           "items": [{"token": "t1"}, {"note": f"see {JWT}"}, 3, None, True],
                           "tags": {"b", "a"}},
               "tenant": "acme", "n": 1.5}
    out = Redactor().context(context)
    assert out == {"request": {"headers": {"Authorization": MASK, "accept": "json"},
                               "items": [{"token": MASK}, {"note": f"see {MASK}"}, 3, None, True],
                               "tags": ["a", "b"]},
                   "tenant": "acme", "n": 1.5}


def test_output_is_json_safe_and_bounded() -> None:
    class Thing:
        def __str__(self) -> str:
            return f"thing {AWS}"

    out = Redactor(max_string=10).context({"blob": b"\x00\x01", "obj": Thing(), "long": "x" * 50,
                                           1: "int key", "deep": [[[[[[[[[["x"]]]]]]]]]]})
    assert out is not None
    assert out["blob"] == "<2 bytes>"
    assert out["obj"] == "thing " + MASK or AWS not in out["obj"]
    assert out["long"] == "x" * 10 + "…"
    assert out["1"] == "int key"
    assert "…" in str(out["deep"])


def test_tool_arguments_are_masked_unless_kept() -> None:
    args = {"ticket_id": "1", "body": f"my key is {AWS}", "api_key": "k"}
    assert Redactor().arguments("update_ticket", args) == {
        "ticket_id": MASK, "body": MASK, "api_key": MASK}
    kept = Redactor(keep_arguments=["ticket_id", "body", "api_key"])
    assert kept.arguments("update_ticket", args) == {
        "ticket_id": "1", "body": f"my key is {MASK}", "api_key": MASK}


def test_keep_list_per_tool() -> None:
    redactor = Redactor(keep_arguments={"read_ticket": ["ticket_id"], "*": ["tenant"]})
    args = {"ticket_id": "1", "tenant": "acme", "q": "x"}
    assert redactor.arguments("read_ticket", args) == {"ticket_id": "1", "tenant": "acme",
                                                       "q": MASK}
    assert redactor.arguments("other", args) == {"ticket_id": MASK, "tenant": "acme", "q": MASK}


def test_patterns_are_configurable() -> None:
    redactor = Redactor(keys=[*DEFAULT_KEYS, "ssn"], values=[r"\b\d{3}-\d{2}-\d{4}\b"],
                        mask="***")
    out = redactor.context({"ssn": "1", "note": "id 123-45-6789", "other": JWT})
    assert out == {"ssn": "***", "note": "id ***", "other": JWT}  # JWT pattern replaced
    assert Redactor(keys=(), values=()).context({"password": JWT}) == {"password": JWT}


def test_a_bad_pattern_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="scoped flags"):
        Redactor(values=["(?i)abc"])
    with pytest.raises(ConfigurationError, match="keys"):
        Redactor(keys=["("])
