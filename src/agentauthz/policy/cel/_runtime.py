"""CEL values as plain Python values, and the operations on them.

The compiled closures inline the common cases (``str == str``, ``int < int``,
``dict[str]``...) and fall back to the functions here, which implement the
full semantics: CEL's type kinds (``bool`` is not an ``int``), heterogeneous
equality, 64-bit int overflow, truncating division, timestamps and durations.
Every function either returns a CEL value or raises :class:`CelEvalError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentauthz.policy.cel._errors import CelEvalError
from agentauthz.policy.cel._parser import INT64_MAX, INT64_MIN

UTC: Final = UTC
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND: Final = timedelta(seconds=1)
_ONE_MICROSECOND: Final = timedelta(microseconds=1)
#: Durations are bounded like cel-go's: a signed 64-bit count of nanoseconds
#: (about +-292 years), here truncated to whole microseconds.
DURATION_MAX: Final = timedelta(microseconds=INT64_MAX // 1000)
DURATION_MIN: Final = -DURATION_MAX
_TWO_63_FLOAT: Final = 9.223372036854775808e18  # 2**63, exactly representable

# Kinds: the CEL type of a Python value, as a short name used in messages.
INT: Final = "int"
DOUBLE: Final = "double"
STRING: Final = "string"
BYTES: Final = "bytes"
BOOL: Final = "bool"
NULL: Final = "null_type"
LIST: Final = "list"
MAP: Final = "map"
TIMESTAMP: Final = "timestamp"
DURATION: Final = "duration"
_NUMERIC: Final = frozenset({INT, DOUBLE})
_MAP_KEY_KINDS: Final = frozenset({STRING, INT, BOOL})

# Exact types whose kind needs no further check. datetime (a timezone check)
# and timedelta (a range check) always take the slow path.
_KIND_OF_TYPE: Final[dict[type, str]] = {
    bool: BOOL, int: INT, float: DOUBLE, str: STRING, bytes: BYTES, type(None): NULL,
    list: LIST, tuple: LIST, dict: MAP, MappingProxyType: MAP,
}
#: Exact types for which Python's ``==`` is CEL's equality when both sides have that type.
EQ_FAST_TYPES: Final = frozenset({str, int, bool, float, bytes, type(None)})


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()


# -- kinds and messages ------------------------------------------------------------


def kind(value: Any) -> str:
    """The CEL kind of ``value``; raises for Python values that are not CEL values."""
    t = type(value)
    k = _KIND_OF_TYPE.get(t)
    if k is not None:
        return k
    if t is datetime and value.tzinfo is UTC:
        return TIMESTAMP
    if t is timedelta and DURATION_MIN <= value <= DURATION_MAX:
        return DURATION
    return _kind_slow(value)


def _kind_slow(value: Any) -> str:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return DOUBLE
    if isinstance(value, str):
        return STRING
    if isinstance(value, (bytes, bytearray)):
        return BYTES
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise CelEvalError("a timestamp must carry a time zone (got a naive datetime)")
        return TIMESTAMP
    if isinstance(value, timedelta):
        if not DURATION_MIN <= value <= DURATION_MAX:
            raise CelEvalError("duration out of range")
        return DURATION
    if isinstance(value, Mapping):
        return MAP
    if isinstance(value, (list, tuple)):
        return LIST
    raise CelEvalError(f"unsupported value of Python type {type(value).__name__!r}")


def type_name(value: Any) -> str:
    """The CEL kind of ``value`` for a message; never raises."""
    try:
        return kind(value)
    except CelEvalError:
        return f"python:{type(value).__name__}"


def no_overload(op: str, *values: Any) -> CelEvalError:
    """The error for an operator or function applied to operands it has no overload for."""
    kinds = ", ".join(type_name(v) for v in values)
    return CelEvalError(f"no matching overload for '{op}' on ({kinds})")


def short(text: str, limit: int = 40) -> str:
    """``repr`` of ``text``, shortened for an error message."""
    if len(text) > limit:
        return repr(text[:limit]) + "…"
    return repr(text)


def check_int(value: int) -> int:
    """``value`` if it fits a signed 64-bit int, else an overflow error."""
    if INT64_MIN <= value <= INT64_MAX:
        return value
    raise CelEvalError("int overflow")


def check_bool(value: Any, op: str) -> bool:
    """``value`` if it is a bool, else the no-overload error of ``op``."""
    if value is True or value is False:
        return value
    if isinstance(value, bool):
        return bool(value)
    raise no_overload(op, value)


def as_eval_error(exc: BaseException) -> CelEvalError:
    """Any exception raised while evaluating, as a :class:`CelEvalError`."""
    if isinstance(exc, CelEvalError):
        return exc
    if isinstance(exc, ZeroDivisionError):
        message = "division by zero"
    elif isinstance(exc, RecursionError):
        message = "value nested too deeply"
    elif isinstance(exc, OverflowError):
        message = f"value out of range ({exc})"
    elif isinstance(exc, KeyError):
        message = f"no such key: {exc.args[0]!r}" if exc.args else "no such key"
    elif isinstance(exc, IndexError):
        message = "index out of range"
    else:
        message = f"evaluation failed: {type(exc).__name__}: {exc}"
    error = CelEvalError(message)
    error.__cause__ = exc
    return error


# -- equality ------------------------------------------------------------------------


def equals(a: Any, b: Any) -> bool:
    """CEL ``==``: heterogeneous (values of different kinds are unequal, not an error),
    numeric across int and double, elementwise on lists and maps, NaN unequal to itself."""
    ta = type(a)
    if ta is type(b) and ta in EQ_FAST_TYPES:
        return bool(a == b)
    return _equals_slow(a, b)


def _equals_slow(a: Any, b: Any) -> bool:
    ka = kind(a)
    kb = kind(b)
    if ka != kb:
        if ka in _NUMERIC and kb in _NUMERIC:
            return float(a) == float(b)
        return False
    if ka == LIST:
        if len(a) != len(b):
            return False
        return all(equals(x, y) for x, y in zip(a, b, strict=True))
    if ka == MAP:
        if len(a) != len(b):
            return False
        for key, value in a.items():
            other = map_get(b, key)
            if other is MISSING or not equals(value, other):
                return False
        return True
    if ka == NULL:
        return True
    if ka == BOOL:
        return bool(a) == bool(b)
    return bool(a == b)


def list_contains(container: Any, item: Any) -> bool:
    """CEL ``item in list``: true when some element equals ``item``."""
    return any(equals(item, element) for element in container)


# -- maps ----------------------------------------------------------------------------


def map_get(mapping: Mapping[Any, Any], key: Any) -> Any:
    """The value under ``key`` with CEL key semantics, or :data:`MISSING`.

    Keys of kind int, bool and string are distinct even where Python's hashing
    conflates them (``1 == True``); an integral double finds the equal int key.
    """
    if type(key) is str:
        return mapping.get(key, MISSING)
    k = kind(key)
    if k == DOUBLE:
        if not key.is_integer() or not -_TWO_63_FLOAT <= key < _TWO_63_FLOAT:
            return MISSING
        key = int(key)
        k = INT
    elif k not in _MAP_KEY_KINDS:
        raise CelEvalError(f"unsupported map key type '{k}'")
    value = mapping.get(key, MISSING)
    if value is MISSING:
        return MISSING
    if k == STRING or (k == INT and key != 0 and key != 1):
        return value
    # 0/1/False/True collide in Python: find the stored key of the right kind.
    for stored, stored_value in mapping.items():
        if stored == key and _kind_or_none(stored) == k:
            return stored_value
    return MISSING


def _kind_or_none(value: Any) -> str | None:
    try:
        return kind(value)
    except CelEvalError:
        return None


def select_slow(operand: Any, field: str) -> Any:
    """``operand.field`` for anything but a plain ``dict``."""
    if kind(operand) != MAP:
        raise CelEvalError(f"type '{type_name(operand)}' does not support field selection")
    value = map_get(operand, field)
    if value is MISSING:
        raise CelEvalError(f"no such key: {field!r}")
    return value


def has_slow(operand: Any, field: str) -> bool:
    """``has(operand.field)`` for anything but a plain ``dict``."""
    if kind(operand) != MAP:
        raise CelEvalError(f"has() needs a map, got '{type_name(operand)}'")
    return map_get(operand, field) is not MISSING


def index(container: Any, key: Any) -> Any:
    """``container[key]``: a list by int position, a map by key."""
    k = kind(container)
    if k == LIST:
        kk = kind(key)
        if kk == INT or (kk == DOUBLE and key.is_integer()):
            position = int(key)
        else:
            raise no_overload("_[_]", container, key)
        if not 0 <= position < len(container):
            raise CelEvalError(f"index out of range: {position}")
        return container[position]
    if k == MAP:
        value = map_get(container, key)
        if value is MISSING:
            raise CelEvalError(f"no such key: {key!r}")
        return value
    raise no_overload("_[_]", container, key)


def contains(container: Any, item: Any) -> bool:
    """CEL ``item in container`` for a list (element equality) or a map (key presence)."""
    k = kind(container)
    if k == LIST:
        return list_contains(container, item)
    if k == MAP:
        return map_get(container, item) is not MISSING
    raise no_overload("in", item, container)


def build_map(entries: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A map literal's value: keys must be string, int or bool, and distinct."""
    result: dict[Any, Any] = {}
    for key, value in entries:
        k = kind(key)
        if k not in _MAP_KEY_KINDS:
            raise CelEvalError(f"unsupported map key type '{k}'")
        if key in result:
            for stored in result:
                if stored == key:
                    if kind(stored) == k:
                        raise CelEvalError(f"repeated map key {key!r}")
                    raise CelEvalError(f"map keys {stored!r} and {key!r} cannot be mixed in "
                                       "one map (a limitation of this implementation)")
        result[key] = value
    return result


