"""Every policy construct, allowed and denied, through the public Authorizer."""

from __future__ import annotations

import pytest

from agentauthz import Authorizer, Entity, Outcome


@pytest.mark.parametrize(
    ("principal", "action", "resource", "allowed", "why"),
    [
        ("user:bob", "read", "document:3", True, "direct relation"),
        ("user:alice", "read", "document:3", False, "no relation"),
        ("user:alice", "read", "document:1", True, "arrow to folder, nested userset"),
        ("user:alice", "read", "document:2", True, "arrow through a folder chain"),
        ("user:carol", "read", "document:2", False, "not in any team"),
        ("user:anyone", "read", "document:4", True, "wildcard user:*"),
        ("agent:bot", "read", "document:4", False, "wildcards are typed: user:* is not agents"),
        ("user:alice", "read", "document:5", False, "exclusion: banned"),
        ("user:alice", "review", "document:1", True, "intersection: both hold"),
        ("user:alice", "review", "document:2", False, "intersection: reviewer missing"),
        ("user:bob", "write", "document:3", True, "permission naming a relation"),
        ("user:alice", "write", "document:1", False, "write is owner only"),
        ("user:alice", "export", "document:1", False,
         "an unclassified document errors the export forbid, which then denies"),
        ("user:alice", "delete", "document:1", False, "an action nothing grants"),
    ],
)
def test_constructs(authz: Authorizer, principal: str, action: str, resource: str,
                    allowed: bool, why: str) -> None:
    decision = authz.check(principal, action, resource)
    assert decision.allowed is allowed, (why, decision.explain())
    assert decision.outcome is (Outcome.ALLOW if allowed else Outcome.DENY)
    assert decision.reasons


def test_forbid_wins_over_a_granted_permission(authz: Authorizer) -> None:
    authz.set_attributes("document:1", {"tenant": "acme", "classification": "confidential"})
    authz.set_attributes("user:alice", {"tenant": "acme"})
    assert authz.check("user:alice", "read", "document:1").allowed
    decision = authz.check("user:alice", "export", "document:1")
    assert not decision.allowed
    assert decision.reasons[0].kind == "forbid"
    assert decision.reasons[0].rule == "no-export-of-confidential"
    authz.set_attributes("document:1", {"tenant": "acme", "classification": "internal"})
    assert authz.check("user:alice", "export", "document:1").allowed  # permission naming a permission


def test_tenant_isolation_reads_stored_and_passed_attributes(authz: Authorizer) -> None:
    authz.set_attributes("document:1", {"tenant": "acme"})
    authz.set_attributes("user:alice", {"tenant": "globex"})
    assert not authz.check("user:alice", "read", "document:1").allowed
    # attributes passed with the check override the stored ones for that check
    alice = Entity("user", "alice", {"tenant": "acme"})
    assert authz.check(alice, "read", "document:1").allowed
    assert authz.check("user:alice", "read", Entity("document", "1", {"tenant": "globex"})
                       ).allowed


def test_an_erroring_forbid_denies_and_names_the_error() -> None:
    a = Authorizer("""
types:
  user: {}
  doc: {relations: {viewer: [user]}, permissions: {read: viewer}}
rules:
  - {id: needs-level, effect: forbid, when: "resource.level > 3"}
""")
    a.add("doc:1#viewer@user:u")
    decision = a.check("user:u", "read", "doc:1")
    assert not decision.allowed
    assert [r.kind for r in decision.reasons] == ["forbid", "condition_error"]
    assert "needs-level" in decision.reasons[1].message
    assert a.check("user:u", "read", "doc:1", ).reasons[1].rule == "needs-level"
    a.set_attributes("doc:1", {"level": 1})
    assert a.check("user:u", "read", "doc:1").allowed


def test_an_erroring_permit_grants_nothing() -> None:
    a = Authorizer("""
types:
  user: {}
  doc: {}
rules:
  - {id: cheap, effect: permit, action: read, resource: doc, when: "context.amount < 100"}
""")
    assert a.check("user:u", "read", "doc:1", {"amount": 5}).allowed
    assert not a.check("user:u", "read", "doc:1", {"amount": 500}).allowed
    decision = a.check("user:u", "read", "doc:1", {"amount": "five"})
    assert not decision.allowed
    assert decision.reasons[-1].kind == "condition_error"
    missing = a.check("user:u", "read", "doc:1")
    assert not missing.allowed and missing.reasons[-1].kind == "condition_error"


def test_non_boolean_condition_results_never_grant() -> None:
    a = Authorizer("""
types: {user: {}, doc: {}}
rules:
  - {id: odd, effect: permit, when: "context.flag"}
""")
    assert a.check("user:u", "read", "doc:1", {"flag": True}).allowed
    for value in (1, "true", [True], None):
        assert not a.check("user:u", "read", "doc:1", {"flag": value}).allowed


@pytest.mark.parametrize(
    ("selector", "principal", "allowed"),
    [
        ("user", "user:a", True),
        ("user", "agent:a", False),
        ("user:a", "user:a", True),
        ("user:a", "user:b", False),
        ("role:admin#member", "user:a", True),
        ("role:admin#member", "user:b", False),
        ("*", "agent:x", True),
    ],
)
def test_rule_principal_selectors(selector: str, principal: str, allowed: bool) -> None:
    a = Authorizer(f"""
types:
  user: {{}}
  agent: {{}}
  role: {{relations: {{member: [user]}}}}
  doc: {{}}
rules:
  - {{id: p, effect: permit, principal: "{selector}", action: read, resource: doc}}
""")
    a.add("role:admin#member@user:a")
    if principal.startswith("agent:"):
        a.agents.register(principal, owner="user:o", purpose="a principal-selector test")
    assert a.check(principal, "read", "doc:1").allowed is allowed
    assert not a.check(principal, "write", "doc:1").allowed


