"""Policy loading and validation: every problem reported at once, with file, line, column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentauthz import Policy, PolicyError
from agentauthz.policy import PolicyBuilder

BAD = """\
types:
  user: {}
  team:
    relations:
      member: [user, grop#member]
  document:
    relations:
      owner: [user]
      parent: [folder]
    permissions:
      read: "owner | ownr"
      write: "owner |"
      loop: "again"
      again: "loop"
rules:
  - id: r1
    effect: permit
    when: "resource.nope == 1"
  - id: r1
    effect: deny
"""


def test_all_problems_reported_with_positions(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    problems = info.value.problems
    text = str(info.value)
    assert all(p.file == str(path) for p in problems)
    assert "undefined type 'grop'" in text
    assert "undefined type 'folder'" in text
    by_message = {p.message: p for p in problems}
    ownr = next(p for p in problems if "'ownr'" in p.message)
    assert (ownr.line, ownr.column) == (11, 22)  # points at `ownr` inside the quoted string
    assert ownr.hint == "did you mean 'owner'?"
    assert any("cyclic permission definition" in m for m in by_message)
    assert any("bad permission expression" in m and p.line == 12 for m, p in by_message.items())
    assert any("effect" in p.path and p.line == 20 for p in problems)


def test_syntax_errors_are_positioned() -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml("types:\n  user: {\n", source="x.yaml")
    (problem,) = info.value.problems
    assert problem.file == "x.yaml" and problem.line is not None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("types: {user: {relations: {r: []}}}", "at least one subject"),
        ("types: {user: {relations: {r: [user]}, permissions: {r: r}}}", "both a relation"),
        ("types: {user: {}, doc: {relations: {p: [user#nope]}}}", "no relation or permission"),
        ("types: {user: {}, doc: {relations: {p: [user]}, permissions: {x: 'p->nope'}}}",
         "has 'nope'"),
        ("types: {user: {}, doc: {relations: {p: [user]}, permissions: {x: 'read->p'}}}",
         "must be a relation"),
        ("types: {g: {relations: {m: [g#m]}}, doc: {relations: {p: [g#m]}, "
         "permissions: {x: 'p->m'}}}", "follows only direct subjects"),
        ("types: {user: {attributes: {id: string}}}", "reserved"),
        ("types: {user: {extra: 1}}", "unknown field 'extra'"),
        ("types: {user: {}}\nrules: [{id: a, effect: permit, resource: nope}]", "undefined type"),
        ("types: {user: {}}\nrules: [{id: a, effect: permit, principal: 'user:'}]",
         "bad principal selector"),
        ("types: {user: {}}\nrules: [{id: a, effect: permit, when: 'resource.a =='}]",
         "bad condition"),
        ("types: {user: {}}\nrules: [{id: a, effect: permit, when: 'size(1, 2, 3)'}]",
         "bad condition"),
        ("types: {user: {attributes: {tenant: string}}}\nrules: [{id: a, effect: permit, "
         "resource: user, when: 'resource.tennant == \"x\"'}]", "did you mean 'tenant'"),
        ("types: {user: {}}\ncontext: {risk: int}\nrules: [{id: a, effect: permit, "
         "when: 'context.rsk > 1'}]", "context.rsk is not a declared attribute"),
        ("[1, 2]", "must be a mapping"),
        ("types: [user]", "valid dictionary"),
        ("types: {user: {}}\nversion: 2", "version"),
        ("types: {'9bad': {}}", "not a valid name"),
        ("types: {user: {}}\nrules: [{id: a, effect: permit, action: 'no spaces'}]",
         "not a valid name"),
        ("types:\n  a: {}\n  a: {}", "duplicate key"),
        ("types: !!python/object:os.system {}", "unsupported YAML tag"),
    ],
)
def test_each_validation_problem(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(text)
    assert fragment in str(info.value)


def test_alias_bomb_and_deep_nesting_are_rejected() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        refs = ", ".join([f"*{prev}"] * 10)
        bomb += f"{cur}: &{cur} [{refs}]\n"
    with pytest.raises(PolicyError, match="alias bomb"):
        Policy.from_yaml(bomb)
    with pytest.raises(PolicyError, match="nested deeper"):
        Policy.from_yaml("types: " + "[" * 200 + "]" * 200)


def test_missing_file_names_it() -> None:
    with pytest.raises(PolicyError, match="file not found"):
        Policy.load("does/not/exist.yaml")


def test_version_is_a_content_hash() -> None:
    a = Policy.from_yaml("types: {user: {}}")
    b = Policy.from_dict({"types": {"user": {}}})
    c = Policy.from_yaml("types: {user: {}, doc: {}}")
    assert a.version == b.version != c.version
    assert a.version.startswith("sha256:")


def test_builder_produces_the_same_policy_as_yaml() -> None:
    built = (PolicyBuilder()
             .type("user")
             .type("doc", relations={"owner": "user"}, permissions={"read": "owner"})
             .forbid("no-export", action="export", resource="doc", when="context.risk > 3")
             .context(risk="int")
             .build())
    parsed = Policy.from_yaml("""
types:
  user: {}
  doc: {relations: {owner: [user]}, permissions: {read: owner}}
rules:
  - {id: no-export, effect: forbid, action: [export], resource: [doc], principal: ['*'],
     when: "context.risk > 3"}
context: {risk: int}
""")
    assert built.version == parsed.version


def test_relation_subjects_accept_a_pipe_string() -> None:
    p = Policy.from_yaml("types: {user: {}, team: {relations: {m: 'user | team#m'}}}")
    assert [str(s) for s in p.types["team"].relations["m"].subjects] == ["user", "team#m"]


def test_actions_for(tmp_path: Path) -> None:
    p = Policy.from_yaml("""
types:
  user: {}
  doc: {relations: {o: [user]}, permissions: {read: o}}
rules: [{id: x, effect: permit, action: [share], resource: doc}]
""")
    assert p.actions_for("doc") == {"read", "share"}
    assert p.actions_for("nope") == frozenset()


def test_policy_from_json_mapping_and_bad_sources(tmp_file: Any) -> None:
    path = tmp_file("p.json", '{"types": {"user": {}}}')
    assert "user" in Policy.load(path).types
    with pytest.raises(PolicyError):
        Policy.load(12)  # type: ignore[arg-type]


TYPED = """
types:
  user: {attributes: {tenant: string, level: int, joined: timestamp}}
  doc: {attributes: {tenant: string, size: double, tags: list, meta: map}}
context: {risk: int, when: timestamp, note: string}
rules:
  - {id: r, effect: forbid, resource: doc, principal: user, when: "%s"}
"""


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ("resource.tenant > 3", "cannot order string against int"),
        ("resource.tenant == 3", "never equal"),
        ("principal.level in ['a', 'b']", "never in a list of string"),
        ("context.risk + 1.5 > 2", "no '+' for int and double"),
        ("resource.tenant.startsWith(1) || principal.level.startsWith('x')", "string method"),
        ("size(principal.level) > 1", "size() of int"),
        ("context.note && true", "needs bool operands"),
        ("!context.risk", "needs a bool"),
        ("context.risk", "must be bool"),
        ("context.when - principal.joined > 3", "cannot order duration against int"),
        ("resource.tenant in 'abc'", "list or map on the right"),
    ],
)
def test_condition_type_errors_are_reported_at_load(condition: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(TYPED % condition)
    assert fragment in str(info.value)
    assert "type error in condition" in str(info.value)


@pytest.mark.parametrize(
    "condition",
    [
        "resource.tenant == principal.tenant && context.risk <= 3",
        "principal.level > 2.5",
        "context.when - principal.joined < duration('24h')",
        "resource.size * 2.0 > 10.0",
        "'x' in resource.tags || 'k' in resource.meta",
        "resource.tenant in ['a', 'b'] && principal.id.startsWith('svc-')",
        "has(resource.tenant) ? resource.tenant == 'a' : false",
        "size(resource.tags) > 0 && resource.meta.anything == 3",
        "resource.tenant == null",
    ],
)
def test_well_typed_conditions_load(condition: str) -> None:
    Policy.from_yaml(TYPED % condition)
