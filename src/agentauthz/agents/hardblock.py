"""Hard blocks: tool calls an agent may never make, whatever the policy permits.

Three kinds of call are blocked for agents outright (:class:`HardBlock`):

- ``privilege_change``: granting or revoking roles and permissions, editing
  policies or ACLs, adding members to teams, groups and organisations,
  making someone admin or owner;
- ``token_minting``: creating API keys, access keys, OAuth clients and client
  secrets, personal access tokens, JWTs, service-account keys, cloud STS /
  assume-role / session tokens;
- ``credential_change``: rotating, resetting, reading, revealing or exporting
  secrets and passwords, adding SSH keys or ``authorized_keys`` entries,
  uploading certificates and private keys.

The guard trusts a tool's declaration when the tool was declared. For tools
discovered at run time it asks :func:`classify`, which judges a call from the
tool's name, description and arguments, and :func:`self_escalation`, which
catches an agent naming itself (or its owner) in a call that touches
privileges, even through a harmless-looking tool.

How text is read
----------------
:func:`normalize` turns an identifier or a sentence into words: NFKC, Cyrillic
and Greek look-alikes folded to Latin, format characters (zero-width spaces,
joiners, soft hyphens) and combining marks dropped, casefolded, split on
camelCase, separators and letter/digit boundaries. The classifier reads every
text a second time with light leetspeak undone (``gr4nt_adm1n``), splits
glued words made only of known words (``createapikey``), and matches
multi-word terms across separators and glued (``api key``, ``ApiKey``,
``apikey``; ``p.a.t``).

A call is flagged when a verb and an object of one category meet:

- in the name, anywhere (``password_reset`` as well as ``reset_password``);
- in a sentence of the description (or any text of more than eight words),
  the object at most five words after the verb or two before it; in a
  description, a negation shortly before the verb ("never changes
  permissions") cancels the pair;
- in an argument key; in an argument value, when the value is something the
  tool acts on: every value of an execution tool (shell, HTTP, SQL...), and
  the values of keys such as ``command``, ``url``, ``method``, ``action``,
  ``field``; across the call, when a verb from the name (or from ``method``,
  ``action``...) meets an object from a key (privilege objects only:
  ``update_user(role=...)``) or from such a value
  (``http_request(method="PUT", url=".../iam/policy")``).

A few terms need no verb: ``assume role`` and STS session tokens,
``authorized_keys``, private key files such as ``id_rsa``, an OAuth
``grant_type`` with a grant, SQL ``GRANT ... ON ... TO``.

Known limits
------------
This is a heuristic: it catches vocabulary, not intent. It misses a tool whose
name, description and arguments say nothing of what it does (``do_it``,
``sync``), synonyms outside its vocabularies, languages other than English,
look-alikes from scripts it does not fold, and payloads it does not read:
free-text fields of ordinary tools (``title``, ``body``, ``message``,
``query``...), HTTP headers, values past the limits (depth 6, 200 strings,
1,000 nodes, 2,000 characters each; descriptions past 8,000 characters),
values that are not text or bytes, and arguments held in containers that fail
when read. :func:`self_escalation` reads more widely (free text included),
because it first needs the agent's own identity among the arguments.
It can flag harmless calls whose words collide with its vocabularies
("design tokens", a URL whose path names passwords, ``update_user`` with a
``role`` argument even when the role is unchanged). "Token" next to words of
LLM usage (count, limit, prompt...) is not taken for a credential, and a
group, team, owner, scope or access that belongs to a ticket, document or
other resource noun ("assign_ticket_to_group") is not taken for privileges.
Declared tools should declare their category; this is the fallback.

Evidence names where a match was found and the words that matched; it never
quotes an argument's value, which may itself be a secret.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from itertools import islice
from typing import Any, Final, NamedTuple

__all__ = ["Detection", "HardBlock", "classify", "normalize", "self_escalation"]


class HardBlock(StrEnum):
    """The kinds of tool call an agent may never make."""

    PRIVILEGE_CHANGE = "privilege_change"
    TOKEN_MINTING = "token_minting"
    CREDENTIAL_CHANGE = "credential_change"


@dataclass(frozen=True, slots=True)
class Detection:
    """Why a call is hard-blocked: its category and where the evidence was found."""

    category: HardBlock
    evidence: str


_MAX_DEPTH: Final = 6
_MAX_STRINGS: Final = 200
_MAX_NODES: Final = 1000
_MAX_CHARS: Final = 2000
_MAX_DESCRIPTION: Final = 8000
_SHORT: Final = 8
_AFTER: Final = 5
_BEFORE: Final = 2

_PRIV: Final = HardBlock.PRIVILEGE_CHANGE
_TOKEN: Final = HardBlock.TOKEN_MINTING
_CRED: Final = HardBlock.CREDENTIAL_CHANGE


# ---------------------------------------------------------------- reading text

_LOOKALIKES: Final = {
    # Cyrillic
    "а": "a", "в": "b", "г": "r", "е": "e", "ё": "e", "з": "3", "к": "k", "м": "m", "н": "h",
    "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ь": "b", "і": "i",
    "ї": "i", "ј": "j", "ѕ": "s", "һ": "h", "ԁ": "d", "ԛ": "q", "ѡ": "w", "ԝ": "w", "ӏ": "l",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "У": "Y", "Х": "X", "І": "I", "Ї": "I", "Ј": "J", "Ѕ": "S", "Һ": "H",
    "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I", "Ү": "Y", "Ѵ": "V", "ѵ": "v",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "μ": "u", "ν": "v",
    "ο": "o", "ρ": "p", "σ": "o", "ς": "c", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ϲ": "c",
    "ϳ": "j", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
    # Armenian and Latin extras
    "օ": "o", "ս": "u", "ց": "g", "ɑ": "a", "ɡ": "g", "ı": "i", "ȷ": "j", "ʏ": "y",
}
_INVISIBLE: Final = "\u115f\u1160\u3164\uffa0\u034f"
_FOLD_TABLE: Final = str.maketrans({**_LOOKALIKES, **dict.fromkeys(_INVISIBLE)})
_WORD_RE: Final = re.compile(
    r"[A-Z]{2,}s(?![a-z])|[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+|[^\W\d_A-Za-z]+"
)
_LEET_CHUNK_RE: Final = re.compile(r"[A-Za-z0-9@$]+")
_LEET_HINT_RE: Final = re.compile(r"[A-Za-z][0-9@$]|[0-9@$][A-Za-z]")
_LEET: Final = {"0": "o", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
_LEET_I: Final = str.maketrans({**_LEET, "1": "i"})
_LEET_L: Final = str.maketrans({**_LEET, "1": "l"})


def _fold_char(ch: str) -> str:
    category = unicodedata.category(ch)
    if category == "Cf" or category.startswith("M"):
        return ""
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    base = base.translate(_FOLD_TABLE)
    return base if base and base.isascii() else ch


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    if text.isascii():
        return text
    text = text.translate(_FOLD_TABLE)
    if text.isascii():
        return text
    return "".join(ch if ch.isascii() else _fold_char(ch) for ch in text)


def _split(folded: str) -> tuple[str, ...]:
    return tuple(w.casefold() for w in _WORD_RE.findall(folded))


def normalize(text: str) -> tuple[str, ...]:
    """Words of an identifier or sentence.

    NFKC; Cyrillic, Greek and other common look-alikes folded to ASCII; format
    characters (zero-width and the like) and combining marks removed;
    casefolded; split on camelCase, on every character that is not a letter or
    digit, and between letters and digits. ``normalize("ＣｒｅａｔｅＡｐｉＫｅｙ")``
    is ``("create", "api", "key")``. Anything but a string has no words.
    """
    if not isinstance(text, str):
        return ()
    return _split(_fold(text))


def _unleet(chunk: re.Match[str], table: dict[int, str]) -> str:
    text = chunk.group()
    if text.isalpha() or text.isdigit() or not any(c.isalpha() for c in text):
        return text
    plain = text.translate(table)
    letters = [c for c in text if c.isalpha()]
    return plain.upper() if all(c.isupper() for c in letters) else plain


def _leet_readings(folded: str) -> list[str]:
    if _LEET_HINT_RE.search(folded) is None:
        return []
    readings = [_LEET_CHUNK_RE.sub(lambda m: _unleet(m, _LEET_I), folded)]
    if "1" in folded:
        readings.append(_LEET_CHUNK_RE.sub(lambda m: _unleet(m, _LEET_L), folded))
    return [r for r in readings if r != folded]


# ---------------------------------------------------------------- vocabularies

_VERBS: dict[str, str] = {}
_OBJECTS: dict[str, str] = {}
_MULTI: dict[tuple[str, ...], str] = {}
_STRONG: dict[str, tuple[HardBlock, str]] = {}
_PAIRS: dict[tuple[str, str], tuple[HardBlock, bool]] = {}

_IRREGULAR: Final = {
    "give": ("gave", "given"), "make": ("made",), "write": ("wrote", "written"), "bind": ("bound",),
    "get": ("got", "gotten"), "show": ("shown",), "reset": ("resetting",), "forgot": ("forget",),
}
_NOMINAL: Final = {
    "assign": ("assignment", "assignments"), "create": ("creation",), "generate": ("generation",),
    "rotate": ("rotation",), "escalate": ("escalation",), "elevate": ("elevation",),
    "promote": ("promotion",), "issue": ("issuance",), "revoke": ("revocation",),
    "delete": ("deletion",), "modify": ("modification",), "install": ("installation",),
    "delegate": ("delegation",), "enroll": ("enrollment", "enrolment"), "invite": ("invitation",),
    "decrypt": ("decryption",), "retrieve": ("retrieval",), "regenerate": ("regeneration",),
    "renew": ("renewal",), "exfiltrate": ("exfiltration",), "expose": ("exposure",),
    "provision": ("provisioning",), "configure": ("configuration",),
}
_UNINFLECTED: Final = frozenset({"new", "gen", "cat", "echo", "printenv", "sudo"})


def _inflect(verb: str) -> set[str]:
    forms = {verb, *_IRREGULAR.get(verb, ()), *_NOMINAL.get(verb, ())}
    if verb in _UNINFLECTED:
        return forms
    if verb.endswith("e"):
        forms |= {verb + "s", verb + "d", verb[:-1] + "ing"}
    elif verb.endswith("y") and verb[-2] not in "aeiou":
        forms |= {verb[:-1] + "ies", verb[:-1] + "ied", verb + "ing"}
    elif verb.endswith(("s", "sh", "ch", "x", "z")):
        forms |= {verb + "es", verb + "ed", verb + "ing"}
    else:
        forms |= {verb + "s", verb + "ed", verb + "ing"}
        if len(verb) <= 4 and verb[-1] in "bdgmnpt" and verb[-2] in "aeiou" and verb[-3] not in "aeiou":
            forms |= {verb + verb[-1] + "ed", verb + verb[-1] + "ing"}
    return forms


def _plural(word: str) -> str:
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "o", "u"):
        return word[:-1] + "ies"
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return word + "es"
    return word + "s"


def _phrase_surfaces(phrase: str, *, plural: bool) -> list[str]:
    words = normalize(phrase)
    variants = [words]
    if plural and words[-1].isalpha() and not words[-1].endswith("s"):
        variants.append((*words[:-1], _plural(words[-1])))
    surfaces = []
    for variant in variants:
        surface = "".join(variant)
        if len(variant) > 1:
            _MULTI[variant] = surface
        surfaces.append(surface)
    return surfaces


def _add_verbs(verbs: Iterable[str]) -> frozenset[str]:
    for verb in verbs:
        for form in _inflect(verb):
            _VERBS.setdefault(form, verb)
    return frozenset(verbs)


def _add_objects(groups: Mapping[str, str]) -> frozenset[str]:
    """``groups`` maps a canonical name to its phrases, separated by ``|``."""
    for canon, phrases in groups.items():
        for phrase in phrases.split("|"):
            for surface in _phrase_surfaces(phrase, plural=True):
                _OBJECTS.setdefault(surface, canon)
    return frozenset(groups)


def _add_strong(category: HardBlock, phrases: Iterable[str]) -> None:
    for phrase in phrases:
        canon = phrase.split("|")[0]
        for variant in phrase.split("|"):
            for surface in _phrase_surfaces(variant, plural=False):
                _STRONG[surface] = (category, canon)


def _rule(category: HardBlock, verbs: frozenset[str], objects: frozenset[str], *,
          weak: bool = False) -> None:
    for verb in verbs:
        for obj in objects:
            _PAIRS.setdefault((verb, obj), (category, weak))


_PRIV_VERBS: Final = _add_verbs((
    "grant", "assign", "add", "give", "attach", "bind", "promote", "elevate", "escalate", "invite",
    "enroll", "set", "update", "modify", "edit", "change", "put", "patch", "write", "create", "make",
    "apply", "alter", "upsert", "replace", "transfer", "delegate", "allow", "share", "configure",
    "manage", "upgrade", "override", "revoke", "remove", "delete", "detach", "unbind", "demote",
    "unassign", "drop",
))
for _form in ("enrol", "enrols", "enrolled", "enrolling"):
    _VERBS.setdefault(_form, "enroll")
_MEMBERSHIP_VERBS: Final = _add_verbs((
    "add", "invite", "enroll", "join", "attach", "bind", "assign", "remove", "kick", "onboard",
))
_ACCESS_VERBS: Final = _add_verbs(("grant", "give", "revoke", "elevate", "escalate", "delegate"))
_TOKEN_VERBS: Final = _add_verbs((
    "create", "mint", "issue", "generate", "gen", "new", "make", "request", "obtain", "exchange",
    "sign", "provision", "regenerate", "refresh", "renew", "add", "post", "grant", "acquire", "vend",
    "forge", "recreate", "reissue",
))
_ASSUME_VERBS: Final = _add_verbs(("assume",))
_CRED_READ: Final = _add_verbs((
    "read", "get", "reveal", "show", "print", "dump", "export", "fetch", "retrieve", "decrypt", "copy",
    "view", "display", "cat", "echo", "printenv", "download", "extract", "leak", "expose", "access",
    "unmask", "peek", "exfiltrate", "steal", "lookup",
))
_CRED_WRITE: Final = _add_verbs((
    "rotate", "reset", "change", "update", "set", "add", "upload", "import", "install", "create",
    "write", "put", "store", "save", "replace", "modify", "edit", "alter", "delete", "remove",
    "revoke", "generate", "regenerate", "renew", "recover", "unseal", "unlock", "register", "append",
    "attach", "provision", "issue", "enroll", "rekey", "roll", "expire", "disable", "forgot",
))
_CRED_STRONG_READ: Final = frozenset((
    "dump", "export", "reveal", "decrypt", "leak", "exfiltrate", "steal", "unmask", "extract",
))

_PRIV_CORE: Final = _add_objects({
    "role": "role", "role binding": "role binding|rolebinding|cluster role|cluster role binding",
    "permission": "permission|perm", "privilege": "privilege", "policy": "policy", "acl": "acl",
    "rbac": "rbac", "iam": "iam", "admin": "admin|administrator|sysadmin|admin rights",
    "superuser": "superuser|super user", "sudo": "sudo|sudoer", "entitlement": "entitlement",
    "membership": "membership",
})
_PRIV_WEAK: Final = _add_objects({
    "owner": "owner|co owner", "ownership": "ownership", "member": "member",
    "collaborator": "collaborator", "scope": "scope", "access": "access",
})
_PRIV_GROUPS: Final = _add_objects({
    "group": "group|user group|usergroup", "team": "team", "organization": "org|organization|organisation",
})
_TOKEN_OBJECTS: Final = _add_objects({
    "token": "token", "api key": "api key|apikey", "access key": "access key|access key id",
    "personal access token": "pat|personal access token|personal token",
    "jwt": "jwt|json web token", "oauth client": "oauth client|oauth app|oauth application|oauth 2 client",
    "client secret": "client secret", "client credentials": "client credential",
    "session token": "session token|security token|federation token", "access token": "access token",
    "id token": "id token", "auth token": "auth token|authentication token", "bearer token": "bearer token",
    "oauth token": "oauth token", "sts": "sts", "service account key": "service account key",
    "deploy token": "deploy token", "temporary credentials": "temporary credential|temp credential",
})
_SECRET_OBJECTS: Final = _add_objects({
    "secret": "secret", "password": "password|passwd|passphrase|pass phrase|app password",
    "credential": "credential|cred|creds",
    "private key": "private key|privkey|private ssh key|ssh private key",
    "secret key": "secret key|secret access key", "signing key": "signing key",
    "encryption key": "encryption key|master key", "keychain": "keychain", "keystore": "keystore",
    "keyring": "keyring", "recovery code": "recovery code|backup code|recovery key",
    "mfa": "mfa|totp|otp", "netrc": "netrc", "pgpass": "pgpass", "seed phrase": "seed phrase",
})
_WRITE_ONLY_OBJECTS: Final = _add_objects({
    "certificate": "certificate|cert", "public key": "public key|pubkey",
    "ssh key": "ssh key|ssh public key", "gpg key": "gpg key|pgp key", "deploy key": "deploy key",
    "key pair": "key pair|keypair", "host key": "host key", "kms key": "kms key", "vault": "vault",
    "authorized keys": "authorized key",
})
_add_strong(_TOKEN, ("assume role", "get session token", "get federation token"))
_add_strong(_CRED, (
    "authorized_keys|authorized key", "id_rsa|id rsa", "id_dsa|id dsa", "id_ecdsa|id ecdsa",
    "id_ed25519|id ed25519", "/etc/shadow|etc shadow", "ssh-keygen|ssh keygen|keygen", "chpasswd", "htpasswd",
))
_add_strong(_PRIV, ("visudo", "usermod", "gpasswd", "setfacl"))

_rule(_PRIV, _PRIV_VERBS, _PRIV_CORE)
_rule(_PRIV, _ACCESS_VERBS, frozenset({"access"}))
_rule(_PRIV, _PRIV_VERBS, _PRIV_WEAK, weak=True)
_rule(_PRIV, _MEMBERSHIP_VERBS, _PRIV_GROUPS, weak=True)
_rule(_TOKEN, _TOKEN_VERBS, _TOKEN_OBJECTS)
_rule(_TOKEN, _ASSUME_VERBS, frozenset({"role", "iam"}))
_rule(_CRED, _CRED_READ | _CRED_WRITE, _SECRET_OBJECTS | _TOKEN_OBJECTS)
_rule(_CRED, _CRED_WRITE | _CRED_STRONG_READ, _WRITE_ONLY_OBJECTS)

_GRANT_TYPE: Final = frozenset(_phrase_surfaces("grant type", plural=False))
_GRANT_VALUES: Final = frozenset(normalize(p) for p in (
    "client_credentials", "password", "refresh_token", "authorization_code", "jwt-bearer",
    "saml2-bearer", "device_code", "token-exchange",
))
_SQL_GRANT: Final = {"grant": ("to",), "revoke": ("from",)}

_BLOCKERS: Final = frozenset(s for w in (
    "ticket", "issue", "comment", "label", "message", "document", "doc", "file", "page", "task",
    "item", "record", "case", "repo", "repository", "project", "post", "note", "event", "order",
    "invoice", "report", "channel", "thread", "conversation", "lead", "deal", "search", "query",
    "result", "article", "folder", "dashboard", "chart", "row", "table", "column", "cell", "card",
    "board", "calendar", "meeting", "email", "incident", "alert", "request", "description", "name",
    "title", "status", "hint", "count", "history", "log", "guide", "doc", "help", "setting",
    "panel", "manager", "expiry", "expiration", "length", "strength", "usage", "filter", "view",
    "template", "link", "notification", "preference", "list", "summary", "detail", "cache", "gist",
    "chat", "work",
) for s in (w, _plural(w))) | frozenset(s for phrase in (
    "privacy policy", "refund policy", "return policy", "cookie policy", "cancellation policy",
    "shipping policy", "retention policy", "scope of work", "terms of service",
) for s in _phrase_surfaces(phrase, plural=True))
_PREPOSITIONS: Final = frozenset((
    "to", "for", "with", "from", "by", "into", "in", "on", "onto", "of", "as", "via", "at",
))
_ARTICLES: Final = frozenset(("a", "an", "the", "this", "that", "its", "their"))
_OF: Final = frozenset(("of", "for", "on", "in"))
_NEGATIONS: Final = frozenset((
    "not", "never", "no", "without", "cannot", "nor", "doesn", "don", "isn", "won",
))
_LLM: Final = frozenset((
    "count", "counts", "counter", "counting", "counted", "usage", "limit", "limits", "budget", "max",
    "maximum", "min", "minimum", "estimate", "estimated", "length", "len", "llm", "llms", "prompt",
    "prompts", "completion", "completions", "input", "output", "num", "number", "total", "remaining",
    "tokenize", "tokenizer", "tokenizers", "tokenized", "embedding", "embeddings", "context", "cost",
    "costs", "price", "pricing", "gpt", "model", "models", "chat", "tiktoken", "bpe", "vocab",
    "vocabulary", "per",
))
_FILLERS: Final = frozenset((
    "user", "users", "my", "me", "self", "to", "for", "the", "of", "on", "in", "with", "from", "by",
    "into", "as", "all", "db", "database", "account", "accounts", "service", "current", "web",
    "identity", "value", "values", "id", "app", "bot", "agent", "key", "keys", "pair", "file", "aws",
    "gcp", "azure", "github", "cloud", "api", "client", "personal", "session", "private", "public",
    "ssh", "temp", "temporary", "default", "root", "data", "info", "kb", "level", "full", "auth",
    "oauth", "run", "shell", "http", "exec", "command", "role", "roles",
))
_EXEC_WORDS: Final = frozenset((
    "run", "exec", "execute", "shell", "bash", "sh", "zsh", "cmd", "command", "terminal", "console",
    "powershell", "pwsh", "http", "https", "curl", "wget", "request", "requests", "call", "invoke",
    "api", "rest", "graphql", "gql", "rpc", "sql", "db", "database", "script", "eval", "python",
    "code", "cli", "aws", "gcloud", "az", "kubectl", "gh", "post", "put", "patch", "fetch", "proxy",
))
_VERB_KEYS: Final = frozenset(("action", "actions", "operation", "op", "verb", "method"))
_ACTION_KEYS: Final = _VERB_KEYS | frozenset((
    "command", "commands", "cmd", "cmdline", "script", "code", "sql", "statement", "stmt", "url",
    "uri", "href", "endpoint", "path", "route", "function", "fn", "tool", "api", "request", "args",
    "argv", "arguments", "params", "payload", "shell", "cli", "exec", "expression", "expr",
    "program", "operations",
))
_SELECTOR_KEYS: Final = frozenset((
    "field", "fields", "attribute", "attributes", "attr", "property", "properties", "prop",
    "resource", "resources", "setting", "settings", "key", "object", "entity",
))
_PROSE_KEYS: Final = frozenset((
    "title", "subject", "message", "messages", "msg", "text", "content", "contents",
    "comment", "comments", "note", "notes", "summary", "description", "desc", "details", "reason",
    "prompt", "question", "answer", "reply", "response", "caption", "html", "markdown",
    "snippet", "excerpt", "instructions", "feedback", "bio", "about",
))
_PAYLOAD_KEYS: Final = frozenset(("body", "query", "q", "input"))
_SKIP_KEYS: Final = frozenset(("header", "headers", "authorization", "cookie", "cookies", "auth"))
_KEY_OBJECTS: Final = _PRIV_CORE | {"member"}
_TOUCH_OBJECTS: Final = _PRIV_CORE | {"owner", "ownership", "member", "collaborator", "group", "scope"}
_TOUCH_VERBS: Final = frozenset(("grant", "promote", "elevate", "invite", "enroll", "delegate"))

_KNOWN: Final = frozenset((*_VERBS, *_OBJECTS, *_STRONG, *_GRANT_TYPE))
_PIECES: Final = frozenset((*(s for s in _KNOWN if s.isalpha()), *_BLOCKERS, *_LLM, *_FILLERS, *_EXEC_WORDS))
_MAX_PIECE: Final = max(map(len, _PIECES))
_MULTI_FIRST: Final = frozenset(words[0] for words in _MULTI)
_GRANT_FIRST: Final = frozenset(words[0] for words in _GRANT_VALUES)
_SINGLE_LETTER_GLUE: Final = frozenset(s for s in _KNOWN if 2 <= len(s) <= 4)


# ---------------------------------------------------------------- scanning

class _Hit(NamedTuple):
    canon: str
    start: int
    end: int


class _Scan(NamedTuple):
    """One reading of one text: what vocabulary it holds and where."""

    words: tuple[str, ...]
    reading: str
    verbs: tuple[_Hit, ...]
    objects: tuple[_Hit, ...]
    strong: tuple[tuple[HardBlock, str], ...]
    blockers: tuple[int, ...]
    preps: tuple[int, ...]
    negations: tuple[int, ...]
    grant_type: bool
    grant_value: bool
    sql_grant: bool
    touch: str | None


class _Match(NamedTuple):
    category: HardBlock
    what: str


@lru_cache(maxsize=8192)
def _segment(word: str) -> tuple[str, ...] | None:
    """The fewest known pieces a glued word is made of, if it is made only of them."""
    n = len(word)
    best: list[tuple[str, ...] | None] = [None] * (n + 1)
    best[0] = ()
    for i in range(n):
        head = best[i]
        if head is None:
            continue
        for j in range(i + 2, min(n, i + _MAX_PIECE) + 1):
            if word[i:j] in _PIECES:
                found = best[j]
                if found is None or len(head) + 1 < len(found):
                    best[j] = (*head, word[i:j])
    pieces = best[n]
    return pieces if pieces is not None and len(pieces) > 1 else None


def _expand(words: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for word in words:
        pieces = None
        if 6 <= len(word) <= 40 and word not in _KNOWN and word.isascii() and word.isalpha():
            pieces = _segment(word)
        if pieces is None:
            out.append(word)
        else:
            out.extend(pieces)
    return tuple(out)


def _terms(words: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """Words joined into known multi-word terms (longest first) and single-letter acronyms."""
    terms: list[tuple[str, int, int]] = []
    n = len(words)
    i = 0
    while i < n:
        if words[i] not in _MULTI_FIRST and len(words[i]) != 1:
            terms.append((words[i], i, i + 1))
            i += 1
            continue
        for size in (4, 3, 2):
            if i + size > n:
                continue
            chunk = words[i:i + size]
            surface = _MULTI.get(chunk)
            if surface is None and all(len(w) == 1 for w in chunk):
                glued = "".join(chunk)
                surface = glued if glued in _SINGLE_LETTER_GLUE else None
            if surface is not None:
                terms.append((surface, i, i + size))
                i += size
                break
        else:
            terms.append((words[i], i, i + 1))
            i += 1
    return terms


def _has_grant_value(words: tuple[str, ...]) -> bool:
    for i, word in enumerate(words):
        if word not in _GRANT_FIRST:
            continue
        for size in (1, 2, 3):
            if words[i:i + size] in _GRANT_VALUES:
                return True
    return False


def _has_sql_grant(words: tuple[str, ...]) -> bool:
    for i, word in enumerate(words):
        target = _SQL_GRANT.get(word)
        if target is None:
            continue
        try:
            on = words.index("on", i + 1, i + 8)
        except ValueError:
            continue
        if any(w in target for w in words[on + 1:on + 12]):
            return True
    return False


def _is_head(terms: list[tuple[str, int, int]], index: int, weak: bool) -> bool:
    """Whether the object at ``index`` is what the phrase is about, not a modifier.

    "admin" in "admin_password" or "admin_ticket" is not; nor is a weak object
    of a resource ("owner_of_ticket").
    """
    following = [t[0] for t in terms[index + 1:index + 4] if t[0] not in _ARTICLES]
    if following and (following[0] in _OBJECTS or following[0] in _BLOCKERS):
        return False
    return not (weak and len(following) > 1 and following[0] in _OF and following[1] in _BLOCKERS)


def _scan(words: tuple[str, ...], reading: str) -> _Scan:
    terms = _terms(words)
    verbs: list[_Hit] = []
    objects: list[_Hit] = []
    strong: list[tuple[HardBlock, str]] = []
    blockers: list[int] = []
    preps: list[int] = []
    negations: list[int] = []
    llm = grant_type = False
    touch: str | None = None
    for index, (surface, start, end) in enumerate(terms):
        verb = _VERBS.get(surface)
        if verb is not None:
            verbs.append(_Hit(verb, start, end))
            if touch is None and verb in _TOUCH_VERBS:
                touch = verb
        obj = _OBJECTS.get(surface)
        if obj is not None:
            if _is_head(terms, index, obj in _PRIV_WEAK):
                objects.append(_Hit(obj, start, end))
            if touch is None and obj in _TOUCH_OBJECTS:
                touch = obj
        hit = _STRONG.get(surface)
        if hit is not None:
            strong.append(hit)
        if surface in _BLOCKERS:
            blockers.append(start)
        elif surface in _PREPOSITIONS:
            preps.append(start)
        elif surface in _NEGATIONS:
            negations.append(start)
        llm = llm or surface in _LLM
        grant_type = grant_type or surface in _GRANT_TYPE
    if llm:
        objects = [o for o in objects if o.canon != "token"]
    return _Scan(
        words=words, reading=reading, verbs=tuple(verbs), objects=tuple(objects),
        strong=tuple(strong), blockers=tuple(blockers), preps=tuple(preps),
        negations=tuple(negations), grant_type=grant_type,
        grant_value=grant_type and _has_grant_value(words),
        sql_grant=_has_sql_grant(words), touch=touch,
    )


_RELEVANT: Final = frozenset((*_KNOWN, *_MULTI_FIRST, *_GRANT_FIRST, *_SQL_GRANT))


def _analyse(text: str) -> tuple[_Scan, ...]:
    """Every reading of ``text``: as written, then with leetspeak undone; glued words split."""
    folded = _fold(text)
    raw = _split(folded)
    scans: list[_Scan] = []
    seen: set[tuple[str, ...]] = set()
    for words in (raw, *(_split(alt) for alt in _leet_readings(folded))):
        expanded = _expand(words)
        if expanded in seen:
            continue
        seen.add(expanded)
        reading = "" if expanded == raw else " ".join(expanded)
        if _RELEVANT.isdisjoint(expanded) and not any(len(w) == 1 for w in expanded):
            scans.append(_Scan(expanded, reading, (), (), (), (), (), (), False, False, False, None))
        else:
            scans.append(_scan(expanded, reading))
    return tuple(scans)


@lru_cache(maxsize=4096)
def _identifier(text: str) -> tuple[_Scan, ...]:
    return _analyse(text)


_CLAUSE_RE: Final = re.compile(r"(?<=[.!?;])\s+|\n+")


@lru_cache(maxsize=512)
def _description(text: str) -> tuple[tuple[_Scan, ...], ...]:
    return tuple(_analyse(clause) for clause in _CLAUSE_RE.split(text) if clause.strip())


def _best_pair(scan: _Scan, prose: bool) -> tuple[HardBlock, _Hit, _Hit] | None:
    windowed = prose or len(scan.words) > _SHORT
    best: tuple[int, HardBlock, _Hit, _Hit] | None = None
    for verb in scan.verbs:
        for obj in scan.objects:
            if obj.start < verb.end and verb.start < obj.end:
                continue
            pair = _PAIRS.get((verb.canon, obj.canon))
            if pair is None:
                continue
            category, weak = pair
            if obj.start >= verb.end:
                lo, hi, distance = verb.end, obj.start, obj.start - verb.end
                if windowed and distance > _AFTER:
                    continue
            else:
                lo, hi, distance = obj.end, verb.start, verb.start - obj.end
                if windowed and distance > _BEFORE:
                    continue
                distance += 1
            blocked = [b for b in scan.blockers if lo <= b < hi]
            if blocked and (weak or any(blocked[0] < p < hi for p in scan.preps)):
                continue
            if prose and any(verb.start - 6 <= n < verb.start for n in scan.negations):
                continue
            if best is None or distance < best[0]:
                best = (distance, category, verb, obj)
    return None if best is None else best[1:]


def _match(scan: _Scan, *, full: bool = True, prose: bool = False) -> _Match | None:
    """The first hard block one reading shows: a verb with its object, then a verbless term.

    With ``full`` false only the verbless terms count. In ``prose`` (a
    description) the object must be near the verb, and a negation just before
    the verb ("never changes permissions") cancels the pair.
    """
    if full:
        pair = _best_pair(scan, prose)
        if pair is not None:
            category, verb, obj = pair
            return _Match(category, f"verb {verb.canon!r} + object {obj.canon!r}")
    if scan.strong:
        category, term = scan.strong[0]
        return _Match(category, f"{term!r}")
    if scan.grant_value:
        return _Match(_TOKEN, "OAuth 'grant_type' with a grant")
    if full and scan.sql_grant:
        return _Match(_PRIV, "SQL GRANT/REVOKE ... ON ... TO/FROM")
    return None


def _quote(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _read_as(scan: _Scan) -> str:
    return f" (read as {scan.reading!r})" if scan.reading else ""


# ---------------------------------------------------------------- arguments

class _Item(NamedTuple):
    path: str
    key: str
    text: str
    is_key: bool


def _as_text(value: object) -> str | None:
    if isinstance(value, str):
        return value[:_MAX_CHARS]
    if isinstance(value, bytes | bytearray):
        return bytes(value[:_MAX_CHARS]).decode("utf-8", "replace")
    return None


def _path_part(key: object) -> str:
    if isinstance(key, str):
        return key[:64]
    if isinstance(key, int | float | bool) or key is None:
        return str(key)
    return "?"


def _walk(arguments: Mapping[Any, Any]) -> list[_Item]:
    """Keys and text values of ``arguments``, breadth-limited and depth-limited.

    Values that are neither text, bytes, mappings nor lists/tuples/sets are
    skipped; so is a mapping that fails while read (a foreign ``Mapping``).
    """
    items: list[_Item] = []
    nodes = 0

    def visit(value: object, path: str, key: str, depth: int) -> None:
        nonlocal nodes
        if len(items) >= _MAX_STRINGS or nodes >= _MAX_NODES:
            return
        nodes += 1
        text = _as_text(value)
        if text is not None:
            items.append(_Item(path, key, text, False))
            return
        if depth >= _MAX_DEPTH:
            return
        if isinstance(value, Mapping):
            try:
                pairs = list(islice(value.items(), _MAX_NODES))
            except Exception:  # a foreign mapping that cannot be read: skipped, see docstring
                return
            for k, v in pairs:
                if len(items) >= _MAX_STRINGS:
                    return
                child = f"{path}.{_path_part(k)}" if path else _path_part(k)
                ktext = _as_text(k)
                if ktext is not None:
                    items.append(_Item(child, ktext, ktext, True))
                visit(v, child, ktext if ktext is not None else key, depth + 1)
        elif isinstance(value, list | tuple | set | frozenset):
            for i, v in enumerate(islice(value, _MAX_NODES)):
                visit(v, f"{path}[{i}]", key, depth + 1)

    visit(arguments, "", "", 0)
    return items


def _item_where(item: _Item) -> str:
    return f"argument key {_quote(item.text)}" if item.is_key else f"argument {_quote(item.path)}"


@lru_cache(maxsize=1024)
def _key_kind(key: str) -> str:
    words = _split(_fold(key))
    last = words[-1] if words else ""
    glued = "".join(words)
    for kind, names in (("skip", _SKIP_KEYS), ("verb", _VERB_KEYS), ("action", _ACTION_KEYS),
                        ("selector", _SELECTOR_KEYS), ("payload", _PAYLOAD_KEYS), ("prose", _PROSE_KEYS)):
        if last in names or glued in names:
            return kind
    return "plain"


def _classify_arguments(name_scans: tuple[_Scan, ...], name_where: str, exec_tool: bool,
                        items: list[_Item]) -> Detection | None:
    # the where of a cross-scope term is its item (None for the name), spelled out only if it decides
    cross_verbs: list[tuple[str, _Item | None]] = [(v.canon, None) for s in name_scans for v in s.verbs]
    cross_objects: list[tuple[str, _Item | None]] = [(o.canon, None) for s in name_scans for o in s.objects]
    grant_type: _Item | None = None
    grant_value: _Item | None = None
    for item in items:
        if item.is_key:
            for scan in _identifier(item.text):
                found = _match(scan)
                if found is not None:
                    return Detection(found.category, f"{_item_where(item)}{_read_as(scan)}: {found.what}")
                cross_objects.extend((o.canon, item) for o in scan.objects if o.canon in _KEY_OBJECTS)
                if scan.grant_type and grant_type is None:
                    grant_type = item
            continue
        kind = _key_kind(item.key)
        if kind in ("skip", "prose") or (kind == "payload" and not exec_tool):
            continue
        full = exec_tool or kind in ("verb", "action", "selector")
        for scan in _analyse(item.text):
            found = _match(scan, full=full)
            if found is not None:
                return Detection(found.category, f"{_item_where(item)}: {found.what}")
            if grant_value is None and _has_grant_value(scan.words):
                grant_value = item
            if full:
                cross_objects.extend((o.canon, item) for o in scan.objects)
            if kind == "verb":
                cross_verbs.extend((v.canon, item) for v in scan.verbs)
    if grant_type is not None and grant_value is not None:
        return Detection(_TOKEN, f"{_item_where(grant_type)} with a grant in {_item_where(grant_value)}: "
                                 "OAuth token request")
    for verb, verb_item in cross_verbs:
        for obj, obj_item in cross_objects:
            pair = _PAIRS.get((verb, obj))
            if pair is not None and (verb_item is not None or obj_item is not None):
                verb_where = name_where if verb_item is None else _item_where(verb_item)
                obj_where = name_where if obj_item is None else _item_where(obj_item)
                return Detection(pair[0], f"{verb_where} verb {verb!r} + {obj_where} object {obj!r}")
    return None


# ---------------------------------------------------------------- the checks

def classify(name: str, description: str | None = None,
             arguments: Mapping[str, Any] | None = None) -> Detection | None:
    """The hard-block category a tool call falls in, judged from its name, description and arguments.

    ``None`` when none applies. The name is judged first, then the
    description, then the arguments; the first evidence found decides. Never
    raises on odd input (see the module docstring for what is not read).
    """
    name = name[:_MAX_CHARS] if isinstance(name, str) else ""
    name_scans = _identifier(name)
    name_where = f"tool name {_quote(name)}"
    for scan in name_scans:
        found = _match(scan)
        if found is not None:
            return Detection(found.category, f"{name_where}{_read_as(scan)}: {found.what}")
    if isinstance(description, str) and description:
        for clause in _description(description[:_MAX_DESCRIPTION]):
            for scan in clause:
                found = _match(scan, prose=True)
                if found is not None:
                    return Detection(found.category, f"description: {found.what}")
    if not isinstance(arguments, Mapping) or not arguments:
        return None
    exec_tool = any(w in _EXEC_WORDS for scan in name_scans for w in scan.words)
    return _classify_arguments(name_scans, name_where, exec_tool, _walk(arguments))


_TYPED_ID_RE: Final = re.compile(r"[^\W\d][\w-]*:[\w.@+-]*\w")


def _names(item: _Item, wanted: Mapping[tuple[str, ...], str]) -> tuple[_Item, str] | None:
    """The identity ``item`` names: as a whole, or as a whole ``type:id`` token in it."""
    folded = _fold(item.text)
    identity = wanted.get(_split(folded))
    if identity is not None:
        return item, identity
    for token in _TYPED_ID_RE.findall(folded):
        identity = wanted.get(_split(token))
        if identity is not None:
            return item, identity
    return None


def _touches_privileges(name: str, description: str | None, items: list[_Item]) -> str | None:
    for scan in _identifier(name[:_MAX_CHARS]):
        if scan.touch is not None:
            return f"tool name {_quote(name)}: {scan.touch!r}"
    if isinstance(description, str) and description:
        for clause in _description(description[:_MAX_DESCRIPTION]):
            for scan in clause:
                if scan.touch is not None:
                    return f"description: {scan.touch!r}"
    for item in items:
        scans = _identifier(item.text) if item.is_key else _analyse(item.text)
        for scan in scans:
            if scan.touch is not None:
                return f"{_item_where(item)}: {scan.touch!r}"
    return None


def self_escalation(arguments: Mapping[str, Any] | None, identities: Iterable[str],
                    *, name: str = "", description: str | None = None) -> Detection | None:
    """A ``privilege_change`` detection when the arguments name one of ``identities`` in a call
    that touches privileges, even when the tool name looks harmless.

    ``identities`` are the agent itself (``"agent:support-bot"``, ``"support-bot"``)
    and whoever it must not raise (its owner); a single string is one
    identity. They are compared after :func:`normalize`, and match a whole
    argument value or key, a whole item of a list, or a whole ``type:id`` token
    inside a string. The call touches privileges when privilege vocabulary
    (role, admin, member, permission, group, owner, scope, policy, acl...;
    grant, promote, elevate, invite...) appears in the name, the description,
    an argument key or any argument value, free text included. A bare
    "assign" does not count: assigning a ticket to oneself is not an
    escalation, assigning oneself a role is (through "role").
    """
    if not isinstance(arguments, Mapping) or not arguments:
        return None
    if isinstance(identities, str):
        identities = (identities,)
    wanted: dict[tuple[str, ...], str] = {}
    for identity in identities:
        words = normalize(identity)
        if words:
            wanted.setdefault(words, identity)
    if not wanted:
        return None
    items = _walk(arguments)
    named = next((found for item in items if (found := _names(item, wanted)) is not None), None)
    if named is None:
        return None
    touch = _touches_privileges(name if isinstance(name, str) else "", description, items)
    if touch is None:
        return None
    return Detection(_PRIV, f"{_item_where(named[0])} names {named[1]!r} in a call that touches "
                            f"privileges ({touch})")
