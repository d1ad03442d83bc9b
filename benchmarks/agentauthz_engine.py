"""agentauthz as an engine of the shared peer benchmark (``--extra-engine``).

    /tmp/peervenv/bin/python ../shared/bench/peers/run.py \
        --extra-engine "$PWD/benchmarks/agentauthz_engine.py:AgentauthzAdapter"

The three workloads are written in agentauthz's own policy language and the
data goes in through the public API only (``Authorizer.write`` and
``Authorizer.set_attributes``), inside ``load`` so that it is timed as setup.
``check`` prefixes the query's ids with their types, calls
``Authorizer.check`` and returns ``Decision.allowed``: no decision cache, no
precomputed answers, nothing derived from the query list.

W1 (RBAC) is one permit rule per role (principal ``role:rN#member``, the
role's actions, resource ``document``) plus ``role:rN#member@user:uM``
relationships, the same shape as the Cedar adapter's one policy per role.
W2 (ReBAC) is a schema: team members, folders owned by team members,
documents with an owner and a parent folder.  W3 (ABAC) is one permit rule
with a CEL condition over a stored resource attribute and the request
context.

The harness imports this file by path, so imports here are absolute.
"""
from __future__ import annotations

from peerbench.engines.base import Adapter, EngineUnavailable

W2_POLICY = """\
types:
  user: {}
  team:
    relations: {member: [user]}
  folder:
    relations: {owner: [team#member]}
    permissions: {read: owner}
  document:
    relations: {parent: [folder], owner: [user]}
    permissions: {read: "owner | parent->read"}
"""

W3_POLICY = """\
types:
  agent: {}
  resource:
    attributes: {tenant: string}
context:
  tenant: string
  data_classification: string
  agent_risk: string
rules:
  - id: export-same-tenant
    effect: permit
    action: export
    resource: resource
    when: >-
      resource.tenant == context.tenant
      && context.data_classification in ['public', 'internal']
      && context.agent_risk != 'high'
"""


def w1_policy(roles: dict[str, list[str]]) -> str:
    """One permit rule per role: its members may do the role's actions on any document."""
    lines = [
        "types:",
        "  user: {}",
        "  role:",
        "    relations: {member: [user]}",
        "  document: {}",
        "rules:",
    ]
    for role, actions in roles.items():
        lines.append(f"  - {{id: grant-{role}, effect: permit, principal: 'role:{role}#member', "
                     f"action: [{', '.join(actions)}], resource: document}}")
    return "\n".join(lines) + "\n"


def w1_tuples(data: dict) -> list[tuple[str, str, str]]:
    return [(f"role:{r}", "member", f"user:{u}")
            for u, roles in data["users"].items() for r in roles]


def w2_tuples(data: dict) -> list[tuple[str, str, str]]:
    out = [(f"team:{t}", "member", f"user:{u}")
           for t, members in data["teams"].items() for u in members]
    out += [(f"folder:{f}", "owner", f"team:{t}#member")
            for f, teams in data["folders"].items() for t in teams]
    for d, doc in data["documents"].items():
        out.append((f"document:{d}", "parent", f"folder:{doc['folder']}"))
        out.append((f"document:{d}", "owner", f"user:{doc['owner']}"))
    return out


class AgentauthzAdapter(Adapter):
    name = "agentauthz"
    description = ("agentauthz (pure Python): compiled relation closures over an in-memory "
                   "index, CEL subset for conditions; public Authorizer API")
    workloads = ("rbac", "rebac", "abac")

    def version(self) -> str:
        try:
            import agentauthz
        except ImportError as e:
            raise EngineUnavailable(f"agentauthz is not importable here: {e}") from e
        return str(agentauthz.__version__)

    def info(self) -> str:
        return "pure Python"

    def load(self, w) -> None:
        from agentauthz import Authorizer

        d = w.data
        self.kind = w.name
        if w.name == "rbac":
            authz = Authorizer(policy=w1_policy(d["roles"]))
            authz.write(add=w1_tuples(d))
            self.ptype, self.rtype = "user:", "document:"
        elif w.name == "rebac":
            authz = Authorizer(policy=W2_POLICY)
            authz.write(add=w2_tuples(d))
            self.ptype, self.rtype = "user:", "document:"
        elif w.name == "abac":
            authz = Authorizer(policy=W3_POLICY)
            for r, attrs in d["resources"].items():
                authz.set_attributes(f"resource:{r}", {"tenant": attrs["tenant"]})
            self.ptype, self.rtype = "agent:", "resource:"
        else:  # pragma: no cover - the harness only asks for the three above
            raise ValueError(f"unknown workload {w.name!r}")
        self.authz = authz
        self._check = authz.check

    def check(self, q) -> bool:
        return self._check(self.ptype + q.principal, q.action, self.rtype + q.resource,
                           q.context).allowed
