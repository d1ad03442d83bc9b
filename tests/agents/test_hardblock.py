from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentauthz.agents import hardblock
from agentauthz.agents.hardblock import Detection, HardBlock, classify, normalize, self_escalation

PRIV = HardBlock.PRIVILEGE_CHANGE
TOKEN = HardBlock.TOKEN_MINTING
CRED = HardBlock.CREDENTIAL_CHANGE
SELF = ("agent:support-bot", "support-bot")


def test_public_names() -> None:
    assert hardblock.__all__ == sorted(hardblock.__all__)
    assert set(hardblock.__all__) == {"Detection", "HardBlock", "classify", "normalize", "self_escalation"}
    assert [c.value for c in HardBlock] == ["privilege_change", "token_minting", "credential_change"]
    detection = Detection(PRIV, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        detection.category = TOKEN  # type: ignore[misc]


# ------------------------------------------------------------------ normalize

@pytest.mark.parametrize(("text", "words"), [
    ("grant_role", ("grant", "role")),
    ("Grant_R\u043ele", ("grant", "role")),                      # Cyrillic о
    ("\u0421reate\u0410pi\u041aey", ("create", "api", "key")),   # Cyrillic С, А, К
    ("\u0391\u03a1\u0399 key", ("api", "key")),                  # Greek capitals
    ("ＣｒｅａｔｅＡｐｉＫｅｙ", ("create", "api", "key")),           # fullwidth
    ("𝐠𝐫𝐚𝐧𝐭_𝐫𝐨𝐥𝐞", ("grant", "role")),                          # mathematical bold
    ("mint\u200bToken", ("mint", "token")),
    ("gr\u00adant\u2060_ro\ufeffle", ("grant", "role")),
    ("gránt_ro\u0302le", ("grant", "role")),
    ("getAPIKeys", ("get", "api", "keys")),
    ("HTTPRequest", ("http", "request")),
    ("listPATs", ("list", "pats")),
    ("oauth2_client", ("oauth", "2", "client")),
    ("s3", ("s", "3")),
    ("12345", ("12345",)),
    ("agent:support-bot", ("agent", "support", "bot")),
    ("Agent:Support_Bot", ("agent", "support", "bot")),
    ("a.b/c:d e-f", ("a", "b", "c", "d", "e", "f")),
    ("Resets the user's password.", ("resets", "the", "user", "s", "password")),
    ("", ()),
])
def test_normalize(text: str, words: tuple[str, ...]) -> None:
    assert normalize(text) == words


def test_normalize_leaves_other_input_wordless() -> None:
    assert normalize(None) == ()  # type: ignore[arg-type]
    assert normalize(b"grant") == ()  # type: ignore[arg-type]


# ------------------------------------------------------------------ tool names

POSITIVE_NAMES: list[tuple[str, HardBlock]] = [
    # privilege changes
    ("grant_role", PRIV),
    ("Grant_R\u043ele", PRIV),
    ("gr4nt_adm1n", PRIV),
    ("make_user_superuser", PRIV),
    ("addTeamMember", PRIV),
    ("attach_iam_policy", PRIV),
    ("set_user_role", PRIV),
    ("elevate_privileges", PRIV),
    ("assign_role", PRIV),
    ("AddUserToGroup", PRIV),
    ("invite_member", PRIV),
    ("promote_to_admin", PRIV),
    ("update_iam_policy", PRIV),
    ("PutRolePolicy", PRIV),
    ("put_bucket_policy", PRIV),
    ("edit_acl", PRIV),
    ("set_permissions", PRIV),
    ("create_role_binding", PRIV),
    ("transfer_ownership", PRIV),
    ("grant_access", PRIV),
    ("add_sudoer", PRIV),
    ("enroll_in_group", PRIV),
    ("revoke_role", PRIV),
    ("remove_member", PRIV),
    ("make_admin", PRIV),
    ("set_document_permissions", PRIV),
    ("grantrole", PRIV),
    ("GRANTROLE", PRIV),
    ("ｇｒａｎｔ＿ｒｏｌｅ", PRIV),
    ("𝐠𝐫𝐚𝐧𝐭_𝐫𝐨𝐥𝐞", PRIV),
    ("gránt_rôle", PRIV),
    # token minting
    ("ＣｒｅａｔｅＡｐｉＫｅｙ", TOKEN),
    ("mint\u200bToken", TOKEN),
    ("issue-p.a.t", TOKEN),
    ("sts_assume_role", TOKEN),
    ("AssumeRoleWithWebIdentity", TOKEN),
    ("create_oauth_client", TOKEN),
    ("create_api_key", TOKEN),
    ("CREATE-API-KEY", TOKEN),
    ("create api key", TOKEN),
    ("createapikey", TOKEN),
    ("CreateAccessKey", TOKEN),
    ("generate_access_token", TOKEN),
    ("create_personal_access_token", TOKEN),
    ("create_pat", TOKEN),
    ("issue_jwt", TOKEN),
    ("mint_jwt", TOKEN),
    ("sign_jwt", TOKEN),
    ("create_service_account_key", TOKEN),
    ("get_session_token", TOKEN),
    ("GetFederationToken", TOKEN),
    ("regenerate_client_secret", TOKEN),
    ("refresh_token", TOKEN),
    ("exchange_token", TOKEN),
    ("new_access_key", TOKEN),
    ("requestStsToken", TOKEN),
    # credential changes
    ("rotate-db-password", CRED),
    ("add_ssh_key", CRED),
    ("write authorized_keys", CRED),
    ("add_authorized_key", CRED),
    ("get_secret_value", CRED),
    ("reveal_password", CRED),
    ("reset_password", CRED),
    ("password_reset", CRED),
    ("resetpassword", CRED),
    ("change_user_password", CRED),
    ("change_admin_password", CRED),
    ("p@ssw0rd_reset", CRED),
    ("r3set_p4ssword", CRED),
    ("$ecret_dump", CRED),
    ("export_secrets", CRED),
    ("dump_credentials", CRED),
    ("decrypt_secret", CRED),
    ("upload_certificate", CRED),
    ("import_private_key", CRED),
    ("install_cert", CRED),
    ("read_vault_secret", CRED),
    ("rotate_api_key", CRED),
    ("show_api_key", CRED),
    ("create_kms_key", CRED),
    ("generate_ssh_key", CRED),
    ("add_gpg_key", CRED),
    ("reset_mfa", CRED),
    ("generate_key_pair", CRED),
    ("ssh-keygen", CRED),
]

HARMLESS_NAMES = [
    "search_kb", "read_ticket", "create_ticket", "get_weather", "list_members", "get_member_count",
    "count_tokens", "get_token_count", "tokenize_text", "export_csv", "send_email", "http_get",
    "summarize_document", "update_ticket", "add_comment", "add_label", "create_issue", "list_roles",
    "get_permissions_for_current_user", "describe_policy", "assign_ticket", "assign_ticket_to_group",
    "update_ticket_owner", "escalate_ticket", "escalate_ticket_to_admin", "create_admin_ticket",
    "update_admin_settings", "add_label_to_team", "set_search_scope", "create_calendar_event",
    "get_user_profile", "list_groups", "get_team", "create_team", "translate_text", "get_access_logs",
    "search_users", "reset_filters", "set_reminder", "update_settings", "add_to_cart", "post_message",
    "refresh_cache", "generate_report", "new_conversation", "sign_document", "issue_refund",
    "rotate_image", "get_public_key", "list_api_keys", "check_permission", "has_role", "validate_token",
    "verify_password", "get_max_tokens", "estimate_tokens", "truncate_to_token_limit",
    "get_token_usage", "describe_secret", "list_secrets", "s3_get_object", "list_s3_buckets",
    "oauth2_callback", "get_ec2_instances", "add_attachment", "create_access_request", "run_shell",
    "http_request", "refresh_token_cache", "add_to_group_chat", "set_owner_of_ticket",
    "update_privacy_policy", "set_scope_of_work", "create_secret_gist",
]


@pytest.mark.parametrize(("name", "category"), POSITIVE_NAMES)
def test_hard_blocked_names(name: str, category: HardBlock) -> None:
    detection = classify(name)
    assert detection is not None, name
    assert detection.category is category, detection.evidence
    assert detection.evidence.startswith("tool name ")


@pytest.mark.parametrize("name", HARMLESS_NAMES)
def test_harmless_names(name: str) -> None:
    assert classify(name) is None


def test_evidence_says_what_matched_and_where() -> None:
    assert classify("grant_role") == Detection(PRIV, "tool name 'grant_role': verb 'grant' + object 'role'")
    leet = classify("gr4nt_adm1n")
    assert leet is not None and "read as 'grant admin'" in leet.evidence
    glued = classify("createapikey")
    assert glued is not None and "object 'api key'" in glued.evidence


# ------------------------------------------------------------------ hypothesis: obfuscation never hides

POSITIVE_WORDS: list[tuple[tuple[str, ...], HardBlock]] = [
    (("grant", "role"), PRIV), (("elevate", "privileges"), PRIV), (("attach", "iam", "policy"), PRIV),
    (("add", "team", "member"), PRIV), (("set", "user", "role"), PRIV), (("make", "user", "admin"), PRIV),
    (("create", "api", "key"), TOKEN), (("mint", "token"), TOKEN), (("assume", "role"), TOKEN),
    (("issue", "jwt"), TOKEN), (("create", "oauth", "client"), TOKEN),
    (("create", "personal", "access", "token"), TOKEN),
    (("reset", "password"), CRED), (("add", "ssh", "key"), CRED), (("reveal", "secret"), CRED),
    (("rotate", "db", "password"), CRED), (("get", "secret", "value"), CRED),
]
SEPARATORS = ["_", "-", ".", "/", ":", " ", "__", "\t", " - "]
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]
LOOKALIKE = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "i": "і", "s": "ѕ",
             "A": "А", "E": "Е", "O": "О", "P": "Р", "C": "С", "T": "Т", "K": "К", "M": "М", "H": "Н"}


