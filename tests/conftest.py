from __future__ import annotations

from pathlib import Path

import pytest

from agentauthz import Authorizer

DOCS_POLICY = """
types:
  user:
    attributes: {tenant: string}
  agent:
    attributes: {tenant: string, risk: string}
  team:
    relations:
      member: [user, agent, team#member]
  folder:
    relations:
      owner: [team#member, user]
      viewer: [user, team#member, user:*]
      parent: [folder]
    permissions:
      read: viewer | owner | parent->read
      write: owner | parent->write
  document:
    attributes: {tenant: string, classification: string}
    relations:
      parent: [folder]
      owner: [user]
      reviewer: [user]
      banned: [user, agent]
    permissions:
      read: (owner | parent->read) - banned
      write: owner
      review: read & reviewer
      export: read
    fields:
      title: {}
      customer_email: {read: owner}
rules:
  - id: tenant-isolation
    effect: forbid
    when: has(resource.tenant) && has(principal.tenant) && resource.tenant != principal.tenant
  - id: no-export-of-confidential
    effect: forbid
    action: export
    resource: document
    when: resource.classification in ['confidential', 'restricted']
"""


@pytest.fixture
def authz() -> Authorizer:
    a = Authorizer(DOCS_POLICY)
    a.write(add=[
        "team:eng#member@user:alice",
        "team:all#member@team:eng#member",
        "folder:root#owner@team:all#member",
        "folder:sub#parent@folder:root",
        "folder:public#viewer@user:*",
        "document:1#parent@folder:root",
        "document:2#parent@folder:sub",
        "document:3#owner@user:bob",
        "document:4#parent@folder:public",
        "document:5#parent@folder:root",
        "document:5#banned@user:alice",
        "document:1#reviewer@user:alice",
    ])
    return a


@pytest.fixture
def tmp_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