# -- ordering --------------------------------------------------------------------------


def order_operands(a: Any, b: Any, op: str) -> tuple[Any, Any]:
    """Two values Python can order exactly as CEL orders ``a`` and ``b``, or an error.

    Orders int, double, string, bytes, bool, timestamp and duration within their
    kind, and int against double numerically (the int converted to double, as
    cel-go does). NaN cannot be ordered.
    """
    ka = kind(a)
    kb = kind(b)
    if ka == kb:
        if ka == DOUBLE:
            if a != a or b != b:
                raise CelEvalError("NaN values cannot be ordered")
            return a, b
        if ka == BOOL:
            return bool(a), bool(b)
        if ka in (INT, STRING, BYTES, TIMESTAMP, DURATION):
            return a, b
    elif ka in _NUMERIC and kb in _NUMERIC:
        x = float(a)
        y = float(b)
        if x != x or y != y:
            raise CelEvalError("NaN values cannot be ordered")
        return x, y
    raise no_overload(op, a, b)


def less(a: Any, b: Any) -> bool:
    ta = type(a)
    if ta is type(b) and (ta is int or ta is str):
        return bool(a < b)
    x, y = order_operands(a, b, "<")
    return bool(x < y)


def less_equal(a: Any, b: Any) -> bool:
    ta = type(a)
    if ta is type(b) and (ta is int or ta is str):
        return bool(a <= b)
    x, y = order_operands(a, b, "<=")
    return bool(x <= y)


