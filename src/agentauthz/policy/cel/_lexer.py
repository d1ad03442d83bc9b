"""Tokenizer for the CEL subset: a single left-to-right scan, no regular expressions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agentauthz.policy.cel._errors import CelSyntaxError

__all__ = ["RESERVED", "Token", "tokenize"]

# Token kinds.
INT = "int"
DOUBLE = "double"
STRING = "string"
BYTES = "bytes"
IDENT = "ident"
OP = "op"
EOF = "eof"

#: Words that can never be identifiers (``true``/``false``/``null``/``in`` are
#: handled as literals and an operator before this set is consulted).
RESERVED = frozenset({
    "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let",
    "loop", "package", "namespace", "return", "var", "void", "while",
})

_TWO_CHAR_OPS = frozenset({"==", "!=", "<=", ">=", "&&", "||"})
_ONE_CHAR_OPS = frozenset("<>!+-*/%()[]{}.,:?")
_WHITESPACE = frozenset(" \t\n\r\f")
_DIGITS = frozenset("0123456789")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_OCT_DIGITS = frozenset("01234567")
_IDENT_START = frozenset("_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_IDENT_CHARS = _IDENT_START | _DIGITS
_SIMPLE_ESCAPES = {
    "\\": "\\", "?": "?", '"': '"', "'": "'", "`": "`",
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
}


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its value (the operator text for ``op``), its span."""

    kind: str
    value: Any
    offset: int
    end: int


def tokenize(source: str) -> list[Token]:
    """Split ``source`` into tokens, ending with an ``eof`` token.

    Raises :class:`CelSyntaxError` for characters outside the language,
    malformed numbers, unterminated strings and invalid escapes.
    """
    tokens: list[Token] = []
    n = len(source)
    i = 0
    while i < n:
        c = source[i]
        if c in _WHITESPACE:
            i += 1
            continue
        if c == "/" and source.startswith("//", i):
            newline = source.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        if c in _DIGITS or (c == "." and i + 1 < n and source[i + 1] in _DIGITS):
            token = _number(source, i)
        elif c in "'\"":
            token = _string(source, i, i)
        elif c in _IDENT_START:
            token = _ident_or_prefixed_string(source, i)
        else:
            two = source[i:i + 2]
            if two in _TWO_CHAR_OPS:
                token = Token(OP, two, i, i + 2)
            elif c in _ONE_CHAR_OPS:
                token = Token(OP, c, i, i + 1)
            elif c == "=":
                raise CelSyntaxError("unexpected '='; use '==' to compare", source, i)
            elif c in "&|":
                raise CelSyntaxError(f"unexpected {c!r}; use '{c}{c}'", source, i)
            else:
                raise CelSyntaxError(f"unexpected character {c!r}", source, i)
        tokens.append(token)
        i = token.end
    tokens.append(Token(EOF, None, n, n))
    return tokens


def _ident_or_prefixed_string(source: str, start: int) -> Token:
    n = len(source)
    # String prefixes: an optional b/B, then an optional r/R, then a quote.
    i = start
    if source[i] in "bB":
        i += 1
    if i < n and source[i] in "rR":
        i += 1
    if i > start and i < n and source[i] in "'\"":
        return _string(source, start, i)
    i = start + 1
    while i < n and source[i] in _IDENT_CHARS:
        i += 1
    return Token(IDENT, source[start:i], start, i)


def _number(source: str, start: int) -> Token:
    n = len(source)
    i = start
    if source.startswith(("0x", "0X"), i):
        if source[i + 1] == "X":
            raise CelSyntaxError("hexadecimal literals are written 0x…", source, start)
        i += 2
        while i < n and source[i] in _HEX_DIGITS:
            i += 1
        if i == start + 2:
            raise CelSyntaxError("malformed hexadecimal literal", source, start)
        _check_number_end(source, start, i, is_float=False)
        return Token(INT, int(source[start + 2:i], 16), start, i)
    is_float = False
    while i < n and source[i] in _DIGITS:
        i += 1
    if i + 1 < n and source[i] == "." and source[i + 1] in _DIGITS:
        is_float = True
        i += 1
        while i < n and source[i] in _DIGITS:
            i += 1
    if i < n and source[i] in "eE":
        j = i + 1
        if j < n and source[j] in "+-":
            j += 1
        if j >= n or source[j] not in _DIGITS:
            raise CelSyntaxError("malformed exponent in number", source, start)
        while j < n and source[j] in _DIGITS:
            j += 1
        is_float = True
        i = j
    _check_number_end(source, start, i, is_float=is_float)
    text = source[start:i]
    if is_float:
        value = float(text)
        if math.isinf(value):
            raise CelSyntaxError("double literal out of range", source, start)
        return Token(DOUBLE, value, start, i)
    return Token(INT, int(text), start, i)


