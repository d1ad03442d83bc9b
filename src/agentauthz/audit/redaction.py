"""Redaction: what of a decision's context and a tool's arguments may reach an audit record.

Two kinds of rule, both configurable:

- **keys** — a context entry whose key matches one of the key patterns
  (``password``, ``token``, ``api_key``, ``authorization``, ``cookie``…) has
  its whole value replaced by the mask, at any depth;
- **values** — any string, at any depth, has the parts that look like a
  secret (a JWT, an AWS access key id, an ``sk-…`` API key, a bearer token, a
  PEM block…) replaced by the mask, whatever its key.

Tool arguments are stricter: every argument is masked unless its name is in
the keep-list, and the kept ones still go through both rules. An argument an
agent passes is the model's output, and the model may have been told to put
anything there.

Redaction runs when a record is rendered (by a sink, usually off the decision
path), and its output is JSON-safe: unknown objects become their ``str()``,
depth, length and item counts are bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from agentauthz.errors import ConfigurationError

__all__ = ["DEFAULT_KEYS", "DEFAULT_VALUES", "MASK", "Redactor"]

MASK: Final = "[REDACTED]"

DEFAULT_KEYS: Final[tuple[str, ...]] = (
    r"passw(or)?d", r"^pass$", r"^pwd$", r"passphrase",
    r"secret",
    r"token",
    r"api[-_ ]?key",
    r"authori[sz]ation", r"^auth$",
    r"cookie",
    r"private[-_ ]?key",
    r"credential",
    r"access[-_ ]?key",
    r"session[-_ ]?id",
    r"signature",
)
"""Key patterns (case-insensitive ``re.search``) whose values are masked whole."""

DEFAULT_VALUES: Final[tuple[str, ...]] = (
    # a JWT (header.payload.signature, the header always starts with '{"' → eyJ)
    r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
    # AWS access key ids
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",
    # "sk-…" API keys (OpenAI, Anthropic, Stripe sk_live_… too)
    r"\bsk[-_](?:live[-_]|test[-_]|proj[-_]|ant[-_])?[A-Za-z0-9_-]{16,}",
    # GitHub and Slack tokens
    r"\bgh[pousr]_[A-Za-z0-9]{30,}", r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    # an HTTP bearer or basic credential
    r"\b(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}",
    # PEM blocks: private keys, certificates
    r"-----BEGIN [A-Z0-9 ]+-----[\s\S]*?(?:-----END [A-Z0-9 ]+-----|$)",
)
"""Value patterns: the matching part of any string is masked."""

_MAX_DEPTH: Final = 8
_MAX_ITEMS: Final = 200
_MAX_STRING: Final = 4096
_CACHED_STRING: Final = 256
_CACHE_SIZE: Final = 4096


def _compile(patterns: tuple[str, ...], what: str, flags: int) -> re.Pattern[str] | None:
    if not patterns:
        return None
    for pattern in patterns:
        try:
            re.compile(f"(?:{pattern})", flags)
        except (re.error, TypeError) as exc:
            raise ConfigurationError(f"Redactor {what}: pattern {pattern!r} is not a regular "
                                     f"expression that can be combined with others ({exc}); "
                                     "use scoped flags such as (?i:...)") from None
    return re.compile("|".join(f"(?:{p})" for p in patterns), flags)


class Redactor:
    """Masks secrets in contexts and tool arguments (see the module docstring).

    ``keys`` and ``values`` replace the default patterns; extend them with
    ``Redactor(keys=[*DEFAULT_KEYS, "ssn"])``. ``keep_arguments`` names the
    tool arguments kept (still value-redacted): a list for every tool, or a
    mapping ``{tool: [argument, ...]}``, with ``"*"`` for every tool.
    """

    def __init__(self, *, keys: Iterable[str] = DEFAULT_KEYS,
                 values: Iterable[str] = DEFAULT_VALUES,
                 keep_arguments: Iterable[str] | Mapping[str, Iterable[str]] = (),
                 mask: str = MASK, max_string: int = _MAX_STRING) -> None:
        key_patterns = tuple(keys)
        value_patterns = tuple(values)
        self.mask = mask
        self.max_string = max_string
        self._key = _compile(key_patterns, "keys", re.IGNORECASE)
        self._value = _compile(value_patterns, "values", 0)
        if isinstance(keep_arguments, Mapping):
            self._keep: dict[str, frozenset[str]] = {
                tool: frozenset(names) for tool, names in keep_arguments.items()}
        else:
            self._keep = {"*": frozenset(keep_arguments)}
        self._key_cache: dict[str, bool] = {}
        self._text_cache: dict[str, str] = {}

    # ------------------------------------------------------------ the rules
    def secret_key(self, key: object) -> bool:
        """Whether values under this key are masked whole."""
        if self._key is None:
            return False
        text = key if isinstance(key, str) else str(key)
        hit = self._key_cache.get(text)
        if hit is None:
            hit = self._key.search(text) is not None
            if len(self._key_cache) < 4096:
                self._key_cache[text] = hit
        return hit

    def text(self, value: str) -> str:
        """A string with every secret-looking part masked (and bounded in length)."""
        short = len(value) <= _CACHED_STRING
        if short:
            done = self._text_cache.get(value)
            if done is not None:
                return done
        out = value if len(value) <= self.max_string else value[:self.max_string] + "…"
        if self._value is not None:
            out = self._value.sub(self.mask, out)
        if short:  # reason messages and context values repeat: redact each once
            cache = self._text_cache
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[value] = out
        return out

    def kept(self, tool: str) -> frozenset[str]:
        """The argument names kept for ``tool``."""
        keep = self._keep
        return keep.get(tool, frozenset()) | keep.get("*", frozenset())

    # ---------------------------------------------------------- structures
    def context(self, context: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A JSON-safe copy of a context, secrets masked."""
        if context is None:
            return None
        if not isinstance(context, Mapping):
            return {"(context)": self.mask}
        return self._mapping(context, 0)

    def arguments(self, tool: str, arguments: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """A tool's arguments: names kept, values masked unless kept (and then redacted)."""
        if arguments is None:
            return None
        keep = self.kept(tool)
        out: dict[str, Any] = {}
        for i, (key, value) in enumerate(arguments.items()):
            if i >= _MAX_ITEMS:
                out["…"] = f"{len(arguments) - _MAX_ITEMS} more"
                break
            name = key if isinstance(key, str) else str(key)
            out[name] = self.value(value, key) if name in keep else self.mask
        return out

    def value(self, value: Any, key: object = None, depth: int = 0) -> Any:
        """One value, redacted: masked whole under a secret key, else walked."""
        if key is not None and self.secret_key(key):
            return self.mask
        if value is None or value is True or value is False:
            return value
        cls = value.__class__
        if cls is str:
            return self.text(value)
        if cls is int or cls is float:
            return value
        if depth >= _MAX_DEPTH:
            return "…"
        if isinstance(value, Mapping):
            return self._mapping(value, depth + 1)
        if isinstance(value, list | tuple | set | frozenset):
            items = list(value)[:_MAX_ITEMS] if isinstance(value, list | tuple) \
                else sorted(str(v) for v in value)[:_MAX_ITEMS]
            out = [self.value(v, None, depth + 1) for v in items]
            if len(value) > _MAX_ITEMS:
                out.append(f"… {len(value) - _MAX_ITEMS} more")
            return out
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<{len(value)} bytes>"
        if isinstance(value, str | int | float):  # subclasses (enums, bools handled above)
            return self.value(value.__str__() if isinstance(value, str) else
                              (float(value) if isinstance(value, float) else int(value)),
                              None, depth)
        key_attr = getattr(value, "key", None)  # entities and delegations log as their key
        return self.text(key_attr if isinstance(key_attr, str) else str(value))

    def _mapping(self, mapping: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, (key, value) in enumerate(mapping.items()):
            if i >= _MAX_ITEMS:
                out["…"] = f"{len(mapping) - _MAX_ITEMS} more"
                break
            out[key if isinstance(key, str) else str(key)] = self.value(value, key, depth)
        return out

    def __repr__(self) -> str:
        return f"<Redactor keep_arguments={ {k: sorted(v) for k, v in self._keep.items()} }>"