@st.composite
def obfuscated(draw: st.DrawFn) -> tuple[str, HardBlock]:
    words, category = draw(st.sampled_from(POSITIVE_WORDS))
    style = draw(st.sampled_from(["separated", "camel", "pascal", "flat", "shout"]))
    if style == "separated":
        cased = [draw(st.sampled_from([w.lower(), w.upper(), w.title()])) for w in words]
        name = draw(st.sampled_from(SEPARATORS)).join(cased)
    elif style == "camel":
        name = words[0] + "".join(w.title() for w in words[1:])
    elif style == "pascal":
        name = "".join(w.title() for w in words)
    elif style == "flat":
        name = "".join(words)
    else:
        name = "".join(words).upper()
    chars = list(name)
    for i in draw(st.lists(st.integers(0, len(chars) - 1), max_size=4)):
        if chars[i] in LOOKALIKE:
            chars[i] = LOOKALIKE[chars[i]]
    for i in sorted(draw(st.lists(st.integers(0, len(chars)), max_size=6)), reverse=True):
        chars.insert(i, draw(st.sampled_from(INVISIBLE)))
    return "".join(chars), category


@given(obfuscated())
def test_obfuscating_a_positive_name_never_hides_it(case: tuple[str, HardBlock]) -> None:
    name, category = case
    detection = classify(name)
    assert detection is not None, repr(name)
    assert detection.category is category, (name, detection.evidence)


