"""A subset of CEL (the Common Expression Language) for policy conditions.

A condition is parsed and compiled once, by :func:`compile_condition`, into a
:class:`Condition`: a callable that evaluates it against an *activation* (a
mapping from variable names to plain Python values) on every authorization
check::

    cond = compile_condition("has(resource.tenant) && resource.tenant == principal.tenant")
    cond({"principal": {"tenant": "acme"}, "resource": {"tenant": "acme"},
          "action": "read", "context": {}})                             # -> True

CEL values are plain Python values: ``int`` (64-bit; overflow is an error),
``float`` (double), ``str``, ``bytes``, ``bool``, ``None`` (null), ``list`` or
``tuple``, ``dict`` or any ``Mapping`` (keys str, int or bool), timezone-aware
``datetime.datetime`` (timestamp) and ``datetime.timedelta`` (duration). As in
CEL, ``bool`` is not a number here (``true == 1`` is false, ``1 + true`` is an
error) even though it is in Python.

The supported language, its error semantics, its limits and its deviations
from full CEL are documented in ``docs/conditions.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

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
from agentauthz.policy.cel._compiler import Evaluate, compile_tree
from agentauthz.policy.cel._errors import CelEvalError, CelSyntaxError, line_column
from agentauthz.policy.cel._parser import parse
from agentauthz.policy.cel._runtime import as_eval_error

__all__ = [
    "DEFAULT_VARIABLES",
    "MAX_DEPTH",
    "MAX_SOURCE_LENGTH",
    "CelEvalError",
    "CelSyntaxError",
    "Condition",
    "FieldRef",
    "compile_condition",
    "line_column",
]

#: The longest condition accepted, in characters.
MAX_SOURCE_LENGTH: Final = 4096
#: The deepest nesting accepted: of parentheses, brackets and calls in the text,
#: and of the syntax tree (``a.b.c`` is three deep, ``-(-(-x))`` four).
MAX_DEPTH: Final = 64
#: The variables a condition may name unless told otherwise.
DEFAULT_VARIABLES: Final = frozenset({"principal", "resource", "action", "context"})


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A field path rooted at a variable, as written in a condition.

    ``resource.owner.id`` is ``FieldRef("resource", ("owner", "id"), offset)``;
    an index by a string literal counts as a field (``resource["owner"]``). The
    path stops at the first other index or call; a bare variable has an empty
    path. ``offset`` is the 0-based character offset of the variable name in
    the source (see :func:`line_column`). ``guarded`` is true when the path is
    the argument of ``has()``, so its last field may legitimately be absent.
    """

    variable: str
    path: tuple[str, ...]
    offset: int
    guarded: bool = False


class Condition:
    """A compiled condition. Immutable and safe to share between threads.

    Call it with an activation (a mapping from variable names to values) to
    get the condition's CEL value -- normally a ``bool``, but a condition such
    as ``resource.size + 1`` returns whatever it computes; callers deciding
    access should accept exactly ``True``. Any failure to evaluate raises
    :class:`CelEvalError` and nothing else.

    ``source`` is the text compiled, ``variables`` the names it was allowed to
    use; ``references`` lists every field path the text names, in source order
    (for validating attribute names). Pickling a condition pickles its source
    and recompiles it.
    """

    __slots__ = ("_evaluate", "references", "source", "tree", "variables")

    def __init__(self, source: str, variables: frozenset[str], evaluate: Evaluate,
                 references: tuple[FieldRef, ...], tree: Node | None = None) -> None:
        self.source = source
        self.variables = variables
        self.references = references
        self.tree = tree
        """The syntax tree, for static checks (see :mod:`agentauthz.policy.typecheck`)."""
        self._evaluate = evaluate

    def __call__(self, activation: Mapping[str, Any]) -> Any:
        try:
            return self._evaluate(activation)
        except CelEvalError:
            raise
        except Exception as exc:
            raise as_eval_error(exc) from exc

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_recompile, (self.source, self.variables))


def compile_condition(source: str, *, variables: frozenset[str] = DEFAULT_VARIABLES
                      ) -> Condition:
    """Parse and compile a condition once, for evaluation many times.

    ``variables`` are the names the condition may use. Raises
    :class:`CelSyntaxError` -- never ``RecursionError`` -- when the text is not
    valid in the subset: bad syntax, a name outside ``variables``, an unknown
    or unsupported function (``matches()`` is deliberately excluded), a wrong
    number of arguments, more than :data:`MAX_SOURCE_LENGTH` characters, or
    nesting deeper than :data:`MAX_DEPTH`. Raises ``TypeError`` when
    ``source`` is not a string.
    """
    if not isinstance(source, str):
        raise TypeError(f"a condition must be a string, not {type(source).__name__}")
    if len(source) > MAX_SOURCE_LENGTH:
        raise CelSyntaxError(f"condition longer than {MAX_SOURCE_LENGTH} characters",
                             source, MAX_SOURCE_LENGTH)
    names = frozenset(variables)
    try:
        tree = parse(source, max_depth=MAX_DEPTH)
        evaluate = compile_tree(tree, source, names)
    except RecursionError:  # pragma: no cover - the depth limit keeps well below the stack
        raise CelSyntaxError("expression nested too deeply", source, 0) from None
    return Condition(source, names, evaluate, tuple(_references(tree)), tree)


def _recompile(source: str, variables: frozenset[str]) -> Condition:
    return compile_condition(source, variables=variables)


def _field_path(node: Node) -> tuple[Ident, list[str]] | None:
    """The variable and fields of a pure field path (``a.b["c"].d``), else None."""
    fields: list[str] = []
    while True:
        if isinstance(node, Select):
            fields.append(node.field)
            node = node.operand
        elif (isinstance(node, Index) and isinstance(node.index, Literal)
              and type(node.index.value) is str):
            fields.append(node.index.value)
            node = node.operand
        elif isinstance(node, Ident):
            fields.reverse()
            return node, fields
        else:
            return None


def _references(tree: Node) -> list[FieldRef]:
    refs: list[FieldRef] = []

    def visit(node: Node, guarded: bool = False) -> None:
        path = _field_path(node)
        if path is not None:
            ident, fields = path
            refs.append(FieldRef(ident.name, tuple(fields), ident.offset, guarded))
            return
        if isinstance(node, (Select, Unary)):
            visit(node.operand)
        elif isinstance(node, Index):
            visit(node.operand)
            visit(node.index)
        elif isinstance(node, Binary):
            visit(node.left)
            visit(node.right)
        elif isinstance(node, Logical):
            for operand in node.operands:
                visit(operand)
        elif isinstance(node, Conditional):
            visit(node.condition)
            visit(node.then)
            visit(node.otherwise)
        elif isinstance(node, Call):
            if node.target is not None:
                visit(node.target)
            if node.name == "has" and node.target is None and len(node.args) == 1:
                visit(node.args[0], guarded=True)
            else:
                for arg in node.args:
                    visit(arg)
        elif isinstance(node, ListLit):
            for element in node.elements:
                visit(element)
        elif isinstance(node, MapLit):
            for key, value in node.entries:
                visit(key)
                visit(value)

    visit(tree)
    refs.sort(key=lambda ref: ref.offset)
    return refs
