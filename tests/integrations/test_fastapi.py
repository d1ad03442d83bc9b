"""agentauthz.integrations.fastapi: resolvers, require, allowed_resources, error mapping, binding."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, some of
# which name dependencies local to a test.

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.testclient import TestClient

from agentauthz import (
    ApprovalRequired,
    AuthorizationError,
    Authorizer,
    BackendError,
    ConfigurationError,
    Decision,
    Entity,
    Forbidden,
    Outcome,
    Reason,
    acting_as,
    authorize,
    current_authorizer,
    current_principal,
)
from agentauthz.backends import BaseBackend
from agentauthz.integrations.fastapi import (
    AgentAuthz,
    BearerPrincipal,
    HeaderPrincipal,
    allowed_resources,
    bearer_principal,
    header_principal,
    require,
)

POLICY = """
types:
  user: {attributes: {tenant: string}}
  agent: {}
  document:
    attributes: {tenant: string}
    relations: {viewer: [user, agent], editor: [user]}
    permissions: {read: viewer | editor, write: editor}
rules:
  - id: no-writes-after-hours
    effect: forbid
    action: write
    resource: document
    when: has(context.after_hours) && context.after_hours
  - id: tenant-isolation
    effect: forbid
    when: has(resource.tenant) && has(principal.tenant) && resource.tenant != principal.tenant
agents:
  - {id: agent:bot, owner: user:e, purpose: reads documents for its owner}