def test_rbac_rules_grouped_by_role_still_say_which_rule_granted() -> None:
    a = Authorizer("""
types:
  user: {}
  role: {relations: {member: [user]}}
  doc: {}
rules:
  - {id: readers, effect: permit, principal: "role:reader#member", action: read, resource: doc}
  - {id: editors, effect: permit, principal: "role:editor#member", action: [read, write],
     resource: doc}
""")
    a.add("role:editor#member@user:e", "role:reader#member@user:r")
    assert a.check("user:e", "write", "doc:9").reasons[0].rule == "editors"
    assert a.check("user:r", "read", "doc:9").reasons[0].rule == "readers"
    assert not a.check("user:r", "write", "doc:9").allowed
    a.remove("role:editor#member@user:e")
    assert not a.check("user:e", "write", "doc:9").allowed


def test_cycles_in_data_terminate() -> None:
    a = Authorizer("""
types:
  user: {}
  group: {relations: {member: [user, group#member]}}
  folder:
    relations: {parent: [folder], viewer: [group#member]}
    permissions: {read: viewer | parent->read}
""")
    a.add("group:a#member@group:b#member", "group:b#member@group:a#member",
          "folder:x#parent@folder:y", "folder:y#parent@folder:x", "folder:x#viewer@group:a#member")
    assert not a.check("user:u", "read", "folder:y").allowed
    a.add("group:b#member@user:u")
    assert a.check("user:u", "read", "folder:y").allowed
    assert a.list_resources("user:u", "read", "folder") == {"folder:x", "folder:y"}


def test_recursion_depth_is_bounded_with_a_clear_reason() -> None:
    a = Authorizer("""
types:
  user: {}
  folder:
    relations: {parent: [folder], viewer: [user]}
    permissions: {read: viewer | parent->read}
""", max_depth=10)
    a.write(add=[(f"folder:{i}", "parent", f"folder:{i + 1}") for i in range(30)])
    a.add("folder:30#viewer@user:u")
    decision = a.check("user:u", "read", "folder:0")
    assert not decision.allowed
    assert decision.reasons[0].kind == "depth_exceeded"
    assert a.check("user:u", "read", "folder:25").allowed


def test_wide_dag_does_not_explode() -> None:
    # 40 levels, each folder with two parents on the level above: 2**40 paths
    a = Authorizer("""
types:
  user: {}
  folder:
    relations: {parent: [folder], viewer: [user]}
    permissions: {read: viewer | parent->read}
""", max_depth=100)
    rels = []
    for level in range(40):
        for k in (0, 1):
            rels += [(f"folder:{level}-{k}", "parent", f"folder:{level + 1}-0"),
                     (f"folder:{level}-{k}", "parent", f"folder:{level + 1}-1")]
    a.write(add=rels)
    assert not a.check("user:u", "read", "folder:0-0").allowed


def test_list_actions_and_authorized_fields(authz: Authorizer) -> None:
    # export is missing: these documents carry no classification, so the export forbid errors
    assert authz.list_actions("user:bob", "document:3") == {"read", "write"}
    assert authz.list_actions("user:alice", "document:1") == {"read", "review"}
    authz.set_attributes("document:3", {"classification": "public"})
    assert authz.list_actions("user:bob", "document:3") == {"read", "write", "export"}
    assert authz.authorized_fields("user:bob", "read", "document:3") == {"title",
                                                                         "customer_email"}
    assert authz.authorized_fields("user:alice", "read", "document:1") == {"title"}
    assert authz.authorized_fields("user:carol", "read", "document:1") == frozenset()


def test_check_many_keeps_order_and_flags_bad_items(authz: Authorizer) -> None:
    from agentauthz import CheckRequest

    out = authz.check_many([("user:bob", "read", "document:3"),
                            CheckRequest("user:alice", "read", "document:3"),
                            "garbage"])  # type: ignore[list-item]
    assert [d.allowed for d in out] == [True, False, False]
    assert out[2].reasons[0].kind == "invalid_input"


def test_decision_is_immutable_and_explains(authz: Authorizer) -> None:
    d = authz.check("user:bob", "read", "document:3")
    with pytest.raises(AttributeError):
        d.allowed = False  # type: ignore[misc]
    assert d.decision_id != authz.check("user:bob", "read", "document:3").decision_id
    assert d.policy_version == authz.policy_version
    assert "ALLOW" in str(d) and "document.read" in d.explain()
    assert bool(d) is True


def test_explain_shows_the_path_and_rules(authz: Authorizer) -> None:
    authz.set_attributes("document:1", {"tenant": "acme", "classification": "confidential"})
    text = str(authz.explain("user:alice", "export", "document:1"))
    assert "DENY" in text
    assert "no-export-of-confidential" in text
    assert "resource.classification='confidential'" in text
    path = str(authz.explain("user:alice", "read", "document:2"))
    assert "folder:sub" in path and "team:eng#member" in path and "user:alice" in path


async def test_async_twins(authz: Authorizer) -> None:
    assert (await authz.acheck("user:bob", "read", "document:3")).allowed
    assert await authz.alist_resources("user:bob", "read", "document") == {"document:3",
                                                                           "document:4"}
    assert await authz.alist_actions("user:bob", "document:3") == {"read", "write"}
    assert (await authz.acheck_many([("user:bob", "read", "document:3")]))[0].allowed
