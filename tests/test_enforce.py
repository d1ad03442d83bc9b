"""acting_as and @authorize: sync and async, nesting, and isolation across threads and tasks."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest

from agentauthz import (
    Authorizer,
    ConfigurationError,
    Forbidden,
    NotFound,
    Unauthenticated,
    acting_as,
    authorize,
    current_principal,
)

POLICY = """
types:
  user: {}
  document:
    relations: {viewer: [user], editor: [user]}
    permissions: {read: viewer | editor, write: editor}
"""


@pytest.fixture
def authz() -> Authorizer:
    a = Authorizer(POLICY)
    a.add("document:1#viewer@user:v", "document:1#editor@user:e", "document:2#editor@user:v")
    return a


def test_acting_as_nests_and_restores(authz: Authorizer) -> None:
    assert current_principal() is None
    with authz.acting_as("user:a"):
        assert current_principal() == "user:a"
        with authz.acting_as("user:b"):
            assert current_principal() == "user:b"
        assert current_principal() == "user:a"
    assert current_principal() is None


def test_acting_as_restores_after_an_exception(authz: Authorizer) -> None:
    with pytest.raises(ZeroDivisionError), authz.acting_as("user:a"):
        1 / 0  # noqa: B018
    assert current_principal() is None


def test_acting_as_as_a_decorator(authz: Authorizer) -> None:
    @authz.acting_as("user:d")
    def who() -> object:
        return current_principal()

    assert who() == "user:d"
    assert current_principal() is None


def test_acting_as_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="Entity"):
        acting_as(42)  # type: ignore[arg-type]


def test_decorator_with_a_template(authz: Authorizer) -> None:
    @authorize("write", "document:{doc_id}")
    def edit(doc_id: str, text: str) -> str:
        return f"{doc_id}:{text}"

    with authz.acting_as("user:e"):
        assert edit("1", "hi") == "1:hi"
    with authz.acting_as("user:v"), pytest.raises(Forbidden):
        edit("1", "hi")
    with authz.acting_as("user:nobody"), pytest.raises(NotFound):
        edit(doc_id="1", text="hi")


def test_decorator_with_a_type_and_id_param(authz: Authorizer) -> None:
    @authorize("read", "document", authz=authz)
    def read(document_id: str) -> str:
        return document_id

    @authorize("read", "document", id_param="key", authz=authz)
    def read_key(key: str) -> str:
        return key

    with acting_as("user:v"):
        assert read("1") == "1"
        assert read_key("1") == "1"
        with pytest.raises(NotFound):
            read("3")


def test_decorator_with_a_class_and_a_callable(authz: Authorizer) -> None:
    @dataclass
    class Document:
        id: str
        __authz_type__ = "document"

    @authorize("write", Document, authz=authz)
    def save(doc: Document) -> str:
        return doc.id

    @authorize("write", lambda d: f"document:{d['n']}", authz=authz)
    def save_dict(d: dict[str, str]) -> str:
        return d["n"]

    with acting_as("user:v"):
        assert save(Document("2")) == "2"
        assert save_dict({"n": "2"}) == "2"
        with pytest.raises(Forbidden):
            save(Document("1"))


def test_decorator_needs_a_principal_and_an_authorizer(authz: Authorizer) -> None:
    @authorize("read", "document:{doc_id}", authz=authz)
    def read(doc_id: str) -> str:
        return doc_id

    with pytest.raises(Unauthenticated):
        read("1")

    @authorize("read", "document:{doc_id}")
    def orphan(doc_id: str) -> str:
        return doc_id

    with acting_as("user:v"), pytest.raises(ConfigurationError, match="no Authorizer"):
        orphan("1")


def test_bad_decorations_fail_at_definition() -> None:
    with pytest.raises(ConfigurationError, match="no parameter"):
        @authorize("read", "document:{nope}")
        def f(doc_id: str) -> None: ...
    with pytest.raises(ConfigurationError, match="which argument"):
        @authorize("read", "document")
        def g(x: str) -> None: ...
    with pytest.raises(ConfigurationError, match="action"):
        authorize("", "document")


async def test_async_functions_and_async_with(authz: Authorizer) -> None:
    @authorize("write", "document:{doc_id}")
    async def edit(doc_id: str) -> str:
        await asyncio.sleep(0)
        return doc_id

    async with authz.acting_as("user:e"):
        assert await edit("1") == "1"
    async with authz.acting_as("user:v"):
        with pytest.raises(Forbidden):
            await edit("1")
    assert current_principal() is None


async def test_concurrent_tasks_never_see_each_others_principal(authz: Authorizer) -> None:
    seen: dict[str, list[object]] = {}

    async def task(name: str) -> None:
        async with authz.acting_as(f"user:{name}"):
            for _ in range(20):
                await asyncio.sleep(0)
                seen.setdefault(name, []).append(current_principal())

    await asyncio.gather(*(task(f"t{i}") for i in range(20)))
    for name, values in seen.items():
        assert set(values) == {f"user:{name}"}


def test_threads_never_see_each_others_principal(authz: Authorizer) -> None:
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        with authz.acting_as(f"user:{i}"):
            barrier.wait()
            for _ in range(2000):
                if current_principal() != f"user:{i}":
                    errors.append(f"thread {i} saw {current_principal()}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current_principal() is None


def test_template_arguments_by_position_keyword_and_default(authz: Authorizer) -> None:
    @authorize("read", "document:{doc_id}", authz=authz)
    def read(doc_id: str = "1", *, verbose: bool = False) -> str:
        return doc_id

    @authorize("read", "{kind}:{doc_id}", authz=authz)
    def read_kind(kind: str, doc_id: str) -> str:
        return f"{kind}:{doc_id}"

    @authorize("read", "document:{doc_id}", authz=authz)
    def read_kw(*, doc_id: str) -> str:
        return doc_id

    with acting_as("user:v"):
        assert read() == "1"
        assert read("1") == "1"
        assert read(doc_id="1", verbose=True) == "1"
        assert read_kind("document", "1") == "document:1"
        assert read_kw(doc_id="1") == "1"
        with pytest.raises(NotFound):
            read("3")
        with pytest.raises(TypeError):
            read_kind("document")  # type: ignore[call-arg]
