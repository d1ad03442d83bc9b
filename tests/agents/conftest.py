from __future__ import annotations

import pytest

from agentauthz import Authorizer

POLICY = """
types:
  user:
    attributes: {tenant: string}
  agent:
    attributes: {tenant: string}
  team:
    relations:
      member: [user, agent]
  folder:
    relations:
      viewer: [user, agent, team#member]
      editor: [user, agent, team#member]
    permissions:
      read: viewer | editor
      write: editor
  document:
    attributes: {tenant: string, classification: string}
    relations:
      parent: [folder]
      viewer: [user, agent]
      editor: [user, agent]
    permissions:
      read: viewer | editor | parent->read
      write: editor | parent->write
    fields:
      title: {}
      customer_email: {read: editor}
  ticket:
    relations:
      project: [project]
    permissions:
      create: project->member
  project:
    relations:
      member: [user, agent]
rules:
  - id: tenant-isolation
    effect: forbid
    when: has(resource.tenant) && has(principal.tenant) && resource.tenant != principal.tenant
agents:
  - id: agent:helper
    owner: user:alice
    purpose: answers questions about the team's documents
    risk: medium
    tools: [search_docs, create_ticket, export_csv]
  - id: agent:sub
    owner: user:alice
    purpose: summarises one document for agent:helper
    risk: low
  - id: agent:sleepy
    owner: team:support
    purpose: a paused batch job
    status: suspended
"""

DATA = {
    "relationships": [
        "team:support#member@user:alice",
        "team:support#member@agent:helper",
        "folder:shared#viewer@team:support#member",
        "document:a#parent@folder:shared",
        "document:b#parent@folder:shared",
        "document:secret#viewer@user:alice",     # alice only: the agent may not
        "document:agent-notes#editor@agent:helper",  # the agent only: alice may not
        "document:b#editor@user:alice",
        "document:b#editor@agent:helper",
        "document:a#viewer@agent:sub",
        "project:p7#member@user:alice",
        "project:p7#member@agent:helper",
        "ticket:t1#project@project:p7",
    ],
}


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer(POLICY, data=DATA)
