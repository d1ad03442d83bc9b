# The agentauthz demo policy (src/agentauthz/demo/policy.yaml), in Polar for Oso Cloud.
#
# It reads the facts agentauthz's OsoCloudBackend writes:
#
#   has_relation(resource, "relation", subject)            document:1#owner@user:alice
#   has_userset(resource, "relation", subject, "relation") folder:f#owner@team:t#member
#   has_wildcard(resource, "relation", "SubjectType")      folder:f#viewer@user:*
#   has_attribute(entity, "name", value)                   document:1 {tenant: acme}
#
# Oso's negation is limited to facts whose variables are bound elsewhere in the
# rule, so each `forbid` rule of the YAML policy is written as the condition an
# allow must also meet (see the notes at each one).

actor User {}
actor Agent {}
resource Team {}
resource Folder {}
resource Document {}

# ---------------------------------------------------------------- relations

# team.member: [user, agent, team#member]
member_of(actor: Actor, team: Team) if
  has_relation(team, "member", actor);
member_of(actor: Actor, team: Team) if
  inner matches Team and
  has_userset(team, "member", inner, "member") and
  member_of(actor, inner);

# folder.owner: [team#member, user]
folder_owner(user: User, folder: Folder) if
  has_relation(folder, "owner", user);
folder_owner(actor: Actor, folder: Folder) if
  team matches Team and
  has_userset(folder, "owner", team, "member") and
  member_of(actor, team);

# folder.viewer: [user, agent, team#member, user:*]
folder_viewer(actor: Actor, folder: Folder) if
  has_relation(folder, "viewer", actor);
folder_viewer(actor: Actor, folder: Folder) if
  team matches Team and
  has_userset(folder, "viewer", team, "member") and
  member_of(actor, team);
folder_viewer(_user: User, folder: Folder) if
  has_wildcard(folder, "viewer", "User");

# ------------------------------------------------------------- permissions

# folder.read: viewer | owner | parent->read
has_permission(actor: Actor, "read", folder: Folder) if
  folder_viewer(actor, folder);
has_permission(actor: Actor, "read", folder: Folder) if
  folder_owner(actor, folder);
has_permission(actor: Actor, "read", folder: Folder) if
  parent matches Folder and
  has_relation(folder, "parent", parent) and
  has_permission(actor, "read", parent);

# folder.write: owner | parent->write
has_permission(actor: Actor, "write", folder: Folder) if
  folder_owner(actor, folder);
has_permission(actor: Actor, "write", folder: Folder) if
  parent matches Folder and
  has_relation(folder, "parent", parent) and
  has_permission(actor, "write", parent);

# document.read: (owner | parent->read) - banned   (owner: [user]; banned: [user, agent])
document_reader(user: User, document: Document) if
  has_relation(document, "owner", user);
document_reader(actor: Actor, document: Document) if
  folder matches Folder and
  has_relation(document, "parent", folder) and
  has_permission(actor, "read", folder);
has_permission(actor: Actor, "read", document: Document) if
  document_reader(actor, document) and
  not has_relation(document, "banned", actor);

# document.write: owner | parent->write
has_permission(user: User, "write", document: Document) if
  has_relation(document, "owner", user);
has_permission(actor: Actor, "write", document: Document) if
  folder matches Folder and
  has_relation(document, "parent", folder) and
  has_permission(actor, "write", folder);

# document.export: read
has_permission(actor: Actor, "export", document: Document) if
  has_permission(actor, "read", document);

# ------------------------------------------------- the rules (forbid → must)

# tenant-isolation: nobody crosses a tenant boundary. Only documents have a
# tenant in the schema; users and agents do too. The YAML rule skips an entity
# without a tenant (has()); Polar cannot test for a missing fact, so here a
# document or principal without a tenant is denied: stricter, never looser.
same_tenant(actor: Actor, document: Document) if
  has_attribute(actor, "tenant", tenant) and
  has_attribute(document, "tenant", tenant);
same_tenant(_actor: Actor, _folder: Folder);

# no-export-of-confidential: confidential and restricted documents never
# leave. A document without a classification is denied, as the YAML rule's
# condition errors on it (an erroring forbid denies).
exportable(document: Document) if
  has_attribute(document, "classification", _classification) and
  not has_attribute(document, "classification", "confidential") and
  not has_attribute(document, "classification", "restricted");