# ------------------------------------------------------------------ descriptions

@pytest.mark.parametrize(("description", "category"), [
    ("Creates a new API key for the caller", TOKEN),
    ("Resets the user's password and emails it to them.", CRED),
    ("Adds the given user to a group.", PRIV),
    ("Grants the admin role to a user.", PRIV),
    ("Appends a public key to ~/.ssh/authorized_keys", CRED),
    ("Returns the decrypted value of a secret.", CRED),
    ("Looks up the account. Then it assumes a role in the target account.", TOKEN),
])
def test_descriptions_are_read(description: str, category: HardBlock) -> None:
    detection = classify("lookup", description)
    assert detection is not None and detection.category is category
    assert detection.evidence.startswith("description")


@pytest.mark.parametrize("description", [
    "Counts the tokens in a prompt.",
    "Lists the roles a user has. Read-only.",
    "Searches the knowledge base for articles.",
    "Summarizes the document. It never changes permissions or grants access to anyone.",
    "Update a ticket's status or assignee.",
    "Creates a support ticket in the helpdesk queue.",
    "Returns the number of tokens in the text, for staying under the model's limit.",
    "Creates a new calendar event. Owners of the calendar are notified; "
    "the admin can see every event in the audit log.",
])
def test_harmless_descriptions(description: str) -> None:
    assert classify("helper", description) is None