def _check_number_end(source: str, start: int, end: int, *, is_float: bool) -> None:
    if end < len(source):
        c = source[end]
        if c in "uU" and not is_float:
            raise CelSyntaxError("unsigned integers (the 'u' suffix) are not supported",
                                 source, start)
        if c in _IDENT_CHARS or c == ".":
            if c == "." and (end + 1 >= len(source) or source[end + 1] not in _IDENT_CHARS):
                raise CelSyntaxError("malformed number: write 1.0, not 1.", source, start)
            if c != ".":
                raise CelSyntaxError("malformed number", source, start)


def _string(source: str, start: int, quote_at: int) -> Token:
    prefix = source[start:quote_at].lower()
    is_bytes = "b" in prefix
    raw = "r" in prefix
    n = len(source)
    quote = source[quote_at]
    triple = source.startswith(quote * 3, quote_at)
    delimiter = quote * 3 if triple else quote
    i = quote_at + len(delimiter)
    chars: list[str] = []
    octets = bytearray()

    def emit_text(text: str) -> None:
        if is_bytes:
            octets.extend(text.encode("utf-8"))
        else:
            chars.append(text)

    while True:
        if i >= n:
            raise CelSyntaxError("unterminated string literal", source, start)
        c = source[i]
        if source.startswith(delimiter, i):
            i += len(delimiter)
            break
        if not triple and c in "\r\n":
            raise CelSyntaxError("newline in string literal (use a triple-quoted string)",
                                 source, start)
        if c != "\\" or raw:
            emit_text(c)
            i += 1
            continue
        # An escape sequence.
        if i + 1 >= n:
            raise CelSyntaxError("unterminated string literal", source, start)
        e = source[i + 1]
        if e in _SIMPLE_ESCAPES:
            emit_text(_SIMPLE_ESCAPES[e])
            i += 2
        elif e in "xX":
            digits = source[i + 2:i + 4]
            if len(digits) != 2 or any(d not in _HEX_DIGITS for d in digits):
                raise CelSyntaxError("\\x must be followed by two hex digits", source, i)
            value = int(digits, 16)
            if is_bytes:
                octets.append(value)
            else:
                chars.append(chr(value))
            i += 4
        elif e in "0123":
            digits = source[i + 1:i + 4]
            if len(digits) != 3 or any(d not in _OCT_DIGITS for d in digits):
                raise CelSyntaxError("an octal escape has three digits, \\000 to \\377",
                                     source, i)
            value = int(digits, 8)
            if is_bytes:
                octets.append(value)
            else:
                chars.append(chr(value))
            i += 4
        elif e in "uU":
            if is_bytes:
                raise CelSyntaxError(f"\\{e} escapes are not allowed in bytes literals",
                                     source, i)
            width = 4 if e == "u" else 8
            digits = source[i + 2:i + 2 + width]
            if len(digits) != width or any(d not in _HEX_DIGITS for d in digits):
                raise CelSyntaxError(f"\\{e} must be followed by {width} hex digits", source, i)
            code = int(digits, 16)
            i += 2 + width
            if 0xD800 <= code <= 0xDBFF and e == "u" and source.startswith("\\u", i):
                low_digits = source[i + 2:i + 6]
                if len(low_digits) == 4 and all(d in _HEX_DIGITS for d in low_digits):
                    low = int(low_digits, 16)
                    if 0xDC00 <= low <= 0xDFFF:
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise CelSyntaxError("escape is not a valid Unicode code point", source,
                                     i - 2 - width)
            chars.append(chr(code))
        else:
            raise CelSyntaxError(f"invalid escape sequence \\{e}", source, i)
    if is_bytes:
        return Token(BYTES, bytes(octets), start, i)
    return Token(STRING, "".join(chars), start, i)