def greater(a: Any, b: Any) -> bool:
    ta = type(a)
    if ta is type(b) and (ta is int or ta is str):
        return bool(a > b)
    x, y = order_operands(a, b, ">")
    return bool(x > y)


def greater_equal(a: Any, b: Any) -> bool:
    ta = type(a)
    if ta is type(b) and (ta is int or ta is str):
        return bool(a >= b)
    x, y = order_operands(a, b, ">=")
    return bool(x >= y)


# -- arithmetic ------------------------------------------------------------------------


def check_duration(value: timedelta) -> timedelta:
    if DURATION_MIN <= value <= DURATION_MAX:
        return value
    raise CelEvalError("duration out of range")


def _shift(ts: datetime, delta: timedelta) -> datetime:
    try:
        return ts + delta
    except OverflowError:
        raise CelEvalError("timestamp out of range") from None


def add(a: Any, b: Any) -> Any:
    """CEL ``+`` on int, double, string, bytes, list, and timestamp/duration."""
    if type(a) is int and type(b) is int:
        return check_int(a + b)
    ka = kind(a)
    kb = kind(b)
    if ka == kb:
        if ka == INT:
            return check_int(int(a) + int(b))
        if ka == DOUBLE:
            return float(a) + float(b)
        if ka == STRING:
            return str.__add__(str(a), str(b))
        if ka == BYTES:
            return bytes(a) + bytes(b)
        if ka == LIST:
            return [*a, *b]
        if ka == DURATION:
            return check_duration(a + b)
    elif ka == TIMESTAMP and kb == DURATION:
        return _shift(a, b)
    elif ka == DURATION and kb == TIMESTAMP:
        return _shift(b, a)
    raise no_overload("+", a, b)