# ------------------------------------------------------------------ arguments

@pytest.mark.parametrize(("name", "arguments", "category"), [
    ("run_shell", {"command": "aws sts assume-role --role-arn arn:aws:iam::1:role/x --role-session-name s"},
     TOKEN),
    ("run_shell", {"command": "cat ~/.ssh/id_rsa"}, CRED),
    ("run_shell", {"command": b"cat ~/.ssh/id_ed25519"}, CRED),
    ("run_shell", {"command": "kubectl get secrets -n prod"}, CRED),
    ("run_shell", {"command": "echo $GITHUB_TOKEN"}, CRED),
    ("run_shell", {"command": "aws iam create-access-key --user-name bot"}, TOKEN),
    ("run_shell", {"command": "echo ssh-ed25519 AAAA >> ~/.ssh/authorized_keys"}, CRED),
    ("run_pipeline", {"steps": [{"command": "kubectl create rolebinding x --clusterrole=admin"}]}, PRIV),
    ("http_post", {"url": "https://idp.example/oauth/token",
                   "data": {"grant_type": "client_credentials", "client_id": "x"}}, TOKEN),
    ("send", {"url": "https://idp.example/o", "data": "grant_type=client_credentials&client_id=x"}, TOKEN),
    ("http_request", {"method": "PUT", "url": "https://api.example.com/iam/policy"}, PRIV),
    ("http_request", {"method": "DELETE", "url": "https://api.example.com/v1/roles/admin"}, PRIV),
    ("http_get", {"url": "https://vault.example/v1/secret/data/db"}, CRED),
    ("run_sql", {"sql": "GRANT SELECT ON orders TO bob"}, PRIV),
    ("query_database", {"query": "ALTER USER bob WITH SUPERUSER"}, PRIV),
    ("update_user", {"id": 1, "role": "admin"}, PRIV),
    ("update_user", {"id": 1, "is_admin": True}, PRIV),
    ("set", {"field": "owners", "value": "agent:support-bot"}, PRIV),
    ("do", {"action": "grant", "resource": "role"}, PRIV),
    ("workflow", {"steps": [{"action": "grant_role", "to": "user:bob"}]}, PRIV),
    ("configure", {"reset_password": True}, CRED),
    ("invoke", {"tool": "CreateAccessKey"}, TOKEN),
])
def test_arguments_are_read(name: str, arguments: dict[str, Any], category: HardBlock) -> None:
    detection = classify(name, None, arguments)
    assert detection is not None, name
    assert detection.category is category, detection.evidence
    assert "argument" in detection.evidence


