# The agentauthz demo policy (src/agentauthz/demo/policy.yaml) in Rego, for OPA.
#
# It answers the same questions as the local evaluator, on the same data: run
# `python -m agentauthz.backends.opa src/agentauthz/demo/data.yaml > data.json`
# and `opa run --server policy.rego data.json` (see README.md).
#
# Decisions (POST /v1/data/agentauthz/demo/<rule> with {"input": ...}):
#
#   decision      {"allow": bool, "reasons": [{"kind", "message", "rule"?}]}
#   allow         the same decision as a plain boolean
#   list_resources  {"ids": [...], "next": cursor or null}: the ids of every known
#                 input.resource.type entity that `decision` allows, a page at a time
#   list_actions  the actions `decision` allows on input.resource
#
# Input: {"principal": {"type", "id", "attributes"?}, "action",
#         "resource": {"type", "id", "attributes"?}, "context": {...}}.
# Attributes in the input override the stored ones for that decision.
#
# Data (data.agentauthz, written by agentauthz.backends.opa.opa_data):
#
#   relationships  {relation: {object: [subject, ...]}}, e.g.
#                  {"parent": {"document:ticket-1": ["folder:tickets"]}}; a subject is
#                  "type:id", a userset "team:eng#member" or a wildcard "user:*"
#   attributes     {"type:id": {...}}
#   entities       {type: [id, ...]}: every entity the data names
#
# Relations are indexed relation first so that graph.reachable can walk a
# relation (folder parents, nested teams) straight from the data document:
# Rego has no recursive rules, and graph.reachable terminates on cycles.
package agentauthz.demo

import rego.v1

# ------------------------------------------------------------------- data

# (refer to each document by its full path: data.agentauthz as a whole holds
# this package too, and a rule that reads itself is recursive)
default rels := {}

rels := data.agentauthz.relationships

default stored := {}

stored := data.agentauthz.attributes

default entities := {}

entities := data.agentauthz.entities

parents := object.get(rels, "parent", {})

members := object.get(rels, "member", {})

related(relation, key) := object.get(object.get(rels, relation, {}), key, [])

key_of(entity) := concat(":", [entity.type, entity.id])

attributes_of(entity) := object.union(
	object.get(stored, key_of(entity), {}),
	object.get(entity, "attributes", {}),
)

# ------------------------------------------------------------------ schema

types := {"user", "agent", "team", "folder", "document"}

# the permission expressions, per resource type and action
permissions := {
	"folder": {
		"read": "viewer | owner | parent->read",
		"write": "owner | parent->write",
	},
	"document": {
		"read": "(owner | parent->read) - banned",
		"write": "owner | parent->write",
		"export": "read",
	},
}

# ---------------------------------------------------------------- principal

principal := input.principal

principal_key := key_of(principal)

principal_attrs := attributes_of(principal)

# the subjects that name the principal directly: itself and its type's wildcard
direct_subjects := {principal_key, concat(":", [principal.type, "*"])}

# team -> the teams whose members are its members (team:x#member@team:y#member)
team_includes := {team: {trim_suffix(s, "#member") | some s in members[team]; endswith(s, "#member")} |
	some team in object.keys(members)
}

# every team the principal is a member of, directly or through nested teams
principal_teams contains team if {
	some team in object.keys(members)
	some t in ({team} | graph.reachable(team_includes, {team}))
	some s in members[t]
	s in direct_subjects
}

# does subject s (an entity, a wildcard or a team#member userset) include the principal?
holds(s) if s in direct_subjects

holds(s) if {
	endswith(s, "#member")
	trim_suffix(s, "#member") in principal_teams
}

has_relation(key, relation) if {
	some s in related(relation, key)
	holds(s)
}

# key and every entity up its parent chain (graph.reachable only returns nodes
# with edges of their own, so the last parents are added from their children)
lineage(key) := result if {
	reached := graph.reachable(parents, {key})
	result := ({key} | reached) | {p | some k in reached; some p in parents[k]}
}

# ------------------------------------------------------------- permissions

folder_read(key) if {
	some f in lineage(key)
	some relation in ["viewer", "owner"]
	has_relation(f, relation)
}

folder_write(key) if {
	some f in lineage(key)
	has_relation(f, "owner")
}

document_reachable(key) if has_relation(key, "owner")

document_reachable(key) if {
	some f in related("parent", key)
	folder_read(f)
}

document_read(key) if {
	document_reachable(key)
	not has_relation(key, "banned")
}

document_write(key) if has_relation(key, "owner")

document_write(key) if {
	some f in related("parent", key)
	folder_write(f)
}