# high-risk-agents-read-only: high-risk agents may only read. An agent without
# a risk is denied too, as the YAML condition errors on it.
may_change(_user: User);
may_change(agent: Agent) if
  has_attribute(agent, "risk", _risk) and
  not has_attribute(agent, "risk", "high");

# ------------------------------------------------------------------- allow

allow(actor: Actor, "read", resource: Resource) if
  has_permission(actor, "read", resource) and
  same_tenant(actor, resource);

allow(actor: Actor, "write", resource: Resource) if
  has_permission(actor, "write", resource) and
  same_tenant(actor, resource) and
  may_change(actor);

allow(actor: Actor, "export", document: Document) if
  has_permission(actor, "export", document) and
  same_tenant(actor, document) and
  exportable(document) and
  may_change(actor);

# ------------------------------------------------------------------- tests
# Run with: oso-cloud test policy.polar  (a sample of tests/backends/parity_cases.yaml)

test "the demo decisions" {
  setup {
    has_relation(Team{"support"}, "member", User{"alice"});
    has_relation(Team{"support"}, "member", Agent{"assistant"});
    has_relation(Team{"eng"}, "member", User{"bob"});
    has_userset(Folder{"tickets"}, "owner", Team{"support"}, "member");
    has_userset(Folder{"runbooks"}, "owner", Team{"eng"}, "member");
    has_userset(Folder{"runbooks"}, "viewer", Team{"support"}, "member");
    has_relation(Folder{"archive"}, "parent", Folder{"tickets"});
    has_relation(Document{"ticket-1"}, "parent", Folder{"tickets"});
    has_relation(Document{"ticket-2"}, "parent", Folder{"archive"});
    has_relation(Document{"runbook-1"}, "parent", Folder{"runbooks"});
    has_relation(Document{"payroll"}, "owner", User{"carol"});
    has_relation(Document{"ticket-2"}, "banned", Agent{"assistant"});
    has_attribute(User{"alice"}, "tenant", "acme");
    has_attribute(User{"bob"}, "tenant", "acme");
    has_attribute(User{"carol"}, "tenant", "acme");
    has_attribute(User{"mallory"}, "tenant", "globex");
    has_attribute(Agent{"assistant"}, "tenant", "acme");
    has_attribute(Agent{"assistant"}, "risk", "medium");
    has_attribute(Agent{"scraper"}, "tenant", "acme");
    has_attribute(Agent{"scraper"}, "risk", "high");
    has_attribute(Document{"ticket-1"}, "tenant", "acme");
    has_attribute(Document{"ticket-1"}, "classification", "internal");
    has_attribute(Document{"ticket-2"}, "tenant", "acme");
    has_attribute(Document{"ticket-2"}, "classification", "confidential");
    has_attribute(Document{"runbook-1"}, "tenant", "acme");
    has_attribute(Document{"runbook-1"}, "classification", "internal");
    has_attribute(Document{"payroll"}, "tenant", "acme");
    has_attribute(Document{"payroll"}, "classification", "restricted");
    has_attribute(Document{"globex-plan"}, "tenant", "globex");
    has_attribute(Document{"globex-plan"}, "classification", "internal");
  }
  assert allow(User{"alice"}, "read", Document{"ticket-2"});
  assert allow(User{"alice"}, "write", Folder{"archive"});
  assert allow(User{"alice"}, "export", Document{"runbook-1"});
  assert_not allow(User{"alice"}, "export", Document{"ticket-2"});
  assert_not allow(User{"alice"}, "write", Document{"runbook-1"});
  assert allow(User{"bob"}, "write", Document{"runbook-1"});
  assert_not allow(User{"bob"}, "read", Folder{"tickets"});
  assert allow(User{"carol"}, "write", Document{"payroll"});
  assert_not allow(User{"carol"}, "export", Document{"payroll"});
  assert_not allow(User{"mallory"}, "read", Document{"globex-plan"});
  assert allow(Agent{"assistant"}, "read", Document{"ticket-1"});
  assert_not allow(Agent{"assistant"}, "read", Document{"ticket-2"});
  assert allow(Agent{"assistant"}, "write", Document{"ticket-2"});
  assert_not allow(Agent{"assistant"}, "export", Document{"ticket-2"});
  assert allow(Agent{"assistant"}, "read", Folder{"runbooks"});
  assert_not allow(Agent{"scraper"}, "read", Document{"runbook-1"});
}