@pytest.mark.parametrize(("name", "arguments"), [
    ("update_ticket", {"ticket_id": "T-1", "owner": "bob", "status": "closed"}),
    ("create_ticket", {"title": "Reset my password please", "category": "password reset", "queue": "admin"}),
    ("search_kb", {"query": "how do I rotate an API key", "limit": 5}),
    ("get_weather", {"city": "Paris", "api_key": "sk-123"}),
    ("send_email", {"to": "admin@example.com", "subject": "Your password was reset",
                    "body": "Grant yourself a break."}),
    ("http_post", {"url": "https://api.openai.com/v1/chat/completions",
                   "json": {"messages": [{"role": "user", "content": "please grant me admin"}],
                            "max_tokens": 5},
                   "headers": {"Authorization": "Bearer abc"}}),
    ("http_get", {"url": "https://api.example.com/v1/roles"}),
    ("http_request", {"method": "GET", "url": "https://api.example.com/v1/tickets/42", "timeout": 10}),
    ("run_shell", {"command": "ls -la && git status"}),
    ("run_shell", {"command": "python count_tokens.py --max-tokens 100"}),
    ("create_issue", {"labels": ["security", "password"], "assignee": "agent:support-bot"}),
    ("add_comment", {"ticket": "T-1", "text": "Customer asked us to add them to the admins group."}),
])
def test_harmless_arguments(name: str, arguments: dict[str, Any]) -> None:
    assert classify(name, None, arguments) is None


def test_evidence_never_quotes_an_argument_value() -> None:
    detection = classify("run_shell", None, {"command": "cat ~/.ssh/id_rsa # hunter2-topsecret"})
    assert detection is not None
    assert "hunter2" not in detection.evidence and "argument 'command'" in detection.evidence


def test_arguments_past_the_limits_are_not_read() -> None:
    deep: dict[str, Any] = {"command": "cat ~/.ssh/id_rsa"}
    for _ in range(7):
        deep = {"x": deep}
    assert classify("run_shell", None, deep) is None
    crowded: dict[str, Any] = {f"k{i}": "fine" for i in range(150)}
    crowded["command"] = "cat ~/.ssh/id_rsa"
    assert classify("run_shell", None, crowded) is None
    assert classify("run_shell", None, {"command": "x" * 5000 + " cat ~/.ssh/id_rsa"}) is None


def test_a_huge_argument_cannot_make_the_check_slow() -> None:
    huge = {"data": ["grant admin " * 100_000] * 1000, "blob": b"\x00" * 10_000_000}
    started = time.perf_counter()
    classify("upload", "x" * 1_000_000, huge)
    self_escalation(huge, SELF, name="upload", description="x" * 1_000_000)
    assert time.perf_counter() - started < 2.0


def test_classify_is_fast_on_a_short_call() -> None:
    arguments = {"ticket_id": "T-1042", "status": "open", "priority": "high"}
    runs = []
    for _ in range(200):
        started = time.perf_counter()
        classify("update_ticket", None, arguments)
        runs.append(time.perf_counter() - started)
    assert statistics.median(runs) < 0.002


# ------------------------------------------------------------------ odd input

class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("never stringify me")

    __repr__ = __str__


class _BrokenMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("broken")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("broken")

    def __len__(self) -> int:
        return 1


def _odd_arguments() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    return [
        None, 42, "grant admin", ["grant", "admin"], {}, {"a": loop}, {"a": cycle}, loop,
        {b"command": b"grant admin"}, {1: 2, None: 3, (1, 2): "x", frozenset(): "y", 1.5: "z"},
        {"x": float("nan")}, {"x": _Unprintable()}, {_Unprintable(): "grant admin"},
        {"x": "\ud800 lone surrogate"}, {"x": "a" * 1_000_000}, {"x": {"grant", "role"}},
        {"x": (i for i in range(10))}, {"x": bytearray(b"\xff\xfe")}, {"x": memoryview(b"abc")},
        _BrokenMapping(), {"x": _BrokenMapping()}, MappingProxyType({"members": ["agent:support-bot"]}),
    ]


