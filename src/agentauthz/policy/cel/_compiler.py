"""Compile a syntax tree to nested Python closures.

Each node becomes a function ``activation -> value``. Literal subtrees are
folded to constants at compile time (a folding that fails is left to fail at
run time, so ``false && 1/0 > 0`` still evaluates to false). The closures
inline the common cases -- ``dict`` field access, ``str``/``int`` comparison,
membership in a literal list as a ``frozenset`` test -- and defer everything
else to :mod:`._runtime`, which holds the full CEL semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from agentauthz.policy.cel import _runtime as rt
from agentauthz.policy.cel._ast import (
    Binary,
    Call,
    Conditional,
    Ident,
    Index,
    ListLit,
    Literal,
    Logical,
    MapLit,
    Node,
    Select,
    Unary,
)
from agentauthz.policy.cel._errors import CelEvalError, CelSyntaxError
from agentauthz.policy.cel._parser import INT64_MAX, INT64_MIN

__all__ = ["Evaluate", "compile_tree"]

Evaluate = Callable[[Mapping[str, Any]], Any]

_EMPTY: Final[Mapping[str, Any]] = {}

# name -> (minimum, maximum) number of arguments.
_FUNCTIONS: Final = {
    "size": (1, 1), "int": (1, 1), "double": (1, 1), "string": (1, 1),
    "timestamp": (1, 1), "duration": (1, 1), "dyn": (1, 1), "has": (1, 1),
}
_METHODS: Final = {
    "size": (0, 0), "startsWith": (1, 1), "endsWith": (1, 1), "contains": (1, 1),
    **dict.fromkeys(rt.TIME_ACCESSORS, (0, 1)),
}
_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})
_CONVERSIONS: Final[dict[str, Callable[[Any], Any]]] = {
    "int": rt.to_int, "double": rt.to_double, "string": rt.to_string,
    "timestamp": rt.to_timestamp, "duration": rt.to_duration,
}


@dataclass(frozen=True, slots=True)
class _Compiled:
    fn: Evaluate
    const: bool = False
    value: Any = None
    #: (variable, field) when ``fn`` reads ``variable.field``: consumers inline the read.
    field1: tuple[str, str] | None = None


def compile_tree(node: Node, source: str, variables: frozenset[str]) -> Evaluate:
    """The closure evaluating ``node``; raises :class:`CelSyntaxError` for names and
    calls the subset does not know."""
    root = _Compiler(source, variables).compile(node)
    if root.const and isinstance(root.value, (tuple, MappingProxyType)):
        # A constant list or map result: hand out a fresh mutable copy each time.
        value = root.value
        thaw = rt.thaw

        def constant_copy(act: Mapping[str, Any]) -> Any:
            return thaw(value)

        return constant_copy
    return root.fn


def _constant(value: Any) -> _Compiled:
    frozen = rt.freeze(value)

    def constant(act: Mapping[str, Any]) -> Any:
        return frozen

    return _Compiled(constant, True, frozen)


def _fold(fn: Evaluate) -> _Compiled:
    """``fn`` (whose inputs are all constants) evaluated now, if it succeeds."""
    try:
        return _constant(fn(_EMPTY))
    except Exception:  # the error belongs to evaluation time (it may be absorbed)
        return _Compiled(fn)


class _Compiler:
    def __init__(self, source: str, variables: frozenset[str]) -> None:
        self.source = source
        self.variables = variables

    def error(self, message: str, offset: int) -> CelSyntaxError:
        return CelSyntaxError(message, self.source, offset)

    def compile(self, node: Node) -> _Compiled:
        if isinstance(node, Literal):
            return _constant(node.value)
        if isinstance(node, Ident):
            return self.ident(node)
        if isinstance(node, Select):
            return self.select(node)
        if isinstance(node, Index):
            return self.index(node)
        if isinstance(node, Logical):
            return self.logical(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Conditional):
            return self.conditional(node)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, ListLit):
            return self.list_literal(node)
        if isinstance(node, MapLit):
            return self.map_literal(node)
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    # -- names and fields ------------------------------------------------------------

    def check_variable(self, node: Ident) -> None:
        if node.name not in self.variables:
            known = ", ".join(sorted(self.variables)) or "none"
            raise self.error(f"unknown variable {node.name!r} (known: {known})", node.offset)

    def ident(self, node: Ident) -> _Compiled:
        self.check_variable(node)
        return _Compiled(_variable(node.name))

    def select(self, node: Select) -> _Compiled:
        fields: list[str] = []
        root: Node = node
        while isinstance(root, Select):
            fields.append(root.field)
            root = root.operand
        if isinstance(root, Ident):
            self.check_variable(root)
            path = tuple(reversed(fields))
            field1 = (root.name, path[0]) if len(path) == 1 else None
            return _Compiled(_path(root.name, path), field1=field1)
        operand = self.compile(node.operand)
        result = _Compiled(_select(operand.fn, node.field))
        return _fold(result.fn) if operand.const else result

    def index(self, node: Index) -> _Compiled:
        container = self.compile(node.operand)
        key = self.compile(node.index)
        result = _Compiled(_index(container.fn, key))
        return _fold(result.fn) if container.const and key.const else result

    # -- operators --------------------------------------------------------------------

    def logical(self, node: Logical) -> _Compiled:
        is_and = node.op == "&&"
        absorbing = not is_and  # false absorbs &&, true absorbs ||
        operands = [self.compile(operand) for operand in node.operands]
        for operand in operands:
            if operand.const and operand.value is absorbing:
                return _constant(absorbing)
        dynamic = [o.fn for o in operands if not (o.const and o.value is (not absorbing))]
        if not dynamic:
            return _constant(not absorbing)
        fn = _and(tuple(dynamic)) if is_and else _or(tuple(dynamic))
        if all(o.const for o in operands):
            return _fold(fn)
        return _Compiled(fn)

    def unary(self, node: Unary) -> _Compiled:
        operand = self.compile(node.operand)
        fn = _not(operand.fn) if node.op == "!" else _negate(operand.fn)
        return _fold(fn) if operand.const else _Compiled(fn)

    def conditional(self, node: Conditional) -> _Compiled:
        condition = self.compile(node.condition)
        then = self.compile(node.then)
        otherwise = self.compile(node.otherwise)
        if condition.const and condition.value is True:
            return then
        if condition.const and condition.value is False:
            return otherwise
        return _Compiled(_conditional(condition.fn, then.fn, otherwise.fn))

    def binary(self, node: Binary) -> _Compiled:
        left = self.compile(node.left)
        right = self.compile(node.right)
        op = node.op
        if op == "in":
            fn = _in(left, right)
        elif op in ("==", "!="):
            fn = _equality(op, left, right)
        elif op in _ORDERING:
            fn = _ordering(op, left, right)
        else:
            fn = _ARITHMETIC[op](left.fn, right.fn)
        if left.const and right.const:
            return _fold(fn)
        return _Compiled(fn)

    # -- calls -----------------------------------------------------------------------

    def call(self, node: Call) -> _Compiled:
        name = node.name
        if name == "matches":
            raise self.error("matches() is not supported: regular expressions are excluded "
                             "from conditions (ReDoS risk); use startsWith(), endsWith() or "
                             "contains()", node.offset)
        if node.target is None:
            return self.function(node)
        return self.method(node, node.target)

    def check_arity(self, node: Call, bounds: tuple[int, int], label: str) -> None:
        low, high = bounds
        count = len(node.args)
        if not low <= count <= high:
            expected = str(low) if low == high else f"{low} or {high}"
            plural = "" if low == high == 1 else "s"
            raise self.error(f"{label} takes {expected} argument{plural}, "
                             f"got {count}", node.offset)

    def function(self, node: Call) -> _Compiled:
        name = node.name
        bounds = _FUNCTIONS.get(name)
        if bounds is None:
            if name in _METHODS:
                raise self.error(f"{name}() is a method: call it as value.{name}(…)",
                                 node.offset)
            if name in _MACROS:
                raise self.error(f"the {name}() macro is not supported", node.offset)
            raise self.error(f"unknown function {name!r}", node.offset)
        self.check_arity(node, bounds, f"{name}()")
        if name == "has":
            return self.has(node)
        argument = self.compile(node.args[0])
        if name == "size":
            fn = _size(argument.fn)
        elif name == "dyn":
            return argument
        else:
            fn = _unary_function(_CONVERSIONS[name], argument.fn)
        return _fold(fn) if argument.const else _Compiled(fn)

    def has(self, node: Call) -> _Compiled:
        argument = node.args[0]
        if not isinstance(argument, Select):
            raise self.error("has() needs a field selection such as has(resource.tenant)",
                             node.offset)
        operand = self.compile(argument.operand)
        fn = _has(operand.fn, argument.field)
        return _fold(fn) if operand.const else _Compiled(fn)

    def method(self, node: Call, target_node: Node) -> _Compiled:
        name = node.name
        bounds = _METHODS.get(name)
        if bounds is None:
            if name in _MACROS:
                raise self.error(f"the {name}() macro is not supported", node.offset)
            if name in _FUNCTIONS:
                raise self.error(f"{name}() is a function: call it as {name}(value)",
                                 node.offset)
            raise self.error(f"unknown method {name!r}", node.offset)
        self.check_arity(node, bounds, f"{name}()")
        target = self.compile(target_node)
        args = [self.compile(arg) for arg in node.args]
        if name == "size":
            fn = _size(target.fn)
        elif name in ("startsWith", "endsWith", "contains"):
            fn = _string_method(name, target.fn, args[0])
        elif args:
            fn = _accessor_with_zone(name, target.fn, args[0].fn)
        else:
            fn = _accessor(name, target.fn)
        if target.const and all(arg.const for arg in args):
            return _fold(fn)
        return _Compiled(fn)

    # -- literals ---------------------------------------------------------------------

    def list_literal(self, node: ListLit) -> _Compiled:
        elements = [self.compile(e) for e in node.elements]
        if all(e.const for e in elements):
            return _constant([e.value for e in elements])
        fns = tuple(e.fn for e in elements)

        def make_list(act: Mapping[str, Any]) -> Any:
            return [f(act) for f in fns]

        return _Compiled(make_list)

    def map_literal(self, node: MapLit) -> _Compiled:
        entries = [(self.compile(k), self.compile(v)) for k, v in node.entries]
        fns = tuple((k.fn, v.fn) for k, v in entries)

        def make_map(act: Mapping[str, Any]) -> Any:
            return rt.build_map([(k(act), v(act)) for k, v in fns])

        if all(k.const and v.const for k, v in entries):
            return _fold(make_map)
        return _Compiled(make_map)


# -- closures: names, fields, indexing ------------------------------------------------------


def _variable(name: str) -> Evaluate:
    unbound = f"unbound variable {name!r}"

    def variable(act: Mapping[str, Any]) -> Any:
        try:
            return act[name]
        except KeyError:
            raise CelEvalError(unbound) from None

    return variable


def fetch(act: Mapping[str, Any], name: str, fields: tuple[str, ...]) -> Any:
    """``name.f1.f2…`` step by step, with the precise error for the step that fails."""
    try:
        v = act[name]
    except KeyError:
        raise CelEvalError(f"unbound variable {name!r}") from None
    for field in fields:
        if type(v) is dict:
            try:
                v = v[field]
            except KeyError:
                raise CelEvalError(f"no such key: {field!r}") from None
        else:
            v = rt.select_slow(v, field)
    return v


def _path(name: str, fields: tuple[str, ...]) -> Evaluate:
    """``name.f1.f2…`` fused into one closure.

    The fast path reads with ``.get`` (which, unlike subscripting, never calls a
    ``defaultdict``'s factory); a missing key or a value that is not a map
    re-reads step by step for the precise error.
    """
    missing = rt.MISSING
    if len(fields) == 1:
        (f1,) = fields

        def path1(act: Mapping[str, Any]) -> Any:
            try:
                v = act[name].get(f1, missing)
            except Exception:
                return fetch(act, name, fields)
            return fetch(act, name, fields) if v is missing else v

        return path1
    if len(fields) == 2:
        f1, f2 = fields

        def path2(act: Mapping[str, Any]) -> Any:
            try:
                v = act[name].get(f1, missing).get(f2, missing)
            except Exception:
                return fetch(act, name, fields)
            return fetch(act, name, fields) if v is missing else v

        return path2

    def path(act: Mapping[str, Any]) -> Any:
        try:
            v = act[name]
            for field in fields:
                v = v.get(field, missing)
        except Exception:
            return fetch(act, name, fields)
        return fetch(act, name, fields) if v is missing else v

    return path


def _select(operand: Evaluate, field: str) -> Evaluate:
    missing = f"no such key: {field!r}"

    def select(act: Mapping[str, Any]) -> Any:
        v = operand(act)
        if type(v) is dict:
            try:
                return v[field]
            except KeyError:
                raise CelEvalError(missing) from None
        return rt.select_slow(v, field)

    return select


def _has(operand: Evaluate, field: str) -> Evaluate:
    def has(act: Mapping[str, Any]) -> Any:
        v = operand(act)
        if type(v) is dict:
            return field in v
        return rt.has_slow(v, field)

    return has


def _index(container: Evaluate, key: _Compiled) -> Evaluate:
    if key.const and type(key.value) is str:
        k = key.value
        missing = f"no such key: {k!r}"

        def index_str(act: Mapping[str, Any]) -> Any:
            c = container(act)
            if type(c) is dict:
                try:
                    return c[k]
                except KeyError:
                    raise CelEvalError(missing) from None
            return rt.index(c, k)

        return index_str
    key_fn = key.fn

    def index(act: Mapping[str, Any]) -> Any:
        c = container(act)
        k = key_fn(act)
        tc = type(c)
        if tc is dict and type(k) is str:
            try:
                return c[k]
            except KeyError:
                raise CelEvalError(f"no such key: {k!r}") from None
        if (tc is list or tc is tuple) and type(k) is int:
            if 0 <= k < len(c):
                return c[k]
            raise CelEvalError(f"index out of range: {k}")
        return rt.index(c, k)

    return index


# -- closures: logic ----------------------------------------------------------------------


def _and(fns: tuple[Evaluate, ...]) -> Evaluate:
    """``&&`` with CEL's commutative error absorption: any false operand makes the
    result false, whatever errors or non-bool values the others produce.

    Operands are evaluated left to right, each at most once: the first false
    one decides; after an error (or a non-bool) the rest are still evaluated,
    since a later false absorbs it.
    """
    return _logic(fns, absorbing=False)


def _or(fns: tuple[Evaluate, ...]) -> Evaluate:
    """``||`` with error absorption: any true operand makes the result true."""
    return _logic(fns, absorbing=True)


def _logic(fns: tuple[Evaluate, ...], *, absorbing: bool) -> Evaluate:
    op = "||" if absorbing else "&&"
    neutral = not absorbing
    count = len(fns)
    as_eval_error = rt.as_eval_error
    no_overload = rt.no_overload

    def finish(start: int, error: BaseException, act: Mapping[str, Any]) -> Any:
        """The result once ``error`` happened before operand ``start``."""
        for i in range(start, count):
            try:
                if fns[i](act) is absorbing:
                    return absorbing
            except Exception:  # the first error is the one reported
                continue
        raise as_eval_error(error)

    if count == 2:
        f1, f2 = fns

        def logic2(act: Mapping[str, Any]) -> Any:
            try:
                a = f1(act)
            except Exception as exc:
                return finish(1, exc, act)
            if a is not neutral:
                if a is absorbing:
                    return absorbing
                return finish(1, no_overload(op, a), act)
            b = f2(act)
            if b is True or b is False:
                return b
            raise no_overload(op, b)

        return logic2
    if count == 3:
        g1, g2, g3 = fns

        def logic3(act: Mapping[str, Any]) -> Any:
            try:
                a = g1(act)
            except Exception as exc:
                return finish(1, exc, act)
            if a is not neutral:
                if a is absorbing:
                    return absorbing
                return finish(1, no_overload(op, a), act)
            try:
                b = g2(act)
            except Exception as exc:
                return finish(2, exc, act)
            if b is not neutral:
                if b is absorbing:
                    return absorbing
                return finish(2, no_overload(op, b), act)
            c = g3(act)
            if c is True or c is False:
                return c
            raise no_overload(op, c)

        return logic3

    def logic(act: Mapping[str, Any]) -> Any:
        for i in range(count):
            try:
                v = fns[i](act)
            except Exception as exc:
                return finish(i + 1, exc, act)
            if v is not neutral:
                if v is absorbing:
                    return absorbing
                return finish(i + 1, no_overload(op, v), act)
        return neutral

    return logic


def _not(operand: Evaluate) -> Evaluate:
    def not_(act: Mapping[str, Any]) -> Any:
        v = operand(act)
        if v is True:
            return False
        if v is False:
            return True
        raise rt.no_overload("!_", v)

    return not_


def _conditional(condition: Evaluate, then: Evaluate, otherwise: Evaluate) -> Evaluate:
    def conditional(act: Mapping[str, Any]) -> Any:
        c = condition(act)
        if c is True:
            return then(act)
        if c is False:
            return otherwise(act)
        raise rt.no_overload("_?_:_", c)

    return conditional


# -- closures: comparison -------------------------------------------------------------------
#
# A single-field path operand (``resource.tenant``) is read inline rather than
# through its own closure: ``act[name].get(field, missing)``, falling back to
# ``fetch`` (which raises the precise error) when that does not yield a value.


def _equality(op: str, left: _Compiled, right: _Compiled) -> Evaluate:
    negate = op == "!="
    if right.const and type(right.value) in rt.EQ_FAST_TYPES:
        return _equals_constant(left, right.value, negate)
    if left.const and type(left.value) in rt.EQ_FAST_TYPES:
        return _equals_constant(right, left.value, negate)
    equals = rt.equals
    fast_types = rt.EQ_FAST_TYPES
    if left.field1 is not None and right.field1 is not None and not negate:
        (n1, g1), (n2, g2) = left.field1, right.field1
        missing = rt.MISSING

        def equal_fields(act: Mapping[str, Any]) -> Any:
            try:
                a = act[n1].get(g1, missing)
                b = act[n2].get(g2, missing)
            except Exception:
                a = b = missing
            if a is missing:
                a = fetch(act, n1, (g1,))
            if b is missing:
                b = fetch(act, n2, (g2,))
            ta = type(a)
            if ta is type(b) and ta in fast_types:
                return a == b
            return equals(a, b)

        return equal_fields
    lf, rf = left.fn, right.fn
    if negate:
        def not_equal(act: Mapping[str, Any]) -> Any:
            a = lf(act)
            b = rf(act)
            ta = type(a)
            if ta is type(b) and ta in fast_types:
                return a != b
            return not equals(a, b)
        return not_equal

    def equal(act: Mapping[str, Any]) -> Any:
        a = lf(act)
        b = rf(act)
        ta = type(a)
        if ta is type(b) and ta in fast_types:
            return a == b
        return equals(a, b)

    return equal


def _equals_constant(operand: _Compiled, c: Any, negate: bool) -> Evaluate:
    tc = type(c)
    equals = rt.equals
    if operand.field1 is not None:
        name, f1 = operand.field1
        fields = (f1,)
        missing = rt.MISSING
        if negate:
            def field_not_equal_constant(act: Mapping[str, Any]) -> Any:
                try:
                    a = act[name].get(f1, missing)
                except Exception:
                    a = missing
                if a is missing:
                    a = fetch(act, name, fields)
                if type(a) is tc:
                    return a != c
                return not equals(a, c)
            return field_not_equal_constant

        def field_equal_constant(act: Mapping[str, Any]) -> Any:
            try:
                a = act[name].get(f1, missing)
            except Exception:
                a = missing
            if a is missing:
                a = fetch(act, name, fields)
            if type(a) is tc:
                return a == c
            return equals(a, c)
        return field_equal_constant
    fn = operand.fn
    if negate:
        def not_equal_constant(act: Mapping[str, Any]) -> Any:
            a = fn(act)
            if type(a) is tc:
                return a != c
            return not equals(a, c)
        return not_equal_constant

    def equal_constant(act: Mapping[str, Any]) -> Any:
        a = fn(act)
        if type(a) is tc:
            return a == c
        return equals(a, c)

    return equal_constant


_ORDERING: Final = {"<": rt.less, "<=": rt.less_equal, ">": rt.greater, ">=": rt.greater_equal}


def _ordering(op: str, left: _Compiled, right: _Compiled) -> Evaluate:
    slow = _ORDERING[op]
    if right.const and type(right.value) in (int, str):
        if left.field1 is not None:
            return _field_ordering_constant(op, left.field1, right.value)
        return _ordering_constant(op, left.fn, right.value)
    lf, rf = left.fn, right.fn

    def ordering(act: Mapping[str, Any]) -> Any:
        return slow(lf(act), rf(act))

    return ordering


def _ordering_constant(op: str, fn: Evaluate, c: Any) -> Evaluate:
    """``x <op> c`` for an int or string constant ``c``: inline when ``x`` has its type."""
    slow = _ORDERING[op]
    tc = type(c)
    if op == "<":
        def less(act: Mapping[str, Any]) -> Any:
            a = fn(act)
            return a < c if type(a) is tc else slow(a, c)
        return less
    if op == "<=":
        def less_equal(act: Mapping[str, Any]) -> Any:
            a = fn(act)
            return a <= c if type(a) is tc else slow(a, c)
        return less_equal
    if op == ">":
        def greater(act: Mapping[str, Any]) -> Any:
            a = fn(act)
            return a > c if type(a) is tc else slow(a, c)
        return greater

    def greater_equal(act: Mapping[str, Any]) -> Any:
        a = fn(act)
        return a >= c if type(a) is tc else slow(a, c)
    return greater_equal


def _field_ordering_constant(op: str, field1: tuple[str, str], c: Any) -> Evaluate:
    """``name.field <op> c`` with the field read inline."""
    slow = _ORDERING[op]
    tc = type(c)
    name, f1 = field1
    fields = (f1,)
    missing = rt.MISSING
    if op == "<":
        def field_less(act: Mapping[str, Any]) -> Any:
            try:
                a = act[name].get(f1, missing)
            except Exception:
                a = missing
            if a is missing:
                a = fetch(act, name, fields)
            return a < c if type(a) is tc else slow(a, c)
        return field_less
    if op == "<=":
        def field_less_equal(act: Mapping[str, Any]) -> Any:
            try:
                a = act[name].get(f1, missing)
            except Exception:
                a = missing
            if a is missing:
                a = fetch(act, name, fields)
            return a <= c if type(a) is tc else slow(a, c)
        return field_less_equal
    if op == ">":
        def field_greater(act: Mapping[str, Any]) -> Any:
            try:
                a = act[name].get(f1, missing)
            except Exception:
                a = missing
            if a is missing:
                a = fetch(act, name, fields)
            return a > c if type(a) is tc else slow(a, c)
        return field_greater

    def field_greater_equal(act: Mapping[str, Any]) -> Any:
        try:
            a = act[name].get(f1, missing)
        except Exception:
            a = missing
        if a is missing:
            a = fetch(act, name, fields)
        return a >= c if type(a) is tc else slow(a, c)
    return field_greater_equal


def _in(item: _Compiled, container: _Compiled) -> Evaluate:
    if container.const and type(container.value) is tuple:
        return _in_constant_list(item, container.value)
    item_fn = item.fn
    container_fn = container.fn
    list_contains = rt.list_contains
    map_get = rt.map_get
    missing = rt.MISSING

    def in_(act: Mapping[str, Any]) -> Any:
        x = item_fn(act)
        c = container_fn(act)
        tc = type(c)
        if tc is list or tc is tuple:
            if type(x) is str:
                return x in c
            return list_contains(c, x)
        if tc is dict:
            if type(x) is str:
                return x in c
            return map_get(c, x) is not missing
        return rt.contains(c, x)

    return in_


def _in_constant_list(item: _Compiled, elements: tuple[Any, ...]) -> Evaluate:
    """Membership in a literal list: a set lookup when the item's type makes Python's
    equality agree with CEL's (a str among the strs, an int among the ints when there
    are no doubles, a bool among the bools); the full CEL comparison otherwise."""
    strs = frozenset(e for e in elements if type(e) is str)
    ints = frozenset(e for e in elements if type(e) is int)
    bools = frozenset(e for e in elements if type(e) is bool)
    list_contains = rt.list_contains
    if any(type(e) is float for e in elements):
        ints = frozenset()  # an int may equal a double: use the full comparison
        int_type: type | None = None
    else:
        int_type = int
    if item.field1 is not None:
        name, f1 = item.field1
        fields = (f1,)
        missing = rt.MISSING

        def field_in_constant(act: Mapping[str, Any]) -> Any:
            try:
                x = act[name].get(f1, missing)
            except Exception:
                x = missing
            if x is missing:
                x = fetch(act, name, fields)
            t = type(x)
            if t is str:
                return x in strs
            if t is int_type:
                return x in ints
            if t is bool:
                return x in bools
            return list_contains(elements, x)

        return field_in_constant
    fn = item.fn

    def in_constant(act: Mapping[str, Any]) -> Any:
        x = fn(act)
        t = type(x)
        if t is str:
            return x in strs
        if t is int_type:
            return x in ints
        if t is bool:
            return x in bools
        return list_contains(elements, x)

    return in_constant


# -- closures: arithmetic ---------------------------------------------------------------------


def _add(lf: Evaluate, rf: Evaluate) -> Evaluate:
    lo, hi, slow = INT64_MIN, INT64_MAX, rt.add

    def add(act: Mapping[str, Any]) -> Any:
        a = lf(act)
        b = rf(act)
        if type(a) is int and type(b) is int:
            r = a + b
            if lo <= r <= hi:
                return r
            raise CelEvalError("int overflow")
        return slow(a, b)

    return add


def _subtract(lf: Evaluate, rf: Evaluate) -> Evaluate:
    lo, hi, slow = INT64_MIN, INT64_MAX, rt.subtract

    def subtract(act: Mapping[str, Any]) -> Any:
        a = lf(act)
        b = rf(act)
        if type(a) is int and type(b) is int:
            r = a - b
            if lo <= r <= hi:
                return r
            raise CelEvalError("int overflow")
        return slow(a, b)

    return subtract


def _multiply(lf: Evaluate, rf: Evaluate) -> Evaluate:
    lo, hi, slow = INT64_MIN, INT64_MAX, rt.multiply

    def multiply(act: Mapping[str, Any]) -> Any:
        a = lf(act)
        b = rf(act)
        if type(a) is int and type(b) is int:
            r = a * b
            if lo <= r <= hi:
                return r
            raise CelEvalError("int overflow")
        return slow(a, b)

    return multiply


def _binary_function(function: Callable[[Any, Any], Any]) -> Callable[[Evaluate, Evaluate],
                                                                     Evaluate]:
    def make(lf: Evaluate, rf: Evaluate) -> Evaluate:
        def apply(act: Mapping[str, Any]) -> Any:
            return function(lf(act), rf(act))
        return apply
    return make


_ARITHMETIC: Final[dict[str, Callable[[Evaluate, Evaluate], Evaluate]]] = {
    "+": _add,
    "-": _subtract,
    "*": _multiply,
    "/": _binary_function(rt.divide),
    "%": _binary_function(rt.modulo),
}


def _negate(operand: Evaluate) -> Evaluate:
    lo = INT64_MIN

    def negate(act: Mapping[str, Any]) -> Any:
        v = operand(act)
        t = type(v)
        if t is int and v != lo:
            return -v
        if t is float:
            return -v
        return rt.negate(v)

    return negate


# -- closures: functions -------------------------------------------------------------------


def _unary_function(function: Callable[[Any], Any], operand: Evaluate) -> Evaluate:
    def apply(act: Mapping[str, Any]) -> Any:
        return function(operand(act))

    return apply


def _size(operand: Evaluate) -> Evaluate:
    slow = rt.size

    def size(act: Mapping[str, Any]) -> Any:
        v = operand(act)
        t = type(v)
        if t is str or t is list or t is dict or t is tuple or t is bytes:
            return len(v)
        return slow(v)

    return size


def _string_method(name: str, target: Evaluate, argument: _Compiled) -> Evaluate:
    slow = rt.string_method
    method = {"startsWith": str.startswith, "endsWith": str.endswith,
              "contains": str.__contains__}[name]
    if argument.const and type(argument.value) is str:
        p = argument.value

        def string_method_constant(act: Mapping[str, Any]) -> Any:
            s = target(act)
            if type(s) is str:
                return method(s, p)
            return slow(name, s, p)

        return string_method_constant
    argument_fn = argument.fn

    def string_method(act: Mapping[str, Any]) -> Any:
        s = target(act)
        p = argument_fn(act)
        if type(s) is str and type(p) is str:
            return method(s, p)
        return slow(name, s, p)

    return string_method


def _accessor(name: str, target: Evaluate) -> Evaluate:
    accessor = rt.time_accessor

    def access(act: Mapping[str, Any]) -> Any:
        return accessor(name, target(act))

    return access


def _accessor_with_zone(name: str, target: Evaluate, zone: Evaluate) -> Evaluate:
    accessor = rt.time_accessor

    def access_in_zone(act: Mapping[str, Any]) -> Any:
        return accessor(name, target(act), zone(act), has_zone=True)

    return access_in_zone
