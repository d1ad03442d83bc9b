from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentauthz import Authorizer, Forbidden, InvalidInputError, NotFound, authorize
from agentauthz.agents import Delegation
from agentauthz.enforce import current_principal

from .conftest import POLICY

HELPER_FOR_ALICE = Delegation("agent:helper", "user:alice")


def kinds(decision: object) -> list[str]:
    return [r.kind for r in decision.reasons]  # type: ignore[attr-defined]


def test_both_allowed_is_allowed(authz: Authorizer) -> None:
    decision = authz.check(HELPER_FOR_ALICE, "read", "document:a")
    assert decision.allowed
    assert kinds(decision)[0] == "delegation"


def test_agent_gains_nothing_from_its_user(authz: Authorizer) -> None:
    assert authz.check("user:alice", "read", "document:secret").allowed
    decision = authz.check(HELPER_FOR_ALICE, "read", "document:secret")
    assert not decision.allowed
    assert kinds(decision)[0] == "agent_denied"
    assert "agent:helper" in decision.reasons[0].message


def test_user_gains_nothing_from_their_agent(authz: Authorizer) -> None:
    assert authz.check("agent:helper", "write", "document:agent-notes").allowed
    decision = authz.check(HELPER_FOR_ALICE, "write", "document:agent-notes")
    assert not decision.allowed
    assert kinds(decision)[0] == "user_denied"


def test_agent_without_a_user_uses_its_own_grants(authz: Authorizer) -> None:
    assert authz.check(Delegation("agent:helper"), "write", "document:agent-notes").allowed
    assert not authz.check(Delegation("agent:helper"), "read", "document:secret").allowed


def test_unknown_agent_denied_plain_and_delegated(authz: Authorizer) -> None:
    authz.add("document:a#viewer@agent:rogue")
    for principal in ("agent:rogue", Delegation("agent:rogue", "user:alice")):
        decision = authz.check(principal, "read", "document:a")
        assert not decision.allowed
        assert kinds(decision) == ["unknown_agent"]
        assert "not registered" in decision.reasons[0].message


def test_suspension_takes_effect_on_the_next_decision(authz: Authorizer) -> None:
    assert authz.check("agent:helper", "read", "document:a").allowed
    authz.agents.suspend("agent:helper", reason="incident 42")
    decision = authz.check(HELPER_FOR_ALICE, "read", "document:a")
    assert not decision.allowed
    assert kinds(decision) == ["agent_suspended"]
    assert "incident 42" in decision.reasons[0].message
    assert not authz.check("agent:helper", "read", "document:a").allowed
    authz.agents.activate("agent:helper")
    assert authz.check(HELPER_FOR_ALICE, "read", "document:a").allowed


def test_retired_agents_stay_retired(authz: Authorizer) -> None:
    authz.agents.retire("agent:helper", reason="replaced by v2")
    assert kinds(authz.check("agent:helper", "read", "document:a")) == ["agent_retired"]
    with pytest.raises(InvalidInputError, match="retired"):
        authz.agents.activate("agent:helper")


def test_suspended_in_policy_file(authz: Authorizer) -> None:
    authz.add("document:a#viewer@agent:sleepy")
    assert kinds(authz.check("agent:sleepy", "read", "document:a")) == ["agent_suspended"]


def test_suspension_is_not_served_from_the_cache() -> None:
    authz = Authorizer(POLICY, data={"relationships": ["document:a#viewer@agent:helper",
                                                       "document:a#viewer@user:alice"]},
                       cache=True)
    assert authz.check(HELPER_FOR_ALICE, "read", "document:a").allowed
    assert authz.check(HELPER_FOR_ALICE, "read", "document:a").allowed
    authz.agents.suspend("agent:helper")
    assert not authz.check(HELPER_FOR_ALICE, "read", "document:a").allowed
    assert not authz.check("agent:helper", "read", "document:a").allowed


def test_users_are_not_gated(authz: Authorizer) -> None:
    assert authz.check("user:alice", "read", "document:a").allowed
    assert not authz.check("user:nobody", "read", "document:a").allowed


def test_delegation_validates_its_parts() -> None:
    with pytest.raises(InvalidInputError):
        Delegation("helper")
    with pytest.raises(InvalidInputError):
        Delegation("agent:helper", "alice")
    with pytest.raises(InvalidInputError, match="itself"):
        Delegation("agent:helper", "agent:helper")


def test_bad_resource_denies(authz: Authorizer) -> None:
    decision = authz.check(HELPER_FOR_ALICE, "read", 42)  # type: ignore[arg-type]
    assert not decision.allowed and kinds(decision) == ["invalid_input"]
    assert not authz.check(HELPER_FOR_ALICE, "read", "nonsense").allowed


def test_acting_as_on_behalf_of_sets_a_delegation(authz: Authorizer) -> None:
    @authorize("read", "document:{doc}", authz=authz)
    def read(doc: str) -> str:
        return doc

    with authz.acting_as("agent:helper", on_behalf_of="user:alice"):
        assert current_principal() == HELPER_FOR_ALICE
        assert read("a") == "a"
        with pytest.raises(NotFound):
            read("secret")
    assert current_principal() is None


async def test_async_twins_agree(authz: Authorizer) -> None:
    for resource in ("document:a", "document:secret", "document:agent-notes", "document:b"):
        for action in ("read", "write"):
            sync = authz.check(HELPER_FOR_ALICE, action, resource)
            asyn = await authz.acheck(HELPER_FOR_ALICE, action, resource)
            assert (sync.allowed, kinds(sync)) == (asyn.allowed, kinds(asyn))
    assert await authz.alist_resources(HELPER_FOR_ALICE, "read", "document") == \
        authz.list_resources(HELPER_FOR_ALICE, "read", "document")
    assert await authz.alist_actions(HELPER_FOR_ALICE, "document:b") == \
        authz.list_actions(HELPER_FOR_ALICE, "document:b")