def subtract(a: Any, b: Any) -> Any:
    """CEL ``-`` on int, double, and timestamp/duration."""
    if type(a) is int and type(b) is int:
        return check_int(a - b)
    ka = kind(a)
    kb = kind(b)
    if ka == kb:
        if ka == INT:
            return check_int(int(a) - int(b))
        if ka == DOUBLE:
            return float(a) - float(b)
        if ka == DURATION:
            return check_duration(a - b)
        if ka == TIMESTAMP:
            return check_duration(a - b)
    elif ka == TIMESTAMP and kb == DURATION:
        return _shift(a, -b)
    raise no_overload("-", a, b)


def multiply(a: Any, b: Any) -> Any:
    """CEL ``*`` on int and double."""
    if type(a) is int and type(b) is int:
        return check_int(a * b)
    ka = kind(a)
    if ka == kind(b):
        if ka == INT:
            return check_int(int(a) * int(b))
        if ka == DOUBLE:
            return float(a) * float(b)
    raise no_overload("*", a, b)


def _truncated_quotient(a: int, b: int) -> int:
    quotient = abs(a) // abs(b)
    return quotient if (a < 0) == (b < 0) else -quotient


def divide(a: Any, b: Any) -> Any:
    """CEL ``/``: int division truncates toward zero; double division is IEEE 754."""
    ka = kind(a)
    if ka == kind(b):
        if ka == INT:
            if b == 0:
                raise CelEvalError("division by zero")
            return check_int(_truncated_quotient(int(a), int(b)))
        if ka == DOUBLE:
            x = float(a)
            y = float(b)
            if y == 0.0:
                if x == 0.0 or x != x:
                    return math.nan
                return math.copysign(math.inf, x) * math.copysign(1.0, y)
            return x / y
    raise no_overload("/", a, b)


def modulo(a: Any, b: Any) -> Any:
    """CEL ``%`` on int only: the remainder has the sign of the dividend."""
    if kind(a) == INT and kind(b) == INT:
        x = int(a)
        y = int(b)
        if y == 0:
            raise CelEvalError("modulus by zero")
        if x == INT64_MIN and y == -1:
            raise CelEvalError("int overflow")
        return x - y * _truncated_quotient(x, y)
    raise no_overload("%", a, b)


def negate(a: Any) -> Any:
    """CEL unary ``-`` on int and double."""
    k = kind(a)
    if k == INT:
        return check_int(-int(a))
    if k == DOUBLE:
        return -float(a)
    raise no_overload("-_", a)


# -- functions -----------------------------------------------------------------------


