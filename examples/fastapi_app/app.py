"""A multi-tenant document service whose every route agentauthz protects.

Run it (see README.md)::

    uvicorn --app-dir examples fastapi_app.app:app --host 127.0.0.1 --port 8000

Each route shows one way to enforce: a filtered list (``allowed_resources``),
a dependency that authorizes before the handler runs (``require``), and the
``@authorize`` decorator on a plain sync handler. None of the handlers checks
anything itself, and none of them can forget to.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

import threading
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from agentauthz import Authorizer, Decision, NotFound, authorize, current_principal
from agentauthz.integrations.fastapi import AgentAuthz, allowed_resources, bearer_principal, require

HERE = Path(__file__).resolve().parent


class Document(BaseModel):
    id: str
    title: str
    body: str
    classification: str


class DocumentSummary(BaseModel):
    id: str
    title: str


class DocumentEdit(BaseModel):
    title: str | None = None
    body: str | None = None


class Export(BaseModel):
    id: str
    format: str
    content: str


class Library:
    """The service's own records: folders, documents and who belongs where.

    agentauthz does not read these: :meth:`relationships` and
    :meth:`attributes` turn them into what the policy decides on, the way a
    service would keep its authorization data in step with its database.
    """

    def __init__(self, seed: dict[str, Any]) -> None:
        self.principals: dict[str, dict[str, Any]] = seed["principals"]
        self.teams: dict[str, dict[str, Any]] = seed["teams"]
        self.folders: dict[str, dict[str, Any]] = seed["folders"]
        self.documents: dict[str, dict[str, Any]] = {
            doc_id: dict(doc) for doc_id, doc in seed["documents"].items()}
        self._lock = threading.Lock()

    def relationships(self) -> list[str]:
        rels = [f"team:{team}#member@{member}"
                for team, spec in self.teams.items() for member in spec["members"]]
        for folder, spec in self.folders.items():
            rels += [f"folder:{folder}#owner@team:{team}#member" for team in spec.get("owners", [])]
            rels += [f"folder:{folder}#viewer@team:{team}#member" for team in spec.get("viewers", [])]
        rels += [f"document:{doc_id}#parent@folder:{doc['folder']}"
                 for doc_id, doc in self.documents.items()]
        return rels

    def attributes(self) -> dict[str, dict[str, Any]]:
        attrs = {principal: dict(spec) for principal, spec in self.principals.items()}
        for doc_id, doc in self.documents.items():
            attrs[f"document:{doc_id}"] = {"tenant": self.folders[doc["folder"]]["tenant"],
                                           "classification": doc["classification"]}
        return attrs

    def get(self, doc_id: str) -> Document:
        with self._lock:
            doc = self.documents.get(doc_id)
            if doc is None:
                # only reachable if the records and the relationships disagree; answer
                # exactly as a denied read does
                raise NotFound(None, f"no document {doc_id!r}")
            return Document(id=doc_id, title=doc["title"], body=doc["body"],
                            classification=doc["classification"])

    def edit(self, doc_id: str, edit: DocumentEdit) -> Document:
        with self._lock:
            doc = self.documents.get(doc_id)
            if doc is None:
                raise NotFound(None, f"no document {doc_id!r}")
            doc.update(edit.model_dump(exclude_none=True))
        return self.get(doc_id)


def build_authorizer(library: Library) -> Authorizer:
    authz = Authorizer(HERE / "policy.yaml")
    authz.write(add=library.relationships())
    for entity, attrs in library.attributes().items():
        authz.set_attributes(entity, attrs)
    return authz


def create_app(seed: Path = HERE / "seed.yaml") -> FastAPI:
    """A fresh service: its own records, authorizer and app (tests build one each)."""
    data = yaml.safe_load(seed.read_text(encoding="utf-8"))
    library = Library(data)
    authz = build_authorizer(library)
    tokens: dict[str, str] = data["tokens"]

    app = FastAPI(title="Documents", summary="A multi-tenant document service guarded by agentauthz")
    app.state.library = library
    app.state.authz = authz
    AgentAuthz(authz, principal=bearer_principal(tokens.get, blocking=False)).install(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/me")
    async def me() -> dict[str, str | None]:
        principal = current_principal()
        return {"principal": None if principal is None else str(principal)}

    @app.get("/documents")
    async def list_documents(
            readable: Annotated[frozenset[str], Depends(allowed_resources("read", "document"))],
    ) -> list[DocumentSummary]:
        docs = (library.get(key.removeprefix("document:")) for key in sorted(readable))
        return [DocumentSummary(id=doc.id, title=doc.title) for doc in docs]

    @app.get("/documents/{doc_id}")
    async def read_document(
            doc_id: str,
            decision: Annotated[Decision, Depends(require("read", "document", id_param="doc_id"))],
    ) -> Document:
        return library.get(doc_id)

    @app.put("/documents/{doc_id}")
    async def edit_document(
            doc_id: str, edit: DocumentEdit,
            decision: Annotated[Decision, Depends(require("write", "document", id_param="doc_id"))],
    ) -> Document:
        return library.edit(doc_id, edit)

    # A plain sync handler: FastAPI runs it in a worker thread, and the principal
    # bound for this request goes with it.
    @app.post("/documents/{doc_id}/export")
    @authorize("export", "document", id_param="doc_id")
    def export_document(doc_id: str) -> Export:
        doc = library.get(doc_id)
        return Export(id=doc.id, format="markdown", content=f"# {doc.title}\n\n{doc.body}\n")

    return app


app = create_app()
