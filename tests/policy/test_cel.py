"""The CEL subset: every construct, its errors, its limits and its references."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
import sys
from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentauthz.errors import ConditionError, InvalidInputError
from agentauthz.policy.cel import (
    MAX_DEPTH,
    MAX_SOURCE_LENGTH,
    CelEvalError,
    CelSyntaxError,
    Condition,
    FieldRef,
    compile_condition,
    line_column,
)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

ACTIVATION: dict[str, Any] = {
    "principal": {"id": "svc-42", "tenant": "acme", "roles": ["admin", "dev"], "level": 3},
    "resource": {
        "tenant": "acme", "classification": "confidential", "owner": {"id": "u1"},
        "created": "2024-01-01T00:00:00Z", "size": 10, "ratio": 0.5, "tags": {"a": 1},
        "nothing": None, "flag": True,
    },
    "action": "read",
    "context": {
        "risk": 2, "now": "2024-01-01T12:00:00Z", "approved": True,
        "args": {"recipients": ["a@x", "b@x"]},
        "t": True, "f": False, "n": 1,
    },
}


def ev(source: str, activation: Mapping[str, Any] | None = None, **variables: Any) -> Any:
    """Compile and evaluate; ``variables`` add to (or replace parts of) ACTIVATION."""
    act = dict(ACTIVATION if activation is None else activation)
    act.update(variables)
    cond = compile_condition(source, variables=frozenset(act))
    return cond(act)


def eval_error(source: str, activation: Mapping[str, Any] | None = None,
               **variables: Any) -> str:
    with pytest.raises(CelEvalError) as info:
        ev(source, activation, **variables)
    return info.value.message


def syntax_error(source: str, variables: frozenset[str] | None = None) -> CelSyntaxError:
    names = frozenset({"principal", "resource", "action", "context"}) if variables is None \
        else variables
    with pytest.raises(CelSyntaxError) as info:
        compile_condition(source, variables=names)
    return info.value


def same(actual: Any, expected: Any) -> bool:
    """Equal and of the same Python type (so True is not 1 and 1.0 is not 1)."""
    if type(expected) is float and math.isnan(expected):
        return type(actual) is float and math.isnan(actual)
    if isinstance(expected, list):
        return (isinstance(actual, (list, tuple)) and len(actual) == len(expected)
                and all(same(a, e) for a, e in zip(actual, expected, strict=True)))
    if isinstance(expected, dict):
        return (isinstance(actual, Mapping) and actual.keys() == expected.keys()
                and all(same(actual[k], v) for k, v in expected.items()))
    return type(actual) is type(expected) and bool(actual == expected)


def check(source: str, expected: Any, **variables: Any) -> None:
    actual = ev(source, **variables)
    assert same(actual, expected), f"{source!r} gave {actual!r}, expected {expected!r}"


# -- the examples from the brief -------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("has(resource.tenant) && resource.tenant != principal.tenant", False),
    ("resource.classification in ['confidential', 'restricted']", True),
    ('context.risk <= 3 && principal.id.startsWith("svc-")', True),
    ('timestamp(context.now) - timestamp(resource.created) < duration("24h")', True),
    ("size(context.args.recipients) > 10 || !context.approved", False),
])
def test_example_conditions(source: str, expected: bool) -> None:
    check(source, expected)


# -- literals ----------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("0", 0), ("42", 42), ("-7", -7), ("0x1F", 31), ("0xff", 255), ("-0x10", -16),
    ("9223372036854775807", INT64_MAX), ("-9223372036854775808", INT64_MIN),
    ("-0x8000000000000000", INT64_MIN), ("--1", 1), ("- -5", 5),
    ("1.5", 1.5), (".5", 0.5), ("1e3", 1000.0), ("1E3", 1000.0), ("2.5e-3", 0.0025),
    ("1.5E+2", 150.0), ("-0.0", -0.0), ("0.0", 0.0),
    ("true", True), ("false", False), ("null", None),
    ("'abc'", "abc"), ('"abc"', "abc"), ("''", ""), ("'\"'", '"'), ('"\'"', "'"),
    ("'a\\tb\\nc'", "a\tb\nc"), ("'\\\\'", "\\"), ("'\\''", "'"), ('"\\""', '"'),
    ("'\\a\\b\\f\\r\\v\\?\\`'", "\a\b\f\r\v?`"),
    ("'\\x41\\X42'", "AB"), ("'\\101'", "A"), ("'\\377'", "\u00ff"), ("'\\u00e9'", "é"),
    ("'\\U0001F436'", "\U0001F436"), ("'\\ud83d\\udc36'", "\U0001F436"),
    ("'é🐶'", "é🐶"),
    ("r'\\n'", "\\n"), ("R'\\x41'", "\\x41"), ('r"a\\"', "a\\"),
    ("'''a\nb'''", "a\nb"), ('"""say "hi" """', 'say "hi" '), ("'''x''x'''", "x''x"),
    ("b'abc'", b"abc"), ("B'abc'", b"abc"), ("b'\\xff\\377'", b"\xff\xff"),
    ("b'é'", "é".encode()), ("br'\\n'", b"\\n"), ("b'''a\nb'''", b"a\nb"),
])
def test_literals(source: str, expected: Any) -> None:
    check(source, expected)
    if isinstance(expected, float) and expected == 0.0:
        assert math.copysign(1.0, ev(source)) == math.copysign(1.0, expected)


@pytest.mark.parametrize(("source", "message"), [
    ("9223372036854775808", "integer literal out of range"),
    ("-9223372036854775809", "integer literal out of range"),
    ("0x8000000000000000", "integer literal out of range"),
    ("1u", "unsigned integers"),
    ("1.", "malformed number"),
    ("1e", "malformed exponent"),
    ("1e999", "double literal out of range"),
    ("12abc", "malformed number"),
    ("0x", "malformed hexadecimal"),
    ("0X10", "hexadecimal literals are written 0x"),
    ("'abc", "unterminated string"),
    ("'a\nb'", "newline in string"),
    ("'''abc", "unterminated string"),
    ("'\\q'", "invalid escape"),
    ("'\\x4'", "two hex digits"),
    ("'\\400'", "invalid escape"),
    ("'\\12'", "three digits"),
    ("'\\u12'", "4 hex digits"),
    ("'\\U00110000'", "not a valid Unicode code point"),
    ("'\\ud83d'", "not a valid Unicode code point"),
    ("b'\\u00e9'", "not allowed in bytes"),
    ("rb'x'", "unexpected"),
])
def test_bad_literals(source: str, message: str) -> None:
    assert message in syntax_error(source).message


def test_list_and_map_literals() -> None:
    check("[]", [])
    check("[1, 'a', [true], null]", [1, "a", [True], None])
    check("[1, 2,]", [1, 2])
    check("{}", {})
    check("{'a': 1, 2: 'b', true: [1],}", {"a": 1, 2: "b", True: [1]})
    check("{'a': {'b': context.risk}}", {"a": {"b": 2}})
    check("[context.risk, resource.size]", [2, 10])


def test_constant_results_are_fresh_mutable_copies() -> None:
    cond = compile_condition("[1, [2]]")
    first = cond({})
    assert first == [1, [2]]
    assert type(first) is list
    first.append(3)
    first[1].append(9)
    assert cond({}) == [1, [2]]
    mapping = compile_condition("{'a': [1]}")({})
    assert type(mapping) is dict
    assert mapping == {"a": [1]}


@pytest.mark.parametrize(("source", "message"), [
    ("{'a': 1, 'a': 2}", "repeated map key 'a'"),
    ("{1: 1, 1: 2}", "repeated map key 1"),
    ("{1.5: 'x'}", "unsupported map key type 'double'"),
    ("{null: 1}", "unsupported map key type 'null_type'"),
    ("{[1]: 1}", "unsupported map key type 'list'"),
    # CEL allows int 1 and bool true as distinct keys of one map; a Python dict cannot.
    ("{1: 'a', true: 'b'}", "cannot be mixed"),
])
def test_bad_map_literals(source: str, message: str) -> None:
    assert message in eval_error(source)


def test_map_literal_with_variable_keys() -> None:
    check("{principal.tenant: 1}", {"acme": 1})
    assert "repeated map key" in eval_error("{principal.tenant: 1, resource.tenant: 2}")


# -- field selection, indexing, has ----------------------------------------------------------


def test_field_selection() -> None:
    check("resource.tenant", "acme")
    check("resource.owner.id", "u1")
    check("context.args.recipients", ["a@x", "b@x"])
    check("resource.nothing", None)
    check("{'a': {'b': {'c': 1}}}.a.b.c", 1)
    check("x.a.b.c.d", 4, x={"a": {"b": {"c": {"d": 4}}}})
    check("action", "read")


@pytest.mark.parametrize(("source", "message"), [
    ("resource.missing", "no such key: 'missing'"),
    ("resource.owner.name", "no such key: 'name'"),
    ("context.args.recipients.first", "type 'list' does not support field selection"),
    ("action.name", "type 'string' does not support field selection"),
    ("resource.size.value", "type 'int' does not support field selection"),
    ("resource.nothing.x", "type 'null_type' does not support field selection"),
    ("x.a.b.c", "no such key: 'c'"),
    ("x.a.b.c.d", "no such key: 'c'"),
    ("(x).z", "no such key: 'z'"),
])
def test_field_selection_errors(source: str, message: str) -> None:
    assert eval_error(source, x={"a": {"b": {}}}) == message


def test_unbound_variable_is_an_evaluation_error() -> None:
    cond = compile_condition("principal.id == 'x'")
    with pytest.raises(CelEvalError, match="unbound variable 'principal'"):
        cond({})
    with pytest.raises(CelEvalError, match="unbound variable 'action'"):
        compile_condition("action")({})


def test_any_mapping_is_a_map() -> None:
    proxy = MappingProxyType({"a": 1, "b": MappingProxyType({"c": 2})})
    check("x.a", 1, x=proxy)
    check("x.b.c", 2, x=proxy)
    check("has(x.a) && !has(x.z)", True, x=proxy)
    check("'a' in x", True, x=proxy)
    check("x['a']", 1, x=proxy)
    check("x == {'a': 1, 'b': {'c': 2}}", True, x=proxy)
    assert eval_error("x.z", x=proxy) == "no such key: 'z'"


def test_defaultdict_factory_is_never_called() -> None:
    calls: list[int] = []

    def factory() -> int:
        calls.append(1)
        return 0

    d: defaultdict[str, int] = defaultdict(factory, {"a": 1})
    assert eval_error("x.missing", x=d) == "no such key: 'missing'"
    assert eval_error("x['missing']", x=d) == "no such key: 'missing'"
    check("has(x.missing)", False, x=d)
    check("'missing' in x", False, x=d)
    check("x.a", 1, x=d)
    assert calls == []
    assert dict(d) == {"a": 1}


def test_tuples_are_lists() -> None:
    check("x[1]", 2, x=(1, 2))
    check("size(x)", 2, x=(1, 2))
    check("x == [1, 2]", True, x=(1, 2))
    check("2 in x", True, x=(1, 2))
    check("x + [3]", [1, 2, 3], x=(1, 2))


@pytest.mark.parametrize(("source", "expected"), [
    ("[10, 20, 30][0]", 10),
    ("[10, 20, 30][2]", 30),
    ("[10, 20, 30][1.0]", 20),  # an integral double indexes a list (cel-spec conformance)
    ("{'a': 1}['a']", 1),
    ("{1: 'one', 2: 'two'}[2]", "two"),
    ("{1: 'one'}[1.0]", "one"),  # an integral double finds the int key
    ("{true: 'yes', false: 'no'}[false]", "no"),
    ("resource['owner']['id']", "u1"),
    ("context.args.recipients[1]", "b@x"),
    ("x[y]", "b", ),
])
def test_indexing(source: str, expected: Any) -> None:
    check(source, expected, x=["a", "b"], y=1)


@pytest.mark.parametrize(("source", "message"), [
    ("[1, 2][2]", "index out of range: 2"),
    ("[1, 2][-1]", "index out of range: -1"),
    ("[1, 2][1.5]", "no matching overload for '_[_]' on (list, double)"),
    ("[1, 2]['a']", "no matching overload for '_[_]' on (list, string)"),
    ("[1, 2][true]", "no matching overload for '_[_]' on (list, bool)"),
    ("{'a': 1}['b']", "no such key: 'b'"),
    ("{'a': 1}[1]", "no such key: 1"),
    ("{1: 'a'}[true]", "no such key: True"),
    ("{true: 'a'}[1]", "no such key: 1"),
    ("{1: 'a'}[1.5]", "no such key: 1.5"),
    ("{'a': 1}[null]", "unsupported map key type 'null_type'"),
    ("'abc'[0]", "no matching overload for '_[_]' on (string, int)"),
    ("x[9223372036854775807]", "index out of range: 9223372036854775807"),
])
def test_indexing_errors(source: str, message: str) -> None:
    assert eval_error(source, x=[1]) == message


def test_bool_and_int_map_keys_are_distinct() -> None:
    # Python's dict conflates 1 and True; CEL does not.
    assert eval_error("x[1]", x={True: "t"}) == "no such key: 1"
    check("x[true]", "t", x={True: "t"})
    assert eval_error("x[true]", x={1: "one"}) == "no such key: True"
    check("x[1]", "one", x={1: "one"})
    check("1 in x", False, x={True: "t"})
    check("false in x", False, x={0: "zero"})
    check("0 in x", True, x={0: "zero"})
    check("x == {1: 'one'}", False, x={True: "one"})


def test_has() -> None:
    check("has(resource.tenant)", True)
    check("has(resource.nothing)", True)  # present with a null value
    check("has(resource.missing)", False)
    check("has(resource.owner.id)", True)
    check("has(resource.owner.name)", False)
    check("has({'a': 1}.a)", True)
    check("has({}.a)", False)
    check("has(x.a)", True, x=MappingProxyType({"a": 1}))


@pytest.mark.parametrize(("source", "message"), [
    ("has(resource.missing.deeper)", "no such key: 'missing'"),
    ("has(resource.size.x)", "has() needs a map, got 'int'"),
    ("has(context.args.recipients.x)", "has() needs a map, got 'list'"),
    ("has(action.x)", "has() needs a map, got 'string'"),
])
def test_has_errors(source: str, message: str) -> None:
    assert eval_error(source) == message


@pytest.mark.parametrize("source", ["has(resource)", "has(resource['tenant'])", "has(1)",
                                    "has()", "has(resource.a, resource.b)"])
def test_has_needs_one_field_selection(source: str) -> None:
    assert "has()" in syntax_error(source).message


# -- size and string methods ------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("size('')", 0), ("size('abc')", 3), ("size('héllo')", 5), ("size('🐶')", 1),
    ("'abc'.size()", 3), ("size(b'\\xff\\x00')", 2), ("size([])", 0), ("size([1, [2, 3]])", 2),
    ("size({'a': 1, 'b': 2})", 2), ("context.args.recipients.size()", 2),
    ("size(resource.tags)", 1),
])
def test_size(source: str, expected: int) -> None:
    check(source, expected)


@pytest.mark.parametrize("source", ["size(1)", "size(true)", "size(null)", "size(1.5)",
                                    "(1).size()", "size(timestamp('2024-01-01T00:00:00Z'))"])
def test_size_errors(source: str) -> None:
    assert eval_error(source).startswith("no matching overload for 'size'")


@pytest.mark.parametrize(("source", "expected"), [
    ("'svc-42'.startsWith('svc-')", True), ("'svc-42'.startsWith('usr-')", False),
    ("'abc'.startsWith('')", True), ("'report.pdf'.endsWith('.pdf')", True),
    ("'report.pdf'.endsWith('.doc')", False), ("'hello world'.contains('o w')", True),
    ("'hello'.contains('')", True), ("'hello'.contains('z')", False),
    ("principal.id.startsWith(principal.tenant)", False),
    ("principal.id.endsWith('42')", True),
])
def test_string_methods(source: str, expected: bool) -> None:
    check(source, expected)


@pytest.mark.parametrize(("source", "message"), [
    ("'abc'.startsWith(1)", "no matching overload for 'startsWith' on (string, int)"),
    ("resource.size.endsWith('0')", "no matching overload for 'endsWith' on (int, string)"),
    ("[1].contains(1)", "no matching overload for 'contains' on (list, int)"),
    ("'abc'.contains(resource.size)", "no matching overload for 'contains' on (string, int)"),
])
def test_string_method_errors(source: str, message: str) -> None:
    assert eval_error(source) == message


# -- equality ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("1 == 1", True), ("1 == 2", False), ("1 != 2", True), ("'a' == 'a'", True),
    ("1 == 1.0", True), ("1.0 == 1", True), ("1 != 1.0", False), ("2 == 1.5", False),
    ("true == true", True), ("true != false", True),
    # bool and int are distinct types: never equal, not an error
    ("true == 1", False), ("1 == true", False), ("false == 0", False), ("0 != false", True),
    ("1 == 'a'", False), ("'1' == 1", False), ("null == null", True), ("null == 0", False),
    ("null != false", True), ("[] == []", True), ("[1, 2] == [1, 2]", True),
    ("[1, 2] == [2, 1]", False), ("[1] == [1, 2]", False), ("[1] == [1.0]", True),
    ("[1, 'a'] == [1, 2]", False), ("[true] == [1]", False), ("[[1]] == [[1]]", True),
    ("{} == {}", True), ("{'a': 1} == {'a': 1.0}", True), ("{'a': 1} == {'b': 1}", False),
    ("{'a': 1, 'b': 2} == {'b': 2, 'a': 1}", True), ("{'a': 1} == {'a': 1, 'b': 2}", False),
    ("b'a' == b'a'", True), ("b'a' == 'a'", False),
    ("0.0 / 0.0 == 0.0 / 0.0", False), ("0.0 / 0.0 != 0.0 / 0.0", True),
    ("0.0 == -0.0", True),
    ("9007199254740993 == 9007199254740992.0", True),  # the int is converted to double
    ("duration('1h') == duration('60m')", True), ("duration('1h') == 3600", False),
    ("timestamp('2024-01-01T00:00:00Z') == timestamp('2024-01-01T01:00:00+01:00')", True),
    ("resource.tenant == principal.tenant", True),
    ("resource.tenant != principal.tenant", False),
    ("resource.flag == true", True), ("resource.flag == 1", False),
    ("resource.size == 10.0", True), ("resource.size == 10", True),
    ("principal.roles == ['admin', 'dev']", True),
    ("resource.nothing == null", True),
    ("x == y", True),
])
def test_equality(source: str, expected: bool) -> None:
    check(source, expected, x={"a": [1, {"b": 2}]}, y={"a": [1.0, {"b": 2}]})


def test_nan_from_the_activation() -> None:
    nan = float("nan")
    check("x == x", False, x=nan)
    check("x != x", True, x=nan)
    check("x in [1.0, 2.0]", False, x=nan)
    check("[x] == [x]", False, x=nan)
    assert eval_error("x < 1.0", x=nan) == "NaN values cannot be ordered"
    assert eval_error("x >= 1", x=nan) == "NaN values cannot be ordered"


# -- ordering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("1 < 2", True), ("2 <= 2", True), ("3 > 2", True), ("2 >= 3", False),
    ("-1 < 0", True), ("1.5 < 2.5", True), ("1 < 1.5", True), ("2.0 > 1", True),
    ("1 <= 1.0", True), ("9223372036854775807 < 9223372036854775808.0", False),
    ("9223372036854775807 >= 9223372036854775808.0", True),  # lossy, as in the conformance suite
    ("'a' < 'b'", True), ("'B' < 'a'", True), ("'abc' < 'abd'", True), ("'ab' < 'abc'", True),
    ("'é' > 'z'", True), ("'' < 'a'", True),
    ("false < true", True), ("true <= true", True), ("true > false", True),
    ("b'a' < b'b'", True), ("b'\\x00\\x01' > b'\\x01'", False),
    ("duration('1h') > duration('59m')", True), ("duration('-1s') < duration('0s')", True),
    ("timestamp('2024-01-01T00:00:00Z') < timestamp('2024-01-01T00:00:01Z')", True),
    ("timestamp('2024-01-01T00:30:00+01:00') < timestamp('2024-01-01T00:00:00Z')", True),
    ("context.risk <= 3", True), ("context.risk > 3", False), ("3 >= context.risk", True),
    ("resource.ratio < 1", True), ("principal.id >= 'svc'", True),
    ("resource.size < context.risk", False),
])
def test_ordering(source: str, expected: bool) -> None:
    check(source, expected)


@pytest.mark.parametrize(("source", "message"), [
    ("'a' < 1", "no matching overload for '<' on (string, int)"),
    ("1 <= 'a'", "no matching overload for '<=' on (int, string)"),
    ("true > 0", "no matching overload for '>' on (bool, int)"),
    ("null >= null", "no matching overload for '>=' on (null_type, null_type)"),
    ("[1] < [2]", "no matching overload for '<' on (list, list)"),
    ("{'a': 1} < {'a': 2}", "no matching overload for '<' on (map, map)"),
    ("duration('1h') < 3600", "no matching overload for '<' on (duration, int)"),
    ("timestamp('2024-01-01T00:00:00Z') < duration('1h')",
     "no matching overload for '<' on (timestamp, duration)"),
    ("b'a' < 'a'", "no matching overload for '<' on (bytes, string)"),
    ("principal.id < 3", "no matching overload for '<' on (string, int)"),
    ("resource.nothing > 1", "no matching overload for '>' on (null_type, int)"),
    ("1 < 2 < 3", "no matching overload for '<' on (bool, int)"),
])
def test_ordering_errors(source: str, message: str) -> None:
    assert eval_error(source) == message


# -- membership -------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("'a' in ['a', 'b']", True), ("'c' in ['a', 'b']", False), ("'a' in []", False),
    ("1 in [1, 2]", True), ("3 in [1, 2]", False), ("1 in [1.0]", True), ("1.0 in [1]", True),
    ("2.5 in [1, 2]", False), ("true in [1]", False), ("1 in [true]", False),
    ("true in [true, false]", True), ("null in [null]", True), ("[1] in [[1], [2]]", True),
    ("'a' in [1, 'a', true]", True), ("1 in [true, 'a', 1]", True), ("1 in ['1']", False),
    ("'a' in {'a': 1}", True), ("'b' in {'a': 1}", False), ("1 in {1: 'x'}", True),
    ("1.0 in {1: 'x'}", True), ("1.5 in {1: 'x'}", False), ("true in {1: 'x'}", False),
    ("resource.classification in ['public', 'confidential']", True),
    ("resource.size in [10, 20]", True), ("resource.ratio in [0.5]", True),
    ("resource.ratio in [1, 2]", False), ("resource.flag in [1]", False),
    ("'admin' in principal.roles", True), ("'root' in principal.roles", False),
    ("'a' in resource.tags", True), ("principal.tenant in [resource.tenant, 'x']", True),
    ("context.risk in [1, 2.0, 3]", True), ("x in ['a', 'b']", True),
    ("x in y", True),
])
def test_in(source: str, expected: bool) -> None:
    check(source, expected, x="a", y=MappingProxyType({"a": 1}))


@pytest.mark.parametrize(("source", "message"), [
    ("1 in 2", "no matching overload for 'in' on (int, int)"),
    ("'a' in 'abc'", "no matching overload for 'in' on (string, string)"),
    ("'a' in null", "no matching overload for 'in' on (string, null_type)"),
    ("null in {'a': 1}", "unsupported map key type 'null_type'"),
    ("[1] in {'a': 1}", "unsupported map key type 'list'"),
])
def test_in_errors(source: str, message: str) -> None:
    assert eval_error(source) == message


def test_long_literal_list_membership() -> None:
    items = ",".join(f"'i{i}'" for i in range(600))
    cond = compile_condition(f"x in [{items}]", variables=frozenset({"x"}))
    assert cond({"x": "i599"}) is True
    assert cond({"x": "i600"}) is False
    numbers = ",".join(str(i) for i in range(1000))
    cond = compile_condition(f"x in [{numbers}]", variables=frozenset({"x"}))
    assert cond({"x": 999}) is True
    assert cond({"x": 999.0}) is True
    assert cond({"x": True}) is False
    assert cond({"x": 1000}) is False


# -- logic --------------------------------------------------------------------------------------

# Operand kinds: T true, F false, E an error, N a non-bool value (also an error when used).
_CONSTANT_OPERANDS = {"T": "true", "F": "false", "E": "(1 / 0 == 1)", "N": "1"}
_VARIABLE_OPERANDS = {"T": "context.t", "F": "context.f", "E": "context.missing",
                      "N": "context.n"}


def _model(op: str, kinds: tuple[str, ...]) -> bool | None:
    """CEL's commutative logic: the absorbing value wins; otherwise any error (or non-bool)
    is an error (None here); otherwise the other value."""
    absorbing, other = ("F", "T") if op == "&&" else ("T", "F")
    if absorbing in kinds:
        return absorbing == "T"
    if any(k in ("E", "N") for k in kinds):
        return None
    return other == "T"


@pytest.mark.parametrize("operands", [_CONSTANT_OPERANDS, _VARIABLE_OPERANDS],
                         ids=["constant", "variable"])
@pytest.mark.parametrize("op", ["&&", "||"])
@pytest.mark.parametrize("count", [2, 3, 4])
def test_logic_truth_tables(operands: dict[str, str], op: str, count: int) -> None:
    for kinds in itertools.product("TFEN", repeat=count):
        source = f" {op} ".join(operands[k] for k in kinds)
        expected = _model(op, kinds)
        if expected is None:
            with pytest.raises(CelEvalError):
                ev(source)
        else:
            assert ev(source) is expected, source


def test_logic_error_messages() -> None:
    assert eval_error("1 && true") == "no matching overload for '&&' on (int)"
    assert eval_error("false || 'x'") == "no matching overload for '||' on (string)"
    assert eval_error("context.missing && true") == "no such key: 'missing'"
    assert eval_error("true && 1 / 0 == 1") == "division by zero"
    # The first error in source order is reported.
    assert eval_error("context.missing || 1 / 0 == 1") == "no such key: 'missing'"


@pytest.mark.parametrize(("source", "expected"), [
    ("!true", False), ("!false", True), ("!!true", True), ("!context.approved", False),
    ("!(1 < 2)", False),
])
def test_not(source: str, expected: bool) -> None:
    check(source, expected)


@pytest.mark.parametrize("source", ["!1", "!null", "!'true'", "!context.n", "!-1"])
def test_not_needs_a_bool(source: str) -> None:
    assert eval_error(source).startswith("no matching overload for '!_'")


@pytest.mark.parametrize(("source", "expected"), [
    ("true ? 1 : 2", 1), ("false ? 1 : 2", 2), ("context.approved ? 'y' : 'n'", "y"),
    ("true ? 1 : 1 / 0", 1), ("false ? 1 / 0 : 2", 2),  # the other branch is not evaluated
    ("context.f ? context.missing : 'ok'", "ok"),
    ("true ? 1 : false ? 2 : 3", 1), ("false ? 1 : false ? 2 : 3", 3),
    ("false ? 1 : true ? 2 : 3", 2), ("1 < 2 ? 'lt' : 'ge'", "lt"),
    ("context.t ? [1] : {}", [1]),
])
def test_conditional(source: str, expected: Any) -> None:
    check(source, expected)


@pytest.mark.parametrize(("source", "message"), [
    ("1 ? 2 : 3", "no matching overload for '_?_:_' on (int)"),
    ("null ? 2 : 3", "no matching overload for '_?_:_' on (null_type)"),
    ("context.n ? 2 : 3", "no matching overload for '_?_:_' on (int)"),
    ("context.missing ? 2 : 3", "no such key: 'missing'"),
])
def test_conditional_errors(source: str, message: str) -> None:
    assert eval_error(source) == message


# -- arithmetic ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("1 + 2", 3), ("5 - 7", -2), ("6 * 7", 42), ("7 / 2", 3), ("-7 / 2", -3), ("7 / -2", -3),
    ("-7 / -2", 3), ("7 % 3", 1), ("-7 % 3", -1), ("7 % -3", 1), ("-7 % -3", -1),
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("10 - 4 - 3", 3), ("100 / 10 / 5", 2),
    ("2 - 3 * 4 % 5", 0), ("-2 * 3", -6), ("2 * -3", -6), ("-(2 + 3)", -5), ("--(2)", 2),
    ("9223372036854775806 + 1", INT64_MAX), ("-9223372036854775807 - 1", INT64_MIN),
    ("-9223372036854775808 / 1", INT64_MIN), ("-9223372036854775808 % 1", 0),
    ("-9223372036854775808 / 2", -(2**62)), ("4611686018427387904 * -2", INT64_MIN),
    ("1.5 + 2.25", 3.75), ("1.0 - 3.0", -2.0), ("2.5 * 4.0", 10.0), ("7.0 / 2.0", 3.5),
    ("-(1.5)", -1.5), ("1e308 * 10.0", math.inf), ("1.0 / 0.0", math.inf),
    ("-1.0 / 0.0", -math.inf), ("1.0 / -0.0", -math.inf), ("0.0 / 0.0", math.nan),
    ("'ab' + 'cd'", "abcd"), ("'' + ''", ""), ("b'a' + b'b'", b"ab"),
    ("[1] + [2, 3]", [1, 2, 3]), ("[] + []", []), ("[1] + ['a']", [1, "a"]),
    ("context.risk + resource.size", 12), ("resource.ratio * 2.0", 1.0),
    ("principal.tenant + '/' + resource.tenant", "acme/acme"),
    ("principal.roles + ['x']", ["admin", "dev", "x"]),
])
def test_arithmetic(source: str, expected: Any) -> None:
    check(source, expected)


@pytest.mark.parametrize(("source", "message"), [
    ("9223372036854775807 + 1", "int overflow"),
    ("-9223372036854775808 - 1", "int overflow"),
    ("9223372036854775807 * 2", "int overflow"),
    ("-9223372036854775808 * -1", "int overflow"),
    ("-9223372036854775808 / -1", "int overflow"),
    ("-9223372036854775808 % -1", "int overflow"),
    ("-(-9223372036854775808)", "int overflow"),
    ("-x", "int overflow"),
    ("x - 1", "int overflow"),
    ("x + x", "int overflow"),
    ("1 / 0", "division by zero"),
    ("x / 0", "division by zero"),
    ("1 % 0", "modulus by zero"),
    ("1 + 1.0", "no matching overload for '+' on (int, double)"),
    ("1.0 - 1", "no matching overload for '-' on (double, int)"),
    ("2 * 2.0", "no matching overload for '*' on (int, double)"),
    ("1 + true", "no matching overload for '+' on (int, bool)"),
    ("true + true", "no matching overload for '+' on (bool, bool)"),
    ("'a' + 1", "no matching overload for '+' on (string, int)"),
    ("[1] + 1", "no matching overload for '+' on (list, int)"),
    ("{'a': 1} + {'b': 2}", "no matching overload for '+' on (map, map)"),
    ("null + null", "no matching overload for '+' on (null_type, null_type)"),
    ("5.5 % 2.0", "no matching overload for '%' on (double, double)"),
    ("'a' * 2", "no matching overload for '*' on (string, int)"),
    ("-'a'", "no matching overload for '-_' on (string)"),
    ("-true", "no matching overload for '-_' on (bool)"),
    ("-duration('1h')", "no matching overload for '-_' on (duration)"),
    ("'a' / 'b'", "no matching overload for '/' on (string, string)"),
])
def test_arithmetic_errors(source: str, message: str) -> None:
    assert eval_error(source, x=INT64_MIN) == message


def test_activation_ints_at_the_edges() -> None:
    check("x + 0", INT64_MAX, x=INT64_MAX)
    check("x - 1", INT64_MAX - 1, x=INT64_MAX)
    check("-x", -INT64_MAX, x=INT64_MAX)
    check("x == 9223372036854775807", True, x=INT64_MAX)
    check("x < 0", True, x=INT64_MIN)
    assert eval_error("x + 1", x=INT64_MAX) == "int overflow"
    assert eval_error("x * 2", x=2**62) == "int overflow"


# -- timestamps and durations ------------------------------------------------------------------


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(("source", "expected"), [
    ("timestamp('2024-01-31T09:30:00Z')", ts("2024-01-31T09:30:00Z")),
    ("timestamp('2024-01-31T09:30:00.5Z')", ts("2024-01-31T09:30:00.500000Z")),
    ("timestamp('2024-01-31T09:30:00.123456789Z')", ts("2024-01-31T09:30:00.123456Z")),
    ("timestamp('2024-01-31T09:30:00+01:00')", ts("2024-01-31T08:30:00Z")),
    ("timestamp('2024-01-31T09:30:00-05:30')", ts("2024-01-31T15:00:00Z")),
    ("timestamp('2024-01-31t09:30:00z')", ts("2024-01-31T09:30:00Z")),  # RFC 3339 5.6
    ("timestamp('0001-01-01T00:00:00Z')", ts("0001-01-01T00:00:00Z")),
    ("timestamp('9999-12-31T23:59:59.999999Z')", ts("9999-12-31T23:59:59.999999Z")),
    ("timestamp(0)", ts("1970-01-01T00:00:00Z")),
    ("timestamp(1234567890)", ts("2009-02-13T23:31:30Z")),
    ("timestamp(timestamp('2024-01-01T00:00:00Z'))", ts("2024-01-01T00:00:00Z")),
    ("duration('0')", timedelta(0)), ("duration('-0')", timedelta(0)),
    ("duration('1h')", timedelta(hours=1)), ("duration('1h30m')", timedelta(minutes=90)),
    ("duration('1.5h')", timedelta(minutes=90)), ("duration('300s')", timedelta(minutes=5)),
    ("duration('-2h45m')", -timedelta(hours=2, minutes=45)),
    ("duration('+15m')", timedelta(minutes=15)), ("duration('100ms')", timedelta(milliseconds=100)),
    ("duration('1m1s1ms1us')", timedelta(minutes=1, seconds=1, milliseconds=1, microseconds=1)),
    ("duration('1µs')", timedelta(microseconds=1)), ("duration('1μs')", timedelta(microseconds=1)),
    ("duration('1.001s')", timedelta(seconds=1, milliseconds=1)),
    ("duration('.5s')", timedelta(milliseconds=500)), ("duration('5.s')", timedelta(seconds=5)),
    ("duration('1500ns')", timedelta(microseconds=1)),  # truncated to microseconds
    ("duration('999ns')", timedelta(0)), ("duration('-1500ns')", timedelta(microseconds=-1)),
    ("duration('1h1h')", timedelta(hours=2)),
    ("duration(duration('1h'))", timedelta(hours=1)),
    ("duration('2562047h')", timedelta(hours=2562047)),
])
def test_timestamp_and_duration_construction(source: str, expected: Any) -> None:
    check(source, expected)
    if isinstance(expected, datetime):
        assert ev(source).utcoffset() == timedelta(0)


@pytest.mark.parametrize(("source", "message"), [
    ("timestamp('2024-01-31 09:30:00Z')", "invalid timestamp"),
    ("timestamp('2024-01-31T09:30:00')", "invalid timestamp"),
    ("timestamp('2024-1-31T09:30:00Z')", "invalid timestamp"),
    ("timestamp('2024-02-30T00:00:00Z')", "invalid or out of range timestamp"),
    ("timestamp('0000-01-01T00:00:00Z')", "invalid or out of range timestamp"),
    ("timestamp('10000-01-01T00:00:00Z')", "invalid timestamp"),
    ("timestamp('0001-01-01T00:00:00+01:00')", "invalid or out of range timestamp"),
    ("timestamp('2024-01-31T24:00:00Z')", "invalid or out of range timestamp"),
    ("timestamp('2024-01-31T09:30:00+24:00')", "bad UTC offset"),
    ("timestamp('')", "invalid timestamp"),
    ("timestamp(1.5)", "no matching overload for 'timestamp' on (double)"),
    ("timestamp(true)", "no matching overload for 'timestamp' on (bool)"),
    ("timestamp(999999999999)", "timestamp out of range"),
    ("duration('')", "invalid duration"),
    ("duration('1')", "invalid duration"),
    ("duration('1d')", "invalid duration"),
    ("duration('h')", "invalid duration"),
    ("duration('.s')", "invalid duration"),
    ("duration('-')", "invalid duration"),
    ("duration('1h 30m')", "invalid duration"),
    ("duration('2562048h')", "duration out of range"),
    ("duration('320000000000s')", "duration out of range"),
    ("duration(3600)", "no matching overload for 'duration' on (int)"),
])
def test_timestamp_and_duration_errors(source: str, message: str) -> None:
    assert message in eval_error(source)


@pytest.mark.parametrize(("source", "expected"), [
    ("timestamp('2024-01-01T00:00:00Z') + duration('1h')", ts("2024-01-01T01:00:00Z")),
    ("duration('1h') + timestamp('2024-01-01T00:00:00Z')", ts("2024-01-01T01:00:00Z")),
    ("timestamp('2024-01-01T00:00:00Z') - duration('1s')", ts("2023-12-31T23:59:59Z")),
    ("timestamp('2024-01-02T00:00:00Z') - timestamp('2024-01-01T00:00:00Z')",
     timedelta(days=1)),
    ("timestamp('2024-01-01T00:00:00Z') - timestamp('2024-01-02T00:00:00Z')",
     timedelta(days=-1)),
    ("duration('1h') + duration('30m')", timedelta(minutes=90)),
    ("duration('1h') - duration('2h')", timedelta(hours=-1)),
    ("timestamp(context.now) - timestamp(resource.created) < duration('24h')", True),
    ("timestamp(context.now) - timestamp(resource.created) > duration('1h')", True),
    ("x + duration('1h') > x", True),
    ("x - y", timedelta(hours=1, minutes=30)),
])
def test_time_arithmetic(source: str, expected: Any) -> None:
    check(source, expected, x=datetime(2024, 1, 1, 12, tzinfo=UTC),
          y=datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=1, minutes=30))))


@pytest.mark.parametrize(("source", "message"), [
    ("timestamp('9999-12-31T23:59:59Z') + duration('1s')", "timestamp out of range"),
    ("timestamp('0001-01-01T00:00:00Z') - duration('1s')", "timestamp out of range"),
    ("timestamp('9999-12-31T23:59:59Z') - timestamp('0001-01-01T00:00:00Z')",
     "duration out of range"),
    ("duration('2000000h') + duration('2000000h')", "duration out of range"),
    ("timestamp('2024-01-01T00:00:00Z') + timestamp('2024-01-01T00:00:00Z')",
     "no matching overload for '+' on (timestamp, timestamp)"),
    ("duration('1h') - timestamp('2024-01-01T00:00:00Z')",
     "no matching overload for '-' on (duration, timestamp)"),
    ("duration('1h') * 2", "no matching overload for '*' on (duration, int)"),
    ("timestamp('2024-01-01T00:00:00Z') + 1", "no matching overload for '+' on (timestamp, int)"),
])
def test_time_arithmetic_errors(source: str, message: str) -> None:
    assert eval_error(source) == message


_T = "timestamp('2009-02-13T23:31:30.123456Z')"


def _has_time_zone_database() -> bool:
    try:
        ZoneInfo("Australia/Sydney")
    except (ZoneInfoNotFoundError, OSError):
        return False
    return True


_needs_tzdata = pytest.mark.skipif(not _has_time_zone_database(),
                                   reason="no time zone database (install tzdata)")


@pytest.mark.parametrize(("source", "expected"), [
    (f"{_T}.getFullYear()", 2009), (f"{_T}.getMonth()", 1), (f"{_T}.getDate()", 13),
    (f"{_T}.getDayOfMonth()", 12), (f"{_T}.getDayOfWeek()", 5), (f"{_T}.getDayOfYear()", 43),
    (f"{_T}.getHours()", 23), (f"{_T}.getMinutes()", 31), (f"{_T}.getSeconds()", 30),
    (f"{_T}.getMilliseconds()", 123),
    pytest.param(f"{_T}.getDate('Australia/Sydney')", 14, marks=_needs_tzdata),
    pytest.param(f"{_T}.getDayOfMonth('US/Central')", 12, marks=_needs_tzdata),
    (f"{_T}.getDayOfMonth('+11:00')", 13), (f"{_T}.getHours('02:00')", 1),
    (f"{_T}.getSeconds('-00:00')", 30),
    pytest.param(f"{_T}.getMinutes('Asia/Kathmandu')", 16, marks=_needs_tzdata),
    (f"{_T}.getFullYear('-09:30')", 2009),
    pytest.param(f"{_T}.getDayOfWeek('UTC')", 5, marks=_needs_tzdata),
    ("timestamp('2009-02-13T02:00:00Z').getDayOfMonth('-02:30')", 11),
    ("x.getHours()", 2),  # in UTC, whatever zone the datetime carries
    ("x.getHours('+03:00')", 5),
    ("duration('10000s').getHours()", 2), ("duration('3730s').getMinutes()", 62),
    ("duration('3730s').getSeconds()", 3730), ("duration('123.321456s').getMilliseconds()", 321),
    ("duration('-90s').getMinutes()", -1), ("duration('-1.5s').getMilliseconds()", -500),
])
def test_time_accessors(source: str, expected: int) -> None:
    check(source, expected, x=datetime(2023, 1, 1, 5, tzinfo=timezone(timedelta(hours=3))))


@pytest.mark.parametrize(("source", "message"), [
    (f"{_T}.getHours('Mars/Olympus')", "unknown time zone 'Mars/Olympus'"),
    (f"{_T}.getHours('../../etc/passwd')", "unknown time zone '../../etc/passwd'"),
    (f"{_T}.getHours(1)", "a time zone must be a string, got 'int'"),
    ("duration('1h').getHours('UTC')", "no matching overload for 'getHours' on (duration, string)"),
    ("duration('1h').getFullYear()", "no matching overload for 'getFullYear' on (duration)"),
    ("'2024'.getFullYear()", "no matching overload for 'getFullYear' on (string)"),
])
def test_time_accessor_errors(source: str, message: str) -> None:
    assert eval_error(source) == message


def test_naive_datetimes_and_out_of_range_durations_are_rejected() -> None:
    naive = datetime(2024, 1, 1)
    message = eval_error("x < timestamp('2024-01-01T00:00:00Z')", x=naive)
    assert message == "a timestamp must carry a time zone (got a naive datetime)"
    assert eval_error("x.getHours()", x=naive).startswith("a timestamp must carry a time zone")
    assert eval_error("x + duration('1s')", x=timedelta(days=200_000)) == "duration out of range"


# -- conversions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("int(42)", 42), ("int(1.9)", 1), ("int(-1.9)", -1), ("int(-3.5)", -3), ("int(11.5)", 11),
    ("int('42')", 42), ("int('-17')", -17), ("int('+5')", 5), ("int('007')", 7),
    ("int('9223372036854775807')", INT64_MAX), ("int('-9223372036854775808')", INT64_MIN),
    ("int(double(36028797018963969))", 36028797018963968),
    ("int(timestamp('2009-02-13T23:31:30Z'))", 1234567890),
    ("int(timestamp('1969-12-31T23:59:59.5Z'))", -1),
    ("double(1)", 1.0), ("double(-5)", -5.0), ("double(2.5)", 2.5), ("double('1.5')", 1.5),
    ("double('-987.654')", -987.654), ("double('6.02214e23')", 6.02214e23), ("double('.5')", 0.5),
    ("double('1.')", 1.0), ("double('+1')", 1.0), ("double('-0.0')", -0.0),
    ("double('inf')", math.inf), ("double('-Infinity')", -math.inf), ("double('NaN')", math.nan),
    ("double(9223372036854775807)", 9.223372036854775807e18),
    ("string('x')", "x"), ("string(123)", "123"), ("string(-456)", "-456"),
    ("string(123.456)", "123.456"), ("string(-4.5e-3)", "-0.0045"), ("string(1.0)", "1"),
    ("string(1e20)", "1e+20"), ("string(1e-7)", "1e-07"), ("string(123456.0)", "123456"),
    ("string(1234567.0)", "1.234567e+06"), ("string(0.0001)", "0.0001"),
    ("string(-0.0)", "-0"), ("string(1.0 / 0.0)", "+Inf"), ("string(0.0 / 0.0)", "NaN"),
    ("string(true)", "true"), ("string(false)", "false"),
    ("string(b'abc')", "abc"), ("string(b'\\303\\277')", "ÿ"),
    ("string(timestamp('2009-02-13T23:31:30Z'))", "2009-02-13T23:31:30Z"),
    ("string(timestamp('2009-02-13T23:31:30.120Z'))", "2009-02-13T23:31:30.12Z"),
    ("string(timestamp('2009-02-14T00:31:30+01:00'))", "2009-02-13T23:31:30Z"),
    ("string(duration('1h'))", "3600s"), ("string(duration('1000000s'))", "1000000s"),
    ("string(duration('-1.5s'))", "-1.5s"), ("string(duration('1us'))", "0.000001s"),
    ("dyn(1)", 1), ("dyn([1])", [1]), ("dyn(context.risk) == 2", True),
])
def test_conversions(source: str, expected: Any) -> None:
    check(source, expected)


@pytest.mark.parametrize(("source", "message"), [
    ("int(9223372036854775807.0)", "int conversion out of range"),
    ("int(-9223372036854775808.0)", "int conversion out of range"),
    ("int(1e99)", "int conversion out of range"),
    ("int(0.0 / 0.0)", "int conversion out of range"),
    ("int(1.0 / 0.0)", "int conversion out of range"),
    ("int('9223372036854775808')", "int conversion out of range"),
    ("int('1.5')", "cannot convert '1.5' to int"),
    ("int(' 1')", "cannot convert ' 1' to int"),
    ("int('1_000')", "cannot convert '1_000' to int"),
    ("int('\u0663')", "cannot convert"),  # a non-ASCII digit
    ("int('')", "cannot convert '' to int"),
    ("int('0x10')", "cannot convert '0x10' to int"),
    ("int(true)", "no matching overload for 'int' on (bool)"),
    ("int(null)", "no matching overload for 'int' on (null_type)"),
    ("double('1e400')", "double conversion out of range"),
    ("double('abc')", "cannot convert 'abc' to double"),
    ("double(' 1')", "cannot convert ' 1' to double"),
    ("double('1_0')", "cannot convert '1_0' to double"),
    ("double('0x10')", "cannot convert '0x10' to double"),
    ("double('')", "cannot convert '' to double"),
    ("double(true)", "no matching overload for 'double' on (bool)"),
    ("string(null)", "no matching overload for 'string' on (null_type)"),
    ("string([1])", "no matching overload for 'string' on (list)"),
    ("string(b'\\xff')", "invalid UTF-8 in bytes converted to string"),
])
def test_conversion_errors(source: str, message: str) -> None:
    assert message in eval_error(source)


def test_huge_numbers_in_strings() -> None:
    assert eval_error("int(x)", x="9" * 5000) == "int conversion out of range"
    assert eval_error("duration(x)", x="9" * 200 + "s") == "duration out of range"
    assert "longer than 256 characters" in eval_error("duration(x)", x="0h" * 10_000_000)
    assert ev("duration(x)", x="0h" * 127 + "1s") == timedelta(seconds=1)


def test_long_strings_are_shortened_in_messages() -> None:
    message = eval_error("int(x)", x="y" * 1000)
    assert len(message) < 100
    assert message.startswith("cannot convert 'yyyy")


# -- compile-time errors and positions ----------------------------------------------------------


@pytest.mark.parametrize(("source", "message", "line", "column"), [
    ("", "empty condition", 1, 1),
    ("   // just a comment", "empty condition", 1, 1),
    ("resource.tenant ==", "unexpected end of input", 1, 19),
    ("resource.tenant == == 'x'", "unexpected '=='", 1, 20),
    ("resource.tenant = 'x'", "use '==' to compare", 1, 17),
    ("a & b", "use '&&'", 1, 3),
    ("true | false", "use '||'", 1, 6),
    ("(1 + 2", "expected ')' to close the parenthesis", 1, 7),
    ("[1, 2", "expected ',' or ']' in a list", 1, 6),
    ("{'a' 1}", "expected ':' between a map key and its value", 1, 6),
    ("{'a': 1 'b': 2}", "expected ',' or '}' in a map", 1, 9),
    ("f(1,", "unexpected end of input", 1, 5),
    ("size(1 2)", "expected ',' or ')' in the arguments of size()", 1, 8),
    ("1 ? 2", "expected ':' in a conditional", 1, 6),
    ("1 2", "unexpected '2' after a complete expression", 1, 3),
    ("resource.", "expected a field name after '.'", 1, 10),
    ("resource.true", "expected a field name after '.'", 1, 10),
    ("resource.in", "expected a field name after '.'", 1, 10),
    ("@", "unexpected character '@'", 1, 1),
    ("resource.tenant == 'x' &&\n  principal.id # 'y'", "unexpected character '#'", 2, 16),
    ("resource.tenant == 'x' &&\n  foo.bar", "unknown variable 'foo'", 2, 3),
    ("// comment\nresource.tenant ==\n\n  undefined", "unknown variable 'undefined'", 4, 3),
    ("'é' == x", "unknown variable 'x'", 1, 8),  # columns count characters
    ("if", "'if' is a reserved word", 1, 1),
    ("in", "'in' is a reserved word", 1, 1),
    ("x.package", "unknown variable 'x'", 1, 1),
    ("Type{a: 1}", "message construction", 1, 5),
    (".resource", "leading '.'", 1, 1),
    ("-!true", "'!' cannot follow '-'", 1, 2),
    ("!-true", "'-' cannot follow '!'", 1, 2),
    ("'abc'.matches('a.*')", "matches() is not supported", 1, 7),
    ("matches('abc', 'a')", "matches() is not supported", 1, 1),
    ("resource.tags.all(k, k == 'a')", "the all() macro is not supported", 1, 15),
    ("[1].exists(x, x > 0)", "the exists() macro is not supported", 1, 5),
    ("map(x, y)", "the map() macro is not supported", 1, 1),
    ("foo(1)", "unknown function 'foo'", 1, 1),
    ("type(1)", "unknown function 'type'", 1, 1),
    ("uint(1)", "unknown function 'uint'", 1, 1),
    ("'a'.foo()", "unknown method 'foo'", 1, 5),
    ("'a'.int()", "int() is a function: call it as int(value)", 1, 5),
    ("startsWith('a', 'b')", "startsWith() is a method", 1, 1),
    ("size()", "size() takes 1 argument, got 0", 1, 1),
    ("size(1, 2)", "size() takes 1 argument, got 2", 1, 1),
    ("'a'.size(1)", "size() takes 0 arguments, got 1", 1, 5),
    ("'a'.startsWith()", "startsWith() takes 1 argument, got 0", 1, 5),
    ("'a'.contains('a', 'b')", "contains() takes 1 argument, got 2", 1, 5),
    ("int()", "int() takes 1 argument, got 0", 1, 1),
    ("x.getHours(1, 2)", "getHours() takes 0 or 1 arguments, got 2", 1, 3),
    ("timestamp('a', 'b')", "timestamp() takes 1 argument, got 2", 1, 1),
])
def test_syntax_errors(source: str, message: str, line: int, column: int) -> None:
    error = syntax_error(source, frozenset({"principal", "resource"}))
    assert message in error.message
    assert (error.line, error.column) == (line, column), error
    assert error.source == source
    assert (error.line, error.column) == line_column(source, error.offset)
    assert str(error) == f"{error.message} (line {line}, column {column})"


def test_variables_are_configurable() -> None:
    cond = compile_condition("subject.age >= 18", variables=frozenset({"subject"}))
    assert cond({"subject": {"age": 20}}) is True
    error = syntax_error("resource.x", frozenset({"subject"}))
    assert error.message == "unknown variable 'resource' (known: subject)"
    assert syntax_error("x", frozenset()).message == "unknown variable 'x' (known: none)"


def test_default_variables() -> None:
    for name in ("principal", "resource", "action", "context"):
        compile_condition(name)
    assert "unknown variable 'request'" in syntax_error("request.x").message


def test_source_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="a condition must be a string"):
        compile_condition(b"true")  # type: ignore[arg-type]


def test_line_column() -> None:
    assert line_column("", 0) == (1, 1)
    assert line_column("abc", 2) == (1, 3)
    assert line_column("a\nbc", 2) == (2, 1)
    assert line_column("a\nbc", 3) == (2, 2)
    assert line_column("a\n", 2) == (2, 1)
    assert line_column("abc", 99) == (1, 4)
    assert line_column("abc", -5) == (1, 1)


# -- limits ------------------------------------------------------------------------------------------


def test_source_length_limit() -> None:
    ok = "true" + " " * (MAX_SOURCE_LENGTH - 4)
    assert compile_condition(ok)({}) is True
    error = syntax_error(ok + " ")
    assert error.message == f"condition longer than {MAX_SOURCE_LENGTH} characters"
    assert error.offset == MAX_SOURCE_LENGTH
    huge = "a" * 10_000_000
    assert syntax_error(huge).message.startswith("condition longer than")


@pytest.mark.parametrize("source", [
    "(" * 100 + "1" + ")" * 100,
    "[" * 100 + "]" * 100,
    "{'a': " * 100 + "1" + "}" * 100,
    "size(" * 100 + "'a'" + ")" * 100,
    "!" * 1000 + "true",
    "-" * 1000 + "x",
    "x" + ".a" * 200,
    "x" + "[0]" * 200,
    "1" + " + 1" * 1000,
    "1" + " ? 1 : 1" * 100,
    "x.startsWith(" * 100 + "'a'" + ")" * 100,
    "(" * 3000,
    "[" * 3000,
    "-" * 4000 + "1",
])
def test_deep_nesting_is_a_syntax_error_not_a_recursion_error(source: str) -> None:
    error = syntax_error(source, frozenset({"x"}))
    assert error.message.startswith("expression nested too deeply")


def test_nesting_within_the_limit_works() -> None:
    depth = MAX_DEPTH - 2
    assert ev("(" * depth + "1" + ")" * depth) == 1
    assert same(ev("[" * depth + "]" * depth), ev("[" * depth + "]" * depth))
    assert ev("!" * (MAX_DEPTH - 2) + "true") is True
    assert ev("x" + ".a" * 30, x=_nested_map(30)) == "leaf"
    assert ev(" + ".join(["1"] * 32)) == 32


def _nested_map(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def test_long_logical_chains_are_flat() -> None:
    # && and || chains do not nest: a long chain is within the depth limit.
    chain = " && ".join(["t"] * 800)
    assert ev(chain, t=True) is True
    assert ev(chain + " && f", t=True, f=False) is False
    assert ev("f || " * 800 + "t", t=True, f=False) is True
    assert "no such key" in eval_error(chain + " && context.missing", t=True)


@pytest.mark.parametrize("leaf", ["x", "context.missing", "1 / 0 == 1"])
def test_errors_under_nested_logic_are_evaluated_once(leaf: str) -> None:
    # && and || nested alternately do not flatten; an error at the bottom must not make
    # every level re-evaluate its operands (that would be exponential in the depth).
    source = leaf
    for _ in range(30):
        source = f"(context.t && ({source} || context.f))"
    calls: list[str] = []

    class Counting(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            calls.append(key)
            return super().get(key, default)

    context = Counting(t=True, f=False)
    with pytest.raises(CelEvalError):
        ev(source, x=1, context=context)
    assert len(calls) < 500


def test_very_long_lists() -> None:
    source = "[" + ",".join(["1"] * 2000) + "]"
    assert len(source) <= MAX_SOURCE_LENGTH
    assert ev(f"size({source})") == 2000


def test_deeply_nested_values_are_an_evaluation_error() -> None:
    deep: list[Any] = []
    for _ in range(sys.getrecursionlimit() * 2):
        deep = [deep]
    with pytest.raises(CelEvalError, match="value nested too deeply"):
        ev("x == y", x=deep, y=deep)


# -- references -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "expected"), [
    ("true", []),
    ("resource.tenant", [("resource", ("tenant",), 0, False)]),
    ("has(resource.tenant) && resource.tenant != principal.tenant", [
        ("resource", ("tenant",), 4, True), ("resource", ("tenant",), 24, False),
        ("principal", ("tenant",), 43, False)]),
    ("resource.owner.id == principal.id", [
        ("resource", ("owner", "id"), 0, False), ("principal", ("id",), 21, False)]),
    ("resource['owner'].id", [("resource", ("owner", "id"), 0, False)]),
    ("resource.items[0].name", [("resource", ("items",), 0, False)]),
    ("resource.items[context.i]", [("resource", ("items",), 0, False),
                                   ("context", ("i",), 15, False)]),
    ("action == 'read'", [("action", (), 0, False)]),
    ("principal.id.startsWith('svc-')", [("principal", ("id",), 0, False)]),
    ("size(context.args.recipients) > 10", [("context", ("args", "recipients"), 5, False)]),
    ("has(resource.owner.id)", [("resource", ("owner", "id"), 4, True)]),
    ("x ? resource.a : [principal.b, {context.c: resource.d}]", [
        ("x", (), 0, False), ("resource", ("a",), 4, False), ("principal", ("b",), 18, False),
        ("context", ("c",), 32, False), ("resource", ("d",), 43, False)]),
    ("resource.a\n  && resource.b", [("resource", ("a",), 0, False),
                                    ("resource", ("b",), 16, False)]),
    ("{'a': 1}.a == 1", []),
    ("-resource.n < 0 && !context.flag", [("resource", ("n",), 1, False),
                                          ("context", ("flag",), 20, False)]),
    ("timestamp(context.now).getHours(principal.tz)", [
        ("context", ("now",), 10, False), ("principal", ("tz",), 32, False)]),
])
def test_references(source: str, expected: list[tuple[str, tuple[str, ...], int, bool]]) -> None:
    cond = compile_condition(source, variables=frozenset(
        {"principal", "resource", "action", "context", "x"}))
    assert cond.references == tuple(FieldRef(*ref) for ref in expected)
    for ref in cond.references:
        assert source.startswith(ref.variable, ref.offset)


def test_reference_offsets_give_line_and_column() -> None:
    source = "resource.a == 1 &&\n    context.b"
    ref = compile_condition(source).references[1]
    assert line_column(source, ref.offset) == (2, 5)


# -- the Condition object and the error classes -----------------------------------------------------


def test_condition_object() -> None:
    cond = compile_condition("resource.tenant == 'acme'")
    assert isinstance(cond, Condition)
    assert cond.source == "resource.tenant == 'acme'"
    assert cond.variables == frozenset({"principal", "resource", "action", "context"})
    assert repr(cond) == "Condition(\"resource.tenant == 'acme'\")"
    assert cond(ACTIVATION) is True
    assert cond({**ACTIVATION, "resource": {"tenant": "other"}}) is False
    with pytest.raises(AttributeError):
        cond.unknown = 1  # type: ignore[attr-defined]


def test_conditions_pickle_and_copy_by_recompiling() -> None:
    cond = compile_condition("x.a == 1 && has(x.b)", variables=frozenset({"x"}))
    for clone in (pickle.loads(pickle.dumps(cond)), copy.deepcopy(cond), copy.copy(cond)):
        assert clone.source == cond.source
        assert clone.variables == frozenset({"x"})
        assert clone.references == cond.references
        assert clone({"x": {"a": 1, "b": 2}}) is True


def test_error_classes() -> None:
    assert issubclass(CelSyntaxError, InvalidInputError)
    assert issubclass(CelSyntaxError, ValueError)
    assert issubclass(CelEvalError, ConditionError)
    error = syntax_error("1 +")
    assert isinstance(error.message, str)
    assert isinstance(error.offset, int)
    with pytest.raises(CelEvalError) as info:
        compile_condition("1 / 0")({})
    assert info.value.message == "division by zero"
    assert str(info.value) == "division by zero"


def test_failing_folded_constants_fail_at_evaluation_not_compilation() -> None:
    cond = compile_condition("1 / 0 == 1")
    with pytest.raises(CelEvalError, match="division by zero"):
        cond({})
    assert compile_condition("false && 1 / 0 == 1")({}) is False
    assert compile_condition("1 / 0 == 1 || true")({}) is True
    cond = compile_condition("int('x') == 1 || x", variables=frozenset({"x"}))
    assert cond({"x": True}) is True


class _ExplodingMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize(("source", "value", "message"), [
    ("x == 1", object(), "unsupported value of Python type 'object'"),
    ("x == 1", {1, 2}, "unsupported value of Python type 'set'"),
    ("size(x)", {1, 2}, "unsupported value of Python type 'set'"),
    ("x < 1", 1j, "unsupported value of Python type 'complex'"),
    ("x.a", _ExplodingMapping(), "evaluation failed: RuntimeError: boom"),
    ("x == {'a': 1}", _ExplodingMapping(), "evaluation failed: RuntimeError: boom"),
    ("'a' in x", _ExplodingMapping(), "evaluation failed: RuntimeError: boom"),
    ("x + 1", 2**70, "int overflow"),
])
def test_foreign_values_raise_only_cel_eval_error(source: str, value: Any, message: str) -> None:
    assert message in eval_error(source, x=value)


def test_activation_that_is_not_a_mapping() -> None:
    cond = compile_condition("resource.tenant == 'x'")
    with pytest.raises(CelEvalError):
        cond(None)  # type: ignore[arg-type]
    with pytest.raises(CelEvalError):
        cond(["resource"])  # type: ignore[arg-type]


def test_subclasses_of_builtin_types_are_their_cel_types() -> None:
    class Name(str):
        pass

    class Count(int):
        pass

    check("x == 'a'", True, x=Name("a"))
    check("x + 'b'", "ab", x=Name("a"))
    check("x < 'b'", True, x=Name("a"))
    check("x in ['a']", True, x=Name("a"))
    check("x.startsWith('a')", True, x=Name("abc"))
    check("size(x)", 3, x=Name("abc"))
    check("x == 3", True, x=Count(3))
    check("x + 1", 4, x=Count(3))
    check("x in [3]", True, x=Count(3))
    check("x < 4", True, x=Count(3))


# -- properties --------------------------------------------------------------------------------------

_TOKENS = st.sampled_from([
    "resource", "principal", "context", "action", ".", "tenant", "id", "[", "]", "(", ")",
    "{", "}", ",", ":", "?", "!", "-", "+", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=",
    "&&", "||", " in ", "1", "0", "-9223372036854775808", "2.5", "'a'", '"b"', "true",
    "false", "null", "has", "size", "int", "string", "timestamp", "duration", "startsWith",
    " ", "\n", "'", '"', "\\", "0x", "1e", "b'", "r'", "'''", "matches", "u",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKENS, max_size=40).map("".join) | st.text(max_size=60))
def test_compile_raises_only_syntax_errors_and_evaluation_only_eval_errors(source: str) -> None:
    try:
        cond = compile_condition(source)
    except CelSyntaxError as exc:
        error: CelSyntaxError | None = exc
    else:
        error = None
    if error is not None:
        assert 0 <= error.offset <= len(source)
        assert (error.line, error.column) == line_column(source, error.offset)
        return
    for activation in ({}, ACTIVATION):
        try:
            cond(activation)
        except CelEvalError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(_TOKENS, max_size=40).map("".join))
def test_references_name_every_variable_a_condition_reads(source: str) -> None:
    # The evaluator binds only the variables that appear in references.
    try:
        cond = compile_condition(source)
    except CelSyntaxError:
        return
    used = {ref.variable for ref in cond.references}
    restricted = {name: value for name, value in ACTIVATION.items() if name in used}

    def outcome(activation: Mapping[str, Any]) -> Any:
        try:
            return ("value", cond(activation))
        except CelEvalError as error:
            return ("error", error.message)

    assert repr(outcome(restricted)) == repr(outcome(ACTIVATION))  # repr: NaN equals NaN