def size(value: Any) -> int:
    """``size(x)``: code points of a string, octets of bytes, elements of a list or map."""
    if kind(value) in (STRING, BYTES, LIST, MAP):
        return len(value)
    raise no_overload("size", value)


def string_method(name: str, subject: Any, argument: Any) -> bool:
    """``startsWith``, ``endsWith`` and ``contains`` on strings."""
    if kind(subject) != STRING or kind(argument) != STRING:
        raise no_overload(name, subject, argument)
    if name == "startsWith":
        return str.startswith(subject, argument)
    if name == "endsWith":
        return str.endswith(subject, argument)
    return str.__contains__(subject, argument)


_INT_TEXT: Final = re.compile(r"[+-]?[0-9]+")
_DOUBLE_TEXT: Final = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))")


def to_int(value: Any) -> int:
    """``int(x)`` from int, double (truncating; out of range is an error), string, timestamp."""
    k = kind(value)
    if k == INT:
        return int(value)
    if k == DOUBLE:
        if not -_TWO_63_FLOAT < value < _TWO_63_FLOAT:  # also rejects NaN
            raise CelEvalError("int conversion out of range")
        return int(value)
    if k == STRING:
        if _INT_TEXT.fullmatch(value) is None:
            raise CelEvalError(f"cannot convert {short(value)} to int")
        try:
            result = int(value)
        except ValueError:  # more digits than Python converts
            raise CelEvalError("int conversion out of range") from None
        if not INT64_MIN <= result <= INT64_MAX:
            raise CelEvalError("int conversion out of range")
        return result
    if k == TIMESTAMP:
        seconds: int = (value - EPOCH) // _ONE_SECOND
        return seconds
    raise no_overload("int", value)


def to_double(value: Any) -> float:
    """``double(x)`` from double, int or string."""
    k = kind(value)
    if k == DOUBLE:
        return float(value)
    if k == INT:
        return float(value)
    if k == STRING:
        if _DOUBLE_TEXT.fullmatch(value) is None:
            raise CelEvalError(f"cannot convert {short(value)} to double")
        try:
            result = float(value)
        except ValueError:  # pragma: no cover - the pattern admits only what float() parses
            raise CelEvalError(f"cannot convert {short(value)} to double") from None
        if math.isinf(result) and "n" not in value.lower():
            raise CelEvalError("double conversion out of range")
        return result
    raise no_overload("double", value)


def to_string(value: Any) -> str:
    """``string(x)`` from string, int, double, bool, bytes (UTF-8), timestamp, duration."""
    k = kind(value)
    if k == STRING:
        return str.__str__(value)
    if k == INT:
        return str(int(value))
    if k == DOUBLE:
        return format_double(float(value))
    if k == BOOL:
        return "true" if value else "false"
    if k == BYTES:
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise CelEvalError("invalid UTF-8 in bytes converted to string") from None
    if k == TIMESTAMP:
        return format_timestamp(value)
    if k == DURATION:
        return format_duration(value)
    raise no_overload("string", value)


def to_timestamp(value: Any) -> datetime:
    """``timestamp(x)`` from an RFC 3339 string, a timestamp, or int seconds since the epoch."""
    k = kind(value)
    if k == TIMESTAMP:
        return value  # type: ignore[no-any-return]
    if k == STRING:
        return parse_timestamp(value)
    if k == INT:
        try:
            return EPOCH + timedelta(seconds=int(value))
        except OverflowError:
            raise CelEvalError("timestamp out of range") from None
    raise no_overload("timestamp", value)


def to_duration(value: Any) -> timedelta:
    """``duration(x)`` from a Go-style duration string (``"1h30m"``) or a duration."""
    k = kind(value)
    if k == DURATION:
        return value  # type: ignore[no-any-return]
    if k == STRING:
        return parse_duration(value)
    raise no_overload("duration", value)


