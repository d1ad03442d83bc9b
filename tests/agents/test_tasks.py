from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from agentauthz import Authorizer, Forbidden, InvalidInputError
from agentauthz.agents import Delegation
from agentauthz.enforce import current_principal
from agentauthz.errors import CredentialError

from .conftest import DATA, POLICY

SCOPE = [("read", "document:*"), ("create", "ticket:t1")]


def kinds(decision: object) -> list[str]:
    return [r.kind for r in decision.reasons]  # type: ignore[attr-defined]


def test_task_scope_narrows_the_delegation(authz: Authorizer) -> None:
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"), \
            authz.task(scope=SCOPE, ttl=300, purpose="answer ticket 7") as task:
        principal = current_principal()
        assert isinstance(principal, Delegation) and principal.task is task.credential
        assert task.check("read", "document:a").allowed
        assert task.check("create", "ticket:t1").allowed
        # both may write document:b, but the task scope says read only
        assert authz.check(Delegation("agent:helper", "user:alice"), "write", "document:b").allowed
        decision = task.check("write", "document:b")
        assert not decision.allowed and kinds(decision) == ["out_of_task_scope"]
        # the scope never widens: alice may read secret, the agent may not
        assert kinds(task.check("read", "document:secret"))[0] == "agent_denied"


def test_task_is_revoked_when_the_block_exits(authz: Authorizer) -> None:
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"):
        with authz.task(scope=SCOPE, purpose="one question") as task:
            token = task.token
            assert authz.tasks.verify(token).id == task.id
        decision = authz.check(task.principal, "read", "document:a")
        assert not decision.allowed and kinds(decision) == ["task_revoked"]
        with pytest.raises(CredentialError) as info:
            authz.tasks.verify(token)
        assert info.value.reason == "revoked"


def test_task_is_revoked_on_exception_too(authz: Authorizer) -> None:
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"):
        with pytest.raises(RuntimeError), authz.task(scope=SCOPE, purpose="boom") as task:
            raise RuntimeError("tool crashed")
        assert kinds(task.check("read", "document:a")) == ["task_revoked"]
        assert current_principal() == Delegation("agent:helper", "user:alice")


async def test_async_with(authz: Authorizer) -> None:
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"):
        async with authz.task(scope=SCOPE, purpose="async") as task:
            assert (await authz.acheck(current_principal(), "read", "document:a")).allowed  # type: ignore[arg-type]
        assert not (await authz.acheck(task.principal, "read", "document:a")).allowed


def test_expired_task_denies() -> None:
    now = [1_000_000.0]
    authz = Authorizer(POLICY, data=DATA)
    authz.tasks._clock = lambda: now[0]  # a test clock: the credential store reads it
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"), \
            authz.task(scope=SCOPE, ttl=10, purpose="short") as task:
        assert task.check("read", "document:a").allowed
        now[0] += 11
        assert kinds(task.check("read", "document:a")) == ["task_expired"]


def test_task_needs_an_agent(authz: Authorizer) -> None:
    with pytest.raises(InvalidInputError, match="needs an agent"):
        authz.task(scope=SCOPE, purpose="nobody")


def test_task_for_a_suspended_agent_is_refused(authz: Authorizer) -> None:
    with pytest.raises(Forbidden, match="suspended"):
        authz.task(scope=SCOPE, purpose="x", agent="agent:sleepy", on_behalf_of="user:alice")


def test_nested_task_can_only_narrow(authz: Authorizer) -> None:
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"), \
            authz.task(scope=[("read", "document:*")], purpose="outer") as outer:
        with authz.task(scope=[("read", "document:a")], purpose="inner") as inner:
            assert inner.task_id == outer.task_id and inner.id != outer.id
            assert inner.check("read", "document:a").allowed
            assert not inner.check("read", "document:b").allowed
        with pytest.raises(InvalidInputError):
            authz.task(scope=[("write", "document:*")], purpose="wider")
        assert outer.check("read", "document:b").allowed  # the inner exit revoked only itself


def test_attenuation_for_a_sub_agent_needs_both_agents(authz: Authorizer) -> None:
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"), \
            authz.task(scope=[("read", "document:*")], purpose="outer") as task:
        child = task.attenuate(scope=[("read", "document:a"), ("read", "document:b")],
                               ttl=60, agent="agent:sub")
        with child:
            assert child.principal.agents == ("agent:helper", "agent:sub")
            assert child.check("read", "document:a").allowed
            # agent:sub may not read b on its own grants, though helper and alice may
            decision = child.check("read", "document:b")
            assert not decision.allowed and "agent:sub" in decision.reasons[0].message
        assert kinds(child.check("read", "document:a")) == ["task_revoked"]
        assert task.check("read", "document:a").allowed