permitted("folder", "read", key) if folder_read(key)

permitted("folder", "write", key) if folder_write(key)

permitted("document", "read", key) if document_read(key)

permitted("document", "write", key) if document_write(key)

permitted("document", "export", key) if document_read(key)

# ------------------------------------------------------------------- rules
# A forbid whose condition cannot be evaluated (a missing attribute) denies,
# as in the local evaluator: an erroring forbid counts as matched.

tenant_isolation(rattrs) := [{
	"kind": "forbid",
	"rule": "tenant-isolation",
	"message": "nobody crosses a tenant boundary",
}] if rattrs.tenant != principal_attrs.tenant
else := []

no_export_of_confidential(action, rtype, rattrs) := [{
	"kind": "forbid",
	"rule": "no-export-of-confidential",
	"message": "confidential and restricted documents never leave",
}] if {
	action == "export"
	rtype == "document"
	rattrs.classification in ["confidential", "restricted"]
} else := [
	{
		"kind": "forbid",
		"rule": "no-export-of-confidential",
		"message": "confidential and restricted documents never leave",
	},
	{
		"kind": "condition_error",
		"rule": "no-export-of-confidential",
		"message": "resource.classification is missing; an erroring forbid denies",
	},
] if {
	action == "export"
	rtype == "document"
	not "classification" in object.keys(rattrs)
} else := []

high_risk_agents_read_only(action) := [{
	"kind": "forbid",
	"rule": "high-risk-agents-read-only",
	"message": "high-risk agents may only read",
}] if {
	principal.type == "agent"
	action in ["write", "export"]
	principal_attrs.risk == "high"
} else := [
	{
		"kind": "forbid",
		"rule": "high-risk-agents-read-only",
		"message": "high-risk agents may only read",
	},
	{
		"kind": "condition_error",
		"rule": "high-risk-agents-read-only",
		"message": "principal.risk is missing; an erroring forbid denies",
	},
] if {
	principal.type == "agent"
	action in ["write", "export"]
	not "risk" in object.keys(principal_attrs)
} else := []

forbids(action, resource) := array.concat(
	array.concat(tenant_isolation(rattrs), no_export_of_confidential(action, resource.type, rattrs)),
	high_risk_agents_read_only(action),
) if rattrs := attributes_of(resource)

# ---------------------------------------------------------------- decision

deny(kind, message) := {"allow": false, "reasons": [{"kind": kind, "message": message}]}

decide(action, resource) := deny("unknown_type", sprintf("type %q is not declared in the policy", [resource.type])) if {
	not resource.type in types
} else := deny("unknown_type", sprintf("type %q is not declared in the policy", [principal.type])) if {
	not principal.type in types
} else := {"allow": false, "reasons": reasons} if {
	reasons := forbids(action, resource)
	count(reasons) > 0
} else := {"allow": true, "reasons": [{
	"kind": "permission",
	"message": sprintf("%s.%s = %s", [resource.type, action, permissions[resource.type][action]]),
}]} if {
	permitted(resource.type, action, key_of(resource))
} else := deny("default_deny", sprintf("no relation path or permit rule grants %q on %s", [action, resource.type]))

well_formed_entity(entity) if {
	is_string(entity.type)
	is_string(entity.id)
	is_object(object.get(entity, "attributes", {}))
}

well_formed if {
	well_formed_entity(input.principal)
	well_formed_entity(input.resource)
	is_string(input.action)
}

default decision := {"allow": false, "reasons": [{
	"kind": "invalid_input",
	"message": "input must be {principal: {type, id}, action, resource: {type, id}}",
}]}

decision := decide(input.action, input.resource) if well_formed

allow := decision.allow

# ----------------------------------------------------------------- queries

default list_actions := []

list_actions := sort([action |
	some action in object.keys(permissions[input.resource.type])
	decide(action, input.resource).allow
]) if {
	well_formed_entity(input.principal)
	well_formed_entity(input.resource)
}

allowed_ids := sort([id |
	some id in object.get(entities, input.resource.type, [])
	decide(input.action, {"type": input.resource.type, "id": id}).allow
])

# page.cursor is the offset of the page, as a string; page.size defaults to every id
list_resources := {"ids": array.slice(allowed_ids, start, end), "next": next_cursor(end)} if {
	well_formed_entity(input.principal)
	is_string(input.resource.type)
	is_string(input.action)
	start := to_number(object.get(input, ["page", "cursor"], "0"))
	end := start + object.get(input, ["page", "size"], count(allowed_ids))
}

next_cursor(end) := format_int(end, 10) if end < count(allowed_ids)
else := null