def format_double(value: float) -> str:
    """``value`` as Go's ``%g`` formats it (the shortest round-tripping digits)."""
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0.0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    text = repr(value)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exponent_text = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    stripped = digits.lstrip("0")
    point = len(whole) + int(exponent_text or "0") - (len(digits) - len(stripped))
    digits = stripped.rstrip("0")
    exponent = point - 1
    if exponent < -4 or exponent >= 6:  # Go's rule for %g at the shortest precision
        return _format_exponent(sign, digits, exponent)
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _format_exponent(sign: str, digits: str, exponent: int) -> str:
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{head}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


# -- timestamps and durations -----------------------------------------------------------

_TIMESTAMP_TEXT: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})")
_DURATION_PART: Final = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNIT_NANOS: Final = {
    "ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
    "m": 60_000_000_000, "h": 3_600_000_000_000,
}
#: The longest duration text accepted by ``duration()``.
MAX_DURATION_TEXT: Final = 256
_OFFSET_TEXT: Final = re.compile(r"([+-]?)([0-9]{2}):([0-9]{2})")


@lru_cache(maxsize=4096)  # timestamps in attributes repeat from check to check
def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 timestamp (``2024-01-31T09:30:00Z``, ``…T09:30:00.5+01:00``), in UTC.

    ``t`` and ``z`` may be lower case (RFC 3339 section 5.6); a space instead of
    the ``T`` is rejected. Fractional seconds beyond microseconds are truncated.
    """
    match = _TIMESTAMP_TEXT.fullmatch(text)
    if match is None:
        raise CelEvalError(f"invalid timestamp {short(text)}: expected RFC 3339 such as "
                           "'2024-01-31T09:30:00Z'")
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    micros = int(((match[7] or "") + "000000")[:6])
    zone = match[8]
    if zone in ("Z", "z"):
        offset = timedelta(0)
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise CelEvalError(f"invalid timestamp {short(text)}: bad UTC offset")
        offset = timedelta(hours=hours, minutes=minutes)
        if zone[0] == "-":
            offset = -offset
    try:
        local = datetime(year, month, day, hour, minute, second, micros,
                         tzinfo=timezone(offset))
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CelEvalError(f"invalid or out of range timestamp {short(text)}") from None


@lru_cache(maxsize=1024)
def parse_duration(text: str) -> timedelta:
    """A Go-style duration: a signed sequence of decimal numbers with units
    (``ns us µs ms s m h``), e.g. ``"300ms"``, ``"-1.5h"``, ``"2h45m"``.

    Precision beyond microseconds is truncated toward zero; text longer than
    :data:`MAX_DURATION_TEXT` characters is rejected (no real duration is that
    long, and parsing attacker-sized text would cost time on the hot path).
    """
    if len(text) > MAX_DURATION_TEXT:
        raise CelEvalError(f"invalid duration {short(text)}: longer than "
                           f"{MAX_DURATION_TEXT} characters")
    body = text
    negative = False
    if body[:1] in ("+", "-"):
        negative = body[0] == "-"
        body = body[1:]
    if body == "0":
        return timedelta(0)
    if not body:
        raise CelEvalError(f"invalid duration {short(text)}")
    nanos = 0
    position = 0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if match is None or not (match[1] or match[2]):
            raise CelEvalError(f"invalid duration {short(text)}: expected e.g. '1h30m' or "
                               "'300s'")
        unit = _DURATION_UNIT_NANOS[match[3]]
        try:
            nanos += int(match[1] or "0") * unit
            if match[2]:
                nanos += int(match[2]) * unit // 10 ** len(match[2])
        except ValueError:  # more digits than Python converts
            raise CelEvalError("duration out of range") from None
        if nanos > INT64_MAX + 1:
            raise CelEvalError("duration out of range")
        position = match.end()
    micros = nanos // 1000
    return check_duration(timedelta(microseconds=-micros if negative else micros))


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, fractional seconds only when non-zero."""
    utc = value.astimezone(UTC)
    text = (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}")
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_duration(value: timedelta) -> str:
    """Seconds with a fraction only when needed, like cel-go: ``"3600s"``, ``"-1.5s"``."""
    micros = value // _ONE_MICROSECOND
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    text = f"{sign}{seconds}"
    if fraction:
        text += "." + f"{fraction:06d}".rstrip("0")
    return text + "s"