async def test_delegations_are_isolated_across_asyncio_tasks(authz: Authorizer) -> None:
    async def as_(agent: str, user: str) -> object:
        with authz.acting_as(agent, on_behalf_of=user):
            await asyncio.sleep(0)
            return current_principal()

    a, b = await asyncio.gather(as_("agent:helper", "user:alice"), as_("agent:sub", "user:alice"))
    assert a == HELPER_FOR_ALICE and b == Delegation("agent:sub", "user:alice")


def test_list_resources_is_the_intersection(authz: Authorizer) -> None:
    agent = authz.list_resources("agent:helper", "read", "document")
    user = authz.list_resources("user:alice", "read", "document")
    both = authz.list_resources(HELPER_FOR_ALICE, "read", "document")
    assert both == agent & user == {"document:a", "document:b"}
    assert "document:secret" in user and "document:agent-notes" in agent


def test_list_actions_and_fields_are_intersections(authz: Authorizer) -> None:
    assert authz.list_actions(HELPER_FOR_ALICE, "document:b") == {"read", "write"}
    assert authz.list_actions(HELPER_FOR_ALICE, "document:agent-notes") == frozenset()
    authz.add("document:c#viewer@agent:helper", "document:c#editor@user:alice")
    assert authz.authorized_fields("user:alice", "read", "document:c") == \
        {"title", "customer_email"}
    assert authz.authorized_fields(HELPER_FOR_ALICE, "read", "document:c") == {"title"}


def test_explain_shows_every_branch(authz: Authorizer) -> None:
    text = str(authz.explain(HELPER_FOR_ALICE, "read", "document:secret"))
    assert "registry: agent:helper" in text
    assert "agent agent:helper" in text and "on behalf of user:alice" in text
    assert text.startswith("✘ delegation")
    allowed = authz.explain(HELPER_FOR_ALICE, "read", "document:a")
    assert allowed.granted and all(c.granted for c in allowed.children)


def test_authorize_raises_with_the_branch_reason(authz: Authorizer) -> None:
    with pytest.raises(Forbidden) as info:
        authz.authorize(HELPER_FOR_ALICE, "write", "document:a")
    assert info.value.decision is not None
    assert info.value.decision.reasons[0].kind in ("agent_denied", "user_denied")


def test_tenant_rules_apply_to_every_branch(authz: Authorizer) -> None:
    authz.set_attributes("agent:helper", {"tenant": "acme"})
    authz.set_attributes("document:a", {"tenant": "globex", "classification": "internal"})
    decision = authz.check(HELPER_FOR_ALICE, "read", "document:a")
    assert not decision.allowed
    assert "tenant-isolation" in [r.rule for r in decision.reasons]


def test_registry_records_use(authz: Authorizer) -> None:
    authz.check(HELPER_FOR_ALICE, "read", "document:a")
    authz.check(HELPER_FOR_ALICE, "read", "document:secret")
    usage = authz.agents.usage("agent:helper")
    assert usage is not None
    assert (usage.decisions, usage.allowed, usage.denied) == (2, 1, 1)
    assert usage.last_used_at is not None


# ----------------------------------------------------------------- random graphs
USERS = ["user:u0", "user:u1"]
AGENTS = ["agent:a0", "agent:a1"]
DOCS = [f"document:d{i}" for i in range(6)]
FOLDERS = ["folder:f0", "folder:f1"]
TEAMS = ["team:t0"]

edges = st.one_of(
    st.tuples(st.sampled_from(DOCS), st.sampled_from(["viewer", "editor"]),
              st.sampled_from(USERS + AGENTS)),
    st.tuples(st.sampled_from(DOCS), st.just("parent"), st.sampled_from(FOLDERS)),
    st.tuples(st.sampled_from(FOLDERS), st.sampled_from(["viewer", "editor"]),
              st.sampled_from([*USERS, *AGENTS, "team:t0#member"])),
    st.tuples(st.sampled_from(TEAMS), st.just("member"), st.sampled_from(USERS + AGENTS)),
)
scopes = st.lists(st.tuples(st.sampled_from(["read", "write", "*"]),
                            st.sampled_from(["document:*", "*", "document:d1", "document:d2",
                                             "document:d*"])), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edges, max_size=25), st.sampled_from(AGENTS), st.sampled_from(USERS),
       st.sampled_from(["read", "write"]), st.none() | scopes)
def test_list_resources_agrees_with_check_on_random_graphs(
        rels: list[tuple[str, str, str]], agent: str, user: str, action: str,
        scope: list[tuple[str, str]] | None) -> None:
    authz = Authorizer(POLICY.split("agents:")[0])
    for a in AGENTS:
        authz.agents.register(a, owner="user:u0", purpose="random graph agent")
    authz.add(*(f"{o}#{r}@{s}" for o, r, s in rels))
    if scope is None:
        d = Delegation(agent, user)
    else:
        d = Delegation(agent, user, authz.tasks.issue(agent=agent, on_behalf_of=user,
                                                      scope=scope, ttl=60, purpose="test"))
    listed = authz.list_resources(d, action, "document")
    allowed = {doc for doc in DOCS if authz.check(d, action, doc).allowed}
    assert listed == allowed
    assert listed <= authz.list_resources(agent, action, "document")
    assert listed <= authz.list_resources(user, action, "document")
