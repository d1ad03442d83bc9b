"""authorize(): the error mapping, fail-closed backends, and the async twins."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

import pytest

from agentauthz import (
    AgentAuthzError,
    AuthorizationError,
    Authorizer,
    BackendError,
    ConfigurationError,
    Decision,
    Forbidden,
    NotFound,
    Unauthenticated,
)
from agentauthz.backends import BaseBackend

POLICY = """
types:
  user: {}
  doc:
    relations: {viewer: [user], editor: [user]}
    permissions: {read: viewer | editor, write: editor}
"""


@pytest.fixture
def authz() -> Authorizer:
    a = Authorizer(POLICY)
    a.add("doc:1#viewer@user:v", "doc:1#editor@user:e")
    return a


def test_error_tree() -> None:
    for cls in (Forbidden, NotFound, Unauthenticated):
        assert issubclass(cls, AuthorizationError)
        assert issubclass(cls, AgentAuthzError)


def test_allowed_returns_the_decision(authz: Authorizer) -> None:
    assert authz.authorize("user:e", "write", "doc:1").allowed


def test_forbidden_when_the_principal_may_read(authz: Authorizer) -> None:
    with pytest.raises(Forbidden) as info:
        authz.authorize("user:v", "write", "doc:1")
    assert isinstance(info.value.decision, Decision)
    assert not info.value.decision.allowed


def test_not_found_when_the_principal_may_not_even_read(authz: Authorizer) -> None:
    with pytest.raises(NotFound):
        authz.authorize("user:stranger", "write", "doc:1")
    with pytest.raises(NotFound):
        authz.authorize("user:stranger", "read", "doc:1")


def test_unauthenticated_without_a_principal(authz: Authorizer) -> None:
    with pytest.raises(Unauthenticated):
        authz.authorize(None, "read", "doc:1")


def test_error_classes_and_read_action_are_settings() -> None:
    class Nope(AuthorizationError):
        pass

    a = Authorizer(POLICY, forbidden_error=Nope, read_action=None)
    with pytest.raises(Nope):
        a.authorize("user:stranger", "write", "doc:1")


async def test_async_authorize(authz: Authorizer) -> None:
    assert (await authz.aauthorize("user:e", "write", "doc:1")).allowed
    with pytest.raises(Forbidden):
        await authz.aauthorize("user:v", "write", "doc:1")
    with pytest.raises(NotFound):
        await authz.aauthorize("user:x", "write", "doc:1")


class Failing(BaseBackend):
    """A backend that fails the way remote engines do."""

    name = "failing"

    def __init__(self, exc: BaseException | None = None, answer: Any = None,
                 delay: float = 0.0) -> None:
        self.exc = exc
        self.answer = answer
        self.delay = delay
        self.calls = 0

    def version(self) -> Hashable | None:
        return None

    def _answer(self) -> Any:
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        return self.answer

    def check(self, principal: Any, action: str, resource: Any, context: Any = None) -> Any:
        return self._answer()

    async def acheck(self, principal: Any, action: str, resource: Any, context: Any = None) -> Any:
        await asyncio.sleep(self.delay)
        return self._answer()

    def list_resources(self, *args: Any) -> Any:
        return self._answer()


@pytest.mark.parametrize(
    "backend",
    [Failing(ConnectionError("refused")), Failing(TimeoutError()), Failing(ValueError("bad json")),
     Failing(answer=True), Failing(answer={"allow": True}), Failing(answer=None),
     Failing(RecursionError())],
)
def test_a_failing_backend_denies_with_backend_error(backend: Failing) -> None:
    a = Authorizer(backend=backend)
    decision = a.check("user:a", "read", "doc:1")
    assert not decision.allowed
    assert decision.reasons[0].kind == "backend_error"
    with pytest.raises(NotFound):
        a.authorize("user:a", "read", "doc:1")
    assert a.list_resources("user:a", "read", "doc") == frozenset()
    assert [d.allowed for d in a.check_many([("user:a", "read", "doc:1")])] == [False]


def test_backend_errors_can_raise_instead() -> None:
    a = Authorizer(backend=Failing(ConnectionError("refused")), on_backend_error="raise")
    with pytest.raises(BackendError):
        a.check("user:a", "read", "doc:1")


async def test_an_async_backend_that_hangs_denies_after_the_timeout() -> None:
    a = Authorizer(backend=Failing(answer=True, delay=5), timeout=0.05)
    decision = await a.acheck("user:a", "read", "doc:1")
    assert not decision.allowed and decision.reasons[0].kind == "backend_error"


def test_configuration_errors_are_loud() -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        Authorizer()
    with pytest.raises(ConfigurationError, match="exactly one"):
        Authorizer(POLICY, backend=Failing())
    with pytest.raises(ConfigurationError, match="Backend protocol"):
        Authorizer(backend=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="on_backend_error"):
        Authorizer(POLICY, on_backend_error="maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timeout"):
        Authorizer(POLICY, timeout=-1)
    with pytest.raises(ConfigurationError, match="store"):
        Authorizer(backend=Failing(), data={"relationships": []})


def test_local_only_features_say_so_on_a_remote_backend() -> None:
    a = Authorizer(backend=Failing())
    with pytest.raises(NotImplementedError, match="local evaluator"):
        a.explain("user:a", "read", "doc:1")
    with pytest.raises(NotImplementedError, match="no relationship writes"):
        a.add("doc:1#viewer@user:a")