@lru_cache(maxsize=128)
def _zone(name: str) -> tzinfo:
    match = _OFFSET_TEXT.fullmatch(name)
    if match is not None:
        offset = timedelta(hours=int(match[2]), minutes=int(match[3]))
        if offset >= timedelta(hours=24):
            raise CelEvalError(f"invalid UTC offset {short(name)}")
        return timezone(-offset if match[1] == "-" else offset)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CelEvalError(f"unknown time zone {short(name)}") from None


def _local(value: datetime, zone: Any) -> datetime:
    if zone is None:
        return value.astimezone(UTC)
    if kind(zone) != STRING:
        raise CelEvalError(f"a time zone must be a string, got '{type_name(zone)}'")
    try:
        return value.astimezone(_zone(str(zone)))
    except OverflowError:
        raise CelEvalError("timestamp out of range in that time zone") from None


#: The accessor methods of timestamps (all) and durations (the last four).
TIME_ACCESSORS: Final = frozenset({
    "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear",
    "getHours", "getMinutes", "getSeconds", "getMilliseconds",
})
_DURATION_ACCESSORS: Final = frozenset({"getHours", "getMinutes", "getSeconds",
                                        "getMilliseconds"})


def time_accessor(name: str, value: Any, zone: Any = None, *, has_zone: bool = False) -> int:
    """The timestamp/duration accessors (``getHours()``, ``getDayOfWeek('Europe/Paris')``...).

    Timestamp fields are in UTC unless a zone is given (an IANA name such as
    ``"America/New_York"`` or a fixed offset such as ``"+05:30"``); months,
    days of month and days of year count from 0, ``getDate`` from 1, days of
    week from 0 = Sunday. On a duration, ``getHours``/``getMinutes``/
    ``getSeconds`` convert the whole duration (truncating) and
    ``getMilliseconds`` is the millisecond part of the last second.
    """
    k = kind(value)
    if k == TIMESTAMP:
        local = _local(value, zone)
        if name == "getFullYear":
            return local.year
        if name == "getMonth":
            return local.month - 1
        if name == "getDate":
            return local.day
        if name == "getDayOfMonth":
            return local.day - 1
        if name == "getDayOfWeek":
            return (local.weekday() + 1) % 7
        if name == "getDayOfYear":
            return local.timetuple().tm_yday - 1
        if name == "getHours":
            return local.hour
        if name == "getMinutes":
            return local.minute
        if name == "getSeconds":
            return local.second
        return local.microsecond // 1000
    if k == DURATION and name in _DURATION_ACCESSORS and not has_zone:
        micros = value // _ONE_MICROSECOND
        if name == "getHours":
            return _truncated_quotient(micros, 3_600_000_000)
        if name == "getMinutes":
            return _truncated_quotient(micros, 60_000_000)
        if name == "getSeconds":
            return _truncated_quotient(micros, 1_000_000)
        millis = _truncated_quotient(micros, 1000)
        return millis - 1000 * _truncated_quotient(millis, 1000)
    if has_zone:
        raise no_overload(name, value, zone)
    raise no_overload(name, value)


# -- constants -----------------------------------------------------------------------------


def freeze(value: Any) -> Any:
    """An immutable equivalent of a constant-folded value (lists become tuples, maps
    read-only views), so that callers mutating a result cannot change the constant."""
    if type(value) is list:
        return tuple(freeze(v) for v in value)
    if type(value) is dict:
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    return value


def thaw(value: Any) -> Any:
    """The mutable equivalent of a :func:`freeze` result."""
    if type(value) is tuple:
        return [thaw(v) for v in value]
    if type(value) is MappingProxyType:
        return {k: thaw(v) for k, v in value.items()}
    return value