"""
PROBLEM_TYPE = "application/problem+json"
GENERIC_403 = "The principal may not perform this action on this resource."


@pytest.fixture
def authz() -> Authorizer:
    a = Authorizer(POLICY)
    a.add("document:1#viewer@user:v", "document:1#editor@user:e", "document:2#editor@user:e",
          "document:1#viewer@agent:bot", "document:3#editor@user:e")
    a.set_attributes("document:3", {"tenant": "acme"})
    return a


def make_app(authz: Authorizer, resolver: Any = None, bind: Any = "middleware") -> FastAPI:
    """An app with the usual routes, its principal read from X-User unless told otherwise."""
    app = FastAPI()
    AgentAuthz(authz, principal=resolver or header_principal("X-User")).install(app, bind=bind)

    @app.get("/whoami")
    async def whoami() -> dict[str, Any]:
        principal = current_principal()
        return {"principal": None if principal is None else str(principal),
                "entity": isinstance(principal, Entity)}

    @app.get("/documents")
    async def listing(ids: Annotated[frozenset[str], Depends(allowed_resources("read", "document"))]
                      ) -> list[str]:
        return sorted(ids)

    @app.get("/documents/{document_id}")
    async def read(document_id: str, decision: Annotated[Decision, Depends(require("read", "document"))]
                   ) -> dict[str, Any]:
        return {"id": document_id, "allowed": decision.allowed, "decision_id": decision.decision_id}

    @app.put("/documents/{document_id}")
    async def write(document_id: str,
                    decision: Annotated[Decision, Depends(require("write", "document"))]) -> str:
        return document_id

    return app


def client_for(app: FastAPI) -> TestClient:
    return TestClient(app)


@pytest.fixture(params=["middleware", "dependency"])
def client(authz: Authorizer, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    with TestClient(make_app(authz, bind=request.param)) as c:
        yield c


def user(name: str) -> dict[str, str]:
    return {"X-User": name}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_TYPE
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert set(body) <= {"type", "title", "status", "detail", "decision_id", "approval_request_id"}
    return body


# ----------------------------------------------------------------------------- resolvers
def test_header_principal_reads_the_id_and_fixes_the_type(client: TestClient) -> None:
    assert client.get("/whoami", headers=user("v")).json()["principal"] == "user:v"
    # a client cannot choose another type: the whole value is the user id
    assert client.get("/whoami", headers=user("agent:bot")).json()["principal"] == "user:agent:bot"


@pytest.mark.parametrize("headers", [
    {}, {"X-User": ""}, {"X-User": "a b"}, {"X-User": "a#b"}, {"X-User": "*"},
    {"X-User": "x" * 2000}, [("X-User", "v"), ("X-User", "e")],
])
def test_a_missing_or_malformed_header_is_nobody(client: TestClient, headers: Any) -> None:
    assert client.get("/whoami", headers=headers).json()["principal"] is None
    body = problem(client.get("/documents/1", headers=headers), 401)
    assert "decision_id" not in body
    problem(client.get("/documents", headers=headers), 401)


def test_header_principal_with_the_type_in_the_value(authz: Authorizer) -> None:
    with client_for(make_app(authz, header_principal("X-Principal", type=None))) as c:
        assert c.get("/documents/1", headers={"X-Principal": "agent:bot"}).status_code == 200
        problem(c.get("/documents/1", headers={"X-Principal": "bot"}), 401)


def test_resolvers_reject_bad_configuration() -> None:
    with pytest.raises(ConfigurationError, match="type name"):
        header_principal("X-User", type="not a type")
    with pytest.raises(ConfigurationError, match="header name"):
        header_principal("")
    with pytest.raises(ConfigurationError, match="decode"):
        bearer_principal("not callable")  # type: ignore[arg-type]


TOKENS = {"t-v": "user:v", "t-e": "user:e", "t-junk": "not-a-principal", "t-int": 42,
          "t-entity": Entity("user", "e"), "t-attrs": Entity("user", "e", {"tenant": "globex"})}


def decode(token: str) -> Any:
    if token == "t-raise":
        raise ValueError(f"signature mismatch for {token}")
    return TOKENS.get(token)


async def adecode(token: str) -> Any:
    await asyncio.sleep(0)
    return decode(token)


@pytest.mark.parametrize("decoder", [decode, adecode], ids=["sync", "async"])
def test_bearer_principal(authz: Authorizer, decoder: Callable[[str], Any]) -> None:
    with client_for(make_app(authz, bearer_principal(decoder))) as c:
        def who(token: str) -> Any:
            return c.get("/whoami", headers={"Authorization": f"Bearer {token}"}).json()

        assert who("t-v") == {"principal": "user:v", "entity": False}
        assert c.get("/documents/1", headers={"Authorization": "bearer t-v"}).status_code == 200
        # an Entity without attributes is reduced to its string; with attributes it is kept
        assert who("t-entity") == {"principal": "user:e", "entity": False}
        assert who("t-attrs") == {"principal": "user:e", "entity": True}


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "}, {"Authorization": "Basic dTpw"},
    {"Authorization": "t-v"}, {"Authorization": "Bearer unknown"}, {"Authorization": "Bearer t-junk"},
    {"Authorization": "Bearer t-int"}, {"Authorization": "Bearer t-raise"},
    [("Authorization", "Bearer t-v"), ("Authorization", "Bearer t-e")],
])
def test_no_bad_token_is_a_principal_or_a_500(authz: Authorizer, headers: Any,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agentauthz")
    with client_for(make_app(authz, bearer_principal(decode))) as c:
        response = c.get("/documents/1", headers=headers)
        problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
    for record in caplog.records:  # a refused token is logged, but never quoted
        assert "t-raise" not in record.getMessage()


def test_the_principal_of_an_attributed_entity_reaches_conditions(authz: Authorizer) -> None:
    with client_for(make_app(authz, bearer_principal(decode))) as c:
        assert c.get("/documents/3", headers={"Authorization": "Bearer t-entity"}).status_code == 200
        # the same user, carrying tenant=globex from the token, is held to tenant isolation
        problem(c.get("/documents/3", headers={"Authorization": "Bearer t-attrs"}), 404)


def test_any_fastapi_dependency_is_a_resolver(authz: Authorizer) -> None:
    def from_api_key(x_api_key: Annotated[str | None, Header()] = None) -> str | None:
        return {"key-e": "user:e", "key-bad": "user:"}.get(x_api_key or "")

    async def from_request(request: Request) -> Entity | None:
        name = request.query_params.get("as")
        return Entity("user", name) if name else None

    with client_for(make_app(authz, from_api_key)) as c:
        assert c.put("/documents/1", headers={"X-API-Key": "key-e"}).status_code == 200
        problem(c.put("/documents/1", headers={"X-API-Key": "key-bad"}), 401)  # malformed: nobody
        problem(c.put("/documents/1"), 401)
    with client_for(make_app(authz, from_request)) as c:
        assert c.get("/whoami", params={"as": "v"}).json()["principal"] == "user:v"


@pytest.mark.parametrize("answer", [42, b"user:e", ["user:e"], "user", "user:*"])
def test_a_resolver_answering_nonsense_means_nobody(authz: Authorizer, answer: object,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def resolver() -> object:
        return answer

    caplog.set_level(logging.INFO, logger="agentauthz")
    with client_for(make_app(authz, resolver)) as c:
        problem(c.get("/documents/1"), 401)
    assert caplog.records, "a resolver's nonsense answer is logged"


def test_resolvers_appear_in_openapi(authz: Authorizer) -> None:
    for resolver, scheme in [(header_principal("X-User"), {"type": "apiKey", "in": "header",
                                                           "name": "X-User"}),
                             (bearer_principal(decode, bearer_format="JWT"),
                              {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})]:
        schemes = make_app(authz, resolver, bind="dependency").openapi()["components"][
            "securitySchemes"]
        assert schemes == {type(resolver).__name__: scheme}
    assert isinstance(header_principal(), HeaderPrincipal)
    assert isinstance(bearer_principal(decode), BearerPrincipal)


# ----------------------------------------------------------------------------- error mapping
def test_403_and_404(client: TestClient) -> None:
    forbidden = problem(client.put("/documents/1", headers=user("v")), 403)
    assert forbidden["title"] == "Forbidden" and forbidden["detail"] == GENERIC_403
    assert forbidden["decision_id"]
    hidden = problem(client.get("/documents/2", headers=user("v")), 404)
    missing = problem(client.get("/documents/does-not-exist", headers=user("v")), 404)
    assert hidden["decision_id"] != missing["decision_id"]
    hidden.pop("decision_id"), missing.pop("decision_id")
    assert hidden == missing == {"type": "about:blank", "title": "Not Found", "status": 404,
                                 "detail": "The requested resource was not found."}


def test_bodies_name_no_internals_and_the_log_explains(client: TestClient,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agentauthz.decisions")
    assert client.put("/documents/1", headers=user("e")).status_code == 200  # allows are not logged
    forbidden = client.put("/documents/1", headers=user("v"))
    body = problem(forbidden, 403)
    for internal in ("viewer", "editor", "user:v", "document:1", "default_deny", "relation", "rule"):
        assert internal not in forbidden.text
    logged = [r.getMessage() for r in caplog.records if r.name == "agentauthz.decisions"]
    assert len(logged) == 1
    assert body["decision_id"] in logged[0] and "PUT /documents/1 -> 403" in logged[0]
    assert "user:v" in logged[0] and "default_deny" in logged[0]


def test_the_decision_log_is_silent_unless_asked(client: TestClient,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agentauthz.decisions")
    problem(client.put("/documents/1", headers=user("v")), 403)
    assert not [r for r in caplog.records if r.name == "agentauthz.decisions"]


def _deny(outcome: Outcome = Outcome.DENY) -> Decision:
    return Decision(False, outcome, (Reason("forbid", "secret reason text", rule="secret-rule"),), "v1")


class Custom(AuthorizationError):
    pass


@pytest.mark.parametrize(("error", "status", "title", "extra"), [
    (lambda d: ApprovalRequired(d, "approval-42"), 403, "Forbidden",
     {"approval_request_id": "approval-42"}),
    (lambda d: Forbidden(d), 403, "Forbidden", {}),
    (lambda d: Custom(d), 403, "Forbidden", {}),
    (lambda d: BackendError("engine at 10.0.0.7 refused"), 503, "Service Unavailable", {}),
])
def test_every_error_maps_to_a_problem(authz: Authorizer, error: Callable[[Decision], Exception],
                                       status: int, title: str, extra: dict[str, str]) -> None:
    app = make_app(authz)
    decision = _deny(Outcome.APPROVAL_REQUIRED)

    @app.post("/raise")
    async def raiser() -> None:
        raise error(decision)

    with client_for(app) as c:
        response = c.post("/raise", headers=user("v"))
    body = problem(response, status)
    assert body["title"] == title
    for key, value in extra.items():
        assert body[key] == value
    if isinstance(error(decision), AuthorizationError):
        assert body["decision_id"] == decision.decision_id
    for secret in ("secret", "10.0.0.7", "refused"):
        assert secret not in response.text


def test_a_failing_backend_is_503_when_it_raises_and_a_deny_otherwise() -> None:
    class Down(BaseBackend):
        name = "down"

        def version(self) -> Hashable | None:
            return None

        async def acheck(self, *args: Any, **kwargs: Any) -> Decision:
            raise ConnectionError("refused")

        async def alist_resources(self, *args: Any, **kwargs: Any) -> frozenset[str]:
            raise ConnectionError("refused")

    with client_for(make_app(Authorizer(backend=Down(), on_backend_error="raise"))) as c:
        assert problem(c.get("/documents/1", headers=user("v")), 503)["title"] == "Service Unavailable"
        problem(c.get("/documents", headers=user("v")), 503)
    with client_for(make_app(Authorizer(backend=Down()))) as c:
        problem(c.get("/documents/1", headers=user("v")), 404)  # deny on doubt
        assert c.get("/documents", headers=user("v")).json() == []


def test_problem_response_can_be_overridden(authz: Authorizer) -> None:
    class Branded(AgentAuthz):
        def problem_response(self, request: Request, exc: Exception) -> Any:
            response = super().problem_response(request, exc)
            response.headers["X-Problem"] = type(exc).__name__
            return response

    app = FastAPI()
    Branded(authz, principal=header_principal()).install(app)

    @app.get("/documents/{document_id}")
    async def read(decision: Annotated[Decision, Depends(require("read", "document"))]) -> str:
        return "ok"

    with client_for(app) as c:
        assert c.get("/documents/9", headers=user("v")).headers["x-problem"] == "NotFound"


# ----------------------------------------------------------------------------- require
def test_require_reads_the_id_from_path_then_query(authz: Authorizer) -> None:
    @dataclass
    class Doc:
        id: str
        __authz_type__ = "document"

    app = make_app(authz)

    @app.get("/by-id/{id}")
    async def by_id(d: Annotated[Decision, Depends(require("read", "document"))]) -> str:
        return "ok"

    @app.get("/custom/{key}")
    async def custom(d: Annotated[Decision, Depends(require("read", Doc, id_param="key"))]) -> str:
        return "ok"

    @app.get("/query")
    async def query(d: Annotated[Decision, Depends(require("read", "document"))]) -> str:
        return "ok"

    @app.get("/int/{document_id:int}")
    async def as_int(document_id: int, d: Annotated[Decision, Depends(require("read", "document"))]
                     ) -> int:
        return document_id

    with client_for(app) as c:
        v = user("v")
        assert c.get("/by-id/1", headers=v).status_code == 200
        assert c.get("/custom/1", headers=v).status_code == 200
        problem(c.get("/custom/2", headers=v), 404)
        assert c.get("/query", params={"document_id": "1"}, headers=v).status_code == 200
        assert c.get("/query", params={"id": "1"}, headers=v).status_code == 200
        assert c.get("/int/1", headers=v).json() == 1
        # no id, or two: nothing to decide on
        for params in ({}, {"document_id": ["1", "2"]}, {"other": "1"}):
            response = c.get("/query", params=params, headers=v)
            assert response.status_code == 422
            assert "'document_id' or 'id'" in response.json()["detail"]


def test_require_denies_malformed_ids_without_an_error(client: TestClient) -> None:
    for bad in ("a b", "a%23b", "%2A", "x" * 3000):
        problem(client.get(f"/documents/{bad}", headers=user("v")), 404)


def test_require_context(authz: Authorizer) -> None:
    async def async_context(request: Request) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"after_hours": request.headers.get("x-after-hours") == "1"}

    app = make_app(authz)
    for name, context in [("fixed", {"after_hours": True}),
                          ("sync", lambda r: {"after_hours": r.headers.get("x-after-hours") == "1"}),
                          ("async", async_context)]:
        app.add_api_route(f"/{name}/{{document_id}}", lambda: "ok", methods=["PUT"],
                          dependencies=[Depends(require("write", "document", context=context))])

    with client_for(app) as c:
        e = user("e")
        problem(c.put("/fixed/1", headers=e), 403)
        for name in ("sync", "async"):
            assert c.put(f"/{name}/1", headers=e).status_code == 200
            problem(c.put(f"/{name}/1", headers={**e, "X-After-Hours": "1"}), 403)


def test_require_with_its_own_authorizer(authz: Authorizer) -> None:
    other = Authorizer(POLICY)
    other.add("document:1#editor@user:v")
    app = make_app(authz)

    @app.put("/other/{document_id}")
    async def edit(d: Annotated[Decision, Depends(require("write", "document", authz=other))]) -> str:
        return "ok"

    with client_for(app) as c:
        assert c.put("/other/1", headers=user("v")).status_code == 200
        problem(c.put("/documents/1", headers=user("v")), 403)


def test_require_error_factories_can_be_overridden(authz: Authorizer) -> None:
    from fastapi import HTTPException

    class Strict(require):
        def make_unauthenticated_error(self) -> Exception:
            return HTTPException(status_code=401, detail="log in", headers={"WWW-Authenticate": "X"})

        def make_missing_id_error(self) -> Exception:
            return HTTPException(status_code=400, detail="which document?")

    app = make_app(authz)

    @app.get("/strict")
    async def strict(d: Annotated[Decision, Depends(Strict("read", "document"))]) -> str:
        return "ok"

    with client_for(app) as c:
        assert c.get("/strict").json() == {"detail": "log in"}
        assert c.get("/strict", headers=user("v")).status_code == 400


def test_require_and_allowed_resources_check_their_configuration() -> None:
    with pytest.raises(ConfigurationError, match="action"):
        require("", "document")
    with pytest.raises(ConfigurationError, match="type name"):
        require("read", "no such type")
    with pytest.raises(ConfigurationError, match="id_param"):
        require("read", "document", id_param="")
    with pytest.raises(ConfigurationError, match="context"):
        require("read", "document", context=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Authorizer"):
        allowed_resources("read", "document", authz="authz")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="Authorizer"):
        AgentAuthz("authz", principal=header_principal())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="dependency"):
        AgentAuthz(Authorizer(POLICY), principal="X-User")


# ----------------------------------------------------------------------------- allowed_resources
def test_allowed_resources_filters(client: TestClient, authz: Authorizer) -> None:
    assert client.get("/documents", headers=user("v")).json() == ["document:1"]
    assert client.get("/documents", headers=user("e")).json() == ["document:1", "document:2",
                                                                  "document:3"]
    assert client.get("/documents", headers=user("nobody")).json() == []
    app = make_app(authz)

    @app.get("/writable")
    async def writable(ids: Annotated[frozenset[str], Depends(allowed_resources(
            "write", "document", context=lambda r: {"after_hours": "late" in r.query_params}))]
                       ) -> list[str]:
        return sorted(ids)

    with client_for(app) as c:
        assert len(c.get("/writable", headers=user("e")).json()) == 3
        assert c.get("/writable", params={"late": ""}, headers=user("e")).json() == []


# ----------------------------------------------------------------------------- install and binding
def test_install_before_routes(authz: Authorizer) -> None:
    guard = AgentAuthz(authz, principal=header_principal())
    late = FastAPI()

    @late.get("/early")
    async def early() -> None: ...

    with pytest.raises(ConfigurationError, match="before the routes"):
        guard.install(late, bind="dependency")
    app = FastAPI()
    assert guard.install(app, bind="dependency") is app
    guard.install(app, bind="dependency")  # a second time changes nothing
    assert len(app.router.dependencies) == 1

    router = APIRouter()

    @router.get("/routed/{document_id}")
    async def routed(d: Annotated[Decision, Depends(require("read", "document"))]) -> Any:
        return current_principal()

    app.include_router(router, prefix="/api")
    with client_for(app) as c:
        assert c.get("/api/routed/1", headers=user("v")).json() == "user:v"


def test_the_apps_own_dependencies_see_the_principal(authz: Authorizer) -> None:
    seen: list[object] = []

    def audit() -> None:
        seen.append(current_principal())

    app = FastAPI(dependencies=[Depends(audit)])
    AgentAuthz(authz, principal=header_principal()).install(app)

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    with client_for(app) as c:
        c.get("/ping", headers=user("v"))
        c.get("/ping")
    assert seen == ["user:v", None]


def test_require_without_install_says_what_to_do(authz: Authorizer) -> None:
    app = FastAPI()

    @app.get("/documents/{document_id}")
    async def read(d: Annotated[Decision, Depends(require("read", "document"))]) -> str:
        return "ok"

    with client_for(app) as c, pytest.raises(ConfigurationError, match=r"install\(app\)"):
        c.get("/documents/1", headers=user("v"))


def test_a_router_made_before_install_takes_the_dependency(authz: Authorizer) -> None:
    guard = AgentAuthz(authz, principal=header_principal())
    app = FastAPI()

    @app.get("/documents/{document_id}", dependencies=[Depends(guard.current_principal)])
    async def read(d: Annotated[Decision, Depends(require("read", "document"))]) -> Any:
        return current_principal()

    with client_for(app) as c:
        assert c.get("/documents/1", headers=user("v")).json() == "user:v"


def test_authorize_decorator_on_sync_and_async_handlers(authz: Authorizer) -> None:
    app = make_app(authz)

    @app.put("/sync/{doc_id}")
    @authorize("write", "document", id_param="doc_id")
    def sync_edit(doc_id: str) -> dict[str, Any]:
        return {"doc": doc_id, "principal": current_principal(),
                "bound": current_authorizer() is authz}

    @app.put("/async/{doc_id}")
    @authorize("write", "document:{doc_id}")
    async def async_edit(doc_id: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"doc": doc_id, "principal": current_principal(),
                "bound": current_authorizer() is authz}

    with client_for(app) as c:
        for kind in ("sync", "async"):
            assert c.put(f"/{kind}/1", headers=user("e")).json() == {
                "doc": "1", "principal": "user:e", "bound": True}
            problem(c.put(f"/{kind}/1", headers=user("v")), 403)
            problem(c.put(f"/{kind}/2", headers=user("v")), 404)
            problem(c.put(f"/{kind}/1"), 401)


async def test_concurrent_requests_never_see_each_others_principal(authz: Authorizer) -> None:
    app = make_app(authz)

    @app.get("/echo-async")
    async def echo_async() -> Any:
        seen = []
        for _ in range(5):
            await asyncio.sleep(0)
            seen.append(current_principal())
        return seen

    @app.get("/echo-sync")
    def echo_sync() -> Any:
        return [current_principal()]

    @app.get("/echo-decorated/{document_id}")
    @authorize("read", "document")
    async def echo_decorated(document_id: str) -> Any:
        await asyncio.sleep(0)
        return [current_principal()]

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        async def ask(i: int, path: str) -> None:
            name = f"u{i}" if path != "/echo-decorated/1" else ("v" if i % 2 else "e")
            response = await c.get(path, headers=user(name))
            assert response.status_code == 200, response.text
            assert set(response.json()) == {f"user:{name}"}

        await asyncio.gather(*(ask(i, path) for i in range(60)
                               for path in ("/echo-async", "/echo-sync", "/echo-decorated/1")))
        assert current_principal() is None  # nothing leaks into the caller's context
        assert current_authorizer() is None

        # a request starts from nobody, whatever context the server runs in
        with acting_as("user:ambient"):
            response = await c.get("/echo-sync")
            assert response.json() == [None]
            assert current_principal() == "user:ambient"


# ----------------------------------------------------------------------------- the optional import
def test_missing_fastapi_says_which_extra_to_install() -> None:
    code = ("import sys; sys.modules['fastapi'] = None\n"
            "import agentauthz.integrations\n"
            "try:\n"
            "    import agentauthz.integrations.fastapi\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'agentauthz[fastapi]'" in out.stdout


def test_the_integrations_package_imports_no_framework() -> None:
    code = ("import sys, agentauthz.integrations; "
            "print([m for m in ('fastapi', 'starlette', 'langchain') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_middleware_binding_covers_routes_added_before_install(authz: Authorizer) -> None:
    app = FastAPI()

    @app.get("/early")
    async def early() -> dict[str, Any]:
        return {"principal": str(current_principal())}

    AgentAuthz(authz, principal=header_principal("X-User")).install(app)
    with TestClient(app) as c:
        assert c.get("/early", headers=user("v")).json() == {"principal": "user:v"}
    with pytest.raises(ConfigurationError, match="bind"):
        AgentAuthz(authz, principal=header_principal("X-User")).install(FastAPI(), bind="x")  # type: ignore[arg-type]