@pytest.mark.parametrize("arguments", _odd_arguments())
@pytest.mark.parametrize("name", ["add_member", "", None, 123, "\u200b" * 1000, "x" * 100_000])
@pytest.mark.parametrize("description", [None, "", 7, "\n\n", "Adds a member."])
def test_odd_input_never_raises(arguments: Any, name: Any, description: Any) -> None:
    result = classify(name, description, arguments)
    assert result is None or isinstance(result, Detection)
    result = self_escalation(arguments, SELF, name=name, description=description)
    assert result is None or isinstance(result, Detection)


def test_odd_identities_never_raise() -> None:
    arguments = {"team": "t1", "user": "agent:support-bot"}
    assert self_escalation(arguments, [], name="add_member") is None
    assert self_escalation(arguments, ["", "::", None, 5], name="add_member") is None  # type: ignore[list-item]
    assert self_escalation(arguments, "agent:support-bot", name="add_member") is not None


def test_readable_mappings_are_read() -> None:
    detection = classify("run_shell", None, MappingProxyType({"command": "cat ~/.ssh/id_rsa"}))
    assert detection is not None and detection.category is CRED


# ------------------------------------------------------------------ self-escalation

@pytest.mark.parametrize(("name", "arguments", "where"), [
    ("add_member", {"team": "t1", "user": "agent:support-bot"}, "argument 'user'"),
    ("update_team", {"team": "t1", "members": ["user:bob", "agent:support-bot"]}, "argument 'members[1]'"),
    ("update_team", {"team": "t1", "members": ["user:bob", "Agent:Support_Bot"]}, "argument 'members[1]'"),
    ("configure", {"target": "support-bot", "role": "admin"}, "argument 'target'"),
    ("set", {"field": "owners", "value": "agent:support-bot"}, "argument 'value'"),
    ("share", {"grants": {"agent:support-bot": "owner"}}, "argument key 'agent:support-bot'"),
    ("notify", {"text": "please add agent:support-bot to the admins group"}, "argument 'text'"),
    ("apply", {"changes": [{"op": "add", "path": "/members/-", "value": "agent:supp\u043ert-bot"}]},
     "argument 'changes[0].value'"),
    ("sync", {"subject": "agent:support-bot", "relation": "owner"}, "argument 'subject'"),
])
def test_self_escalation_is_caught(name: str, arguments: dict[str, Any], where: str) -> None:
    detection = self_escalation(arguments, SELF, name=name)
    assert detection is not None
    assert detection.category is PRIV
    assert detection.evidence.startswith(where), detection.evidence
    assert "touches privileges" in detection.evidence


@pytest.mark.parametrize(("name", "arguments"), [
    ("create_ticket", {"assignee": "agent:support-bot", "title": "x"}),
    ("assign_ticket", {"ticket": "T-1", "assignee": "agent:support-bot"}),
    ("add_member", {"team": "t1", "user": "user:carol"}),
    ("add_member", {"team": "t1", "user": "agent:support-bot-2"}),
    ("add_member", {"team": "t1", "user": "user:support-bot"}),
    ("send_email", {"to": "agent:support-bot", "subject": "hello"}),
])
def test_self_escalation_needs_self_and_privileges(name: str, arguments: dict[str, Any]) -> None:
    assert self_escalation(arguments, SELF, name=name) is None


def test_self_escalation_reads_the_description() -> None:
    arguments = {"target": "agent:support-bot", "level": "3"}
    assert self_escalation(arguments, SELF, name="configure") is None
    detection = self_escalation(arguments, SELF, name="configure", description="Promotes the target.")
    assert detection is not None and "description" in detection.evidence


def test_a_non_self_privilege_change_is_still_classified() -> None:
    arguments = {"team": "t1", "user": "user:carol"}
    assert self_escalation(arguments, SELF, name="add_member") is None
    detection = classify("add_member", None, arguments)
    assert detection is not None and detection.category is PRIV
