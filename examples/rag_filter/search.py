"""Keyword search over documents the asking user may read, and nothing else."""

from __future__ import annotations

from agentauthz import Authorizer

POLICY = """
types:
  user: {}
  team: {relations: {member: [user]}}
  folder:
    relations: {owner: [team#member], viewer: [user]}
    permissions: {read: owner | viewer}
  document:
    attributes: {classification: string}
    relations: {parent: [folder]}
    permissions: {read: parent->read}
rules:
  - id: restricted-stays-out-of-prompts
    effect: forbid
    action: read
    resource: document
    when: has(resource.classification) && resource.classification == 'restricted'
"""

DOCUMENTS = {
    "document:refund-policy": ("support", "Refunds are issued within 14 days of a request."),
    "document:escalation": ("support", "Escalate refunds above 500 EUR to a lead."),
    "document:deploy": ("eng", "Deploys happen on Tuesdays after the refunds batch."),
    "document:oncall": ("eng", "The on-call engineer owns refunds outages."),
    "document:salaries": ("finance", "Salary bands for 2026, refunds team included."),
    "document:budget": ("finance", "The refunds budget for Q3."),
}


def build() -> Authorizer:
    authz = Authorizer(POLICY)
    authz.add(
        "team:support#member@user:alice",
        "team:eng#member@user:bob",
        "folder:support#owner@team:support#member",
        "folder:eng#owner@team:eng#member",
        "folder:finance#viewer@user:carol",
        "folder:eng#viewer@user:alice",
    )
    authz.add(*(f"{doc}#parent@folder:{folder}" for doc, (folder, _) in DOCUMENTS.items()))
    authz.set_attributes("document:salaries", {"classification": "restricted"})
    return authz


def search(authz: Authorizer, user: str, query: str) -> list[str]:
    """Documents matching ``query`` among those ``user`` may read, best match first."""
    readable = authz.list_resources(user, "read", "document")
    words = query.lower().split()
    scored = []
    for doc in readable:
        text = DOCUMENTS[doc][1].lower()
        score = sum(text.count(w) for w in words)
        if score:
            scored.append((-score, doc))
    return [doc for _, doc in sorted(scored)]


def main() -> None:
    authz = build()
    for user in ("user:alice", "user:bob", "user:carol", "user:mallory"):
        hits = search(authz, user, "refunds")
        print(f"{user:<13} searches 'refunds' -> {', '.join(hits) or '(nothing readable)'}")


if __name__ == "__main__":
    main()