def test_revoking_the_task_revokes_every_derived_credential(authz: Authorizer) -> None:
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"), \
            authz.task(scope=[("read", "document:*")], purpose="outer") as task:
        child = task.attenuate(scope=[("read", "document:a")], agent="agent:sub")
        grandchild = child.attenuate(scope=[("read", "document:a")])
        authz.revoke(task=task.task_id, reason="user cancelled")
        for t in (task, child, grandchild):
            assert kinds(t.check("read", "document:a")) == ["task_revoked"]


def test_revoking_one_credential_keeps_its_parent(authz: Authorizer) -> None:
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"), \
            authz.task(scope=[("read", "document:*")], purpose="outer") as task:
        child = task.attenuate(scope=[("read", "document:a")], agent="agent:sub")
        authz.revoke(credential=child.credential)
        assert kinds(child.check("read", "document:a")) == ["task_revoked"]
        assert task.check("read", "document:a").allowed


def test_revoking_an_agent_denies_its_tasks_and_checks(authz: Authorizer) -> None:
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"), \
            authz.task(scope=SCOPE, purpose="x") as task:
        authz.revoke(agent="agent:helper", reason="key leaked")
        assert kinds(task.check("read", "document:a")) == ["agent_revoked"]
        assert kinds(authz.check("agent:helper", "read", "document:a")) == ["agent_revoked"]
        with pytest.raises(CredentialError):
            authz.tasks.verify(task.token)


def test_revoke_needs_exactly_one_target(authz: Authorizer) -> None:
    with pytest.raises(InvalidInputError):
        authz.revoke()
    with pytest.raises(InvalidInputError):
        authz.revoke(agent="agent:helper", task="t")


def test_replay_by_another_agent_is_refused(authz: Authorizer) -> None:
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"), \
            authz.task(scope=SCOPE, purpose="x") as task:
        token = task.token
    # a fresh, live task of helper's, presented by agent:sub
    task = authz.task(scope=SCOPE, purpose="y", agent="agent:helper", on_behalf_of="user:alice")
    with pytest.raises(CredentialError) as info:
        authz.join_task(task.token, agent="agent:sub")
    assert info.value.reason == "wrong_agent"
    stolen = Delegation("agent:sub", "user:alice", task.credential)
    assert kinds(authz.check(stolen, "read", "document:a")) == ["wrong_agent"]
    assert token != task.token


def test_token_crosses_a_process_boundary(tmp_path: object) -> None:
    keys = {"k1": "x" * 32}
    authz = Authorizer(POLICY, data=DATA, task_keys=keys)
    task = authz.task(scope=[("read", "document:*")], purpose="cross-process",
                      agent="agent:helper", on_behalf_of="user:alice")
    script = textwrap.dedent(f"""
        from agentauthz import Authorizer
        import sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent.parent.parent)!r})
        from tests.agents.conftest import POLICY, DATA
        authz = Authorizer(POLICY, data=DATA, task_keys={keys!r})
        with authz.join_task({task.token!r}, agent="agent:helper") as t:
            print(t.check("read", "document:a").allowed, t.check("read", "document:secret").allowed,
                  t.check("write", "document:b").allowed)
        other = Authorizer(POLICY, data=DATA)
        try:
            other.join_task({task.token!r})
        except Exception as exc:
            print(type(exc).__name__, exc.reason)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["True", "False", "False", "CredentialError", "unknown_key"]


def test_revoked_task_is_not_served_from_the_cache() -> None:
    authz = Authorizer(POLICY, data=DATA, cache=True)
    with authz.acting_as("agent:helper", on_behalf_of="user:alice"), \
            authz.task(scope=SCOPE, purpose="cached") as task:
        assert task.check("read", "document:a").allowed
        assert task.check("read", "document:a").allowed
        stats = authz.cache_stats()
        assert stats is not None and stats.hits >= 1   # the branch checks were cached
        authz.revoke(task=task.task_id)
        assert kinds(task.check("read", "document:a")) == ["task_revoked"]
