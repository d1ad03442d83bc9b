"""Build a policy in Python; it produces the same model as a YAML file.

::

    policy = (PolicyBuilder()
              .type("user")
              .type("document", relations={"owner": ["user"]},
                    permissions={"read": "owner"})
              .forbid("no-export", action="export", resource="document",
                      when="resource.classification == 'restricted'")
              .build())
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentauthz.policy.schema import Policy

__all__ = ["PolicyBuilder"]


class PolicyBuilder:
    """Accumulates types and rules, then validates them all at :meth:`build`."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, Any]] = {}
        self._rules: list[dict[str, Any]] = []
        self._context: dict[str, str] = {}

    def type(self, name: str, *, relations: Mapping[str, Sequence[str] | str] | None = None,
             permissions: Mapping[str, str] | None = None,
             attributes: Mapping[str, str] | None = None,
             fields: Mapping[str, Mapping[str, str]] | None = None) -> PolicyBuilder:
        spec: dict[str, Any] = {}
        if relations:
            spec["relations"] = {k: v if isinstance(v, str) else list(v)
                                 for k, v in relations.items()}
        if permissions:
            spec["permissions"] = dict(permissions)
        if attributes:
            spec["attributes"] = dict(attributes)
        if fields:
            spec["fields"] = {k: dict(v) for k, v in fields.items()}
        self._types[name] = spec
        return self

    def _rule(self, effect: str, rule_id: str, action: str | Sequence[str],
              resource: str | Sequence[str], principal: str | Sequence[str], when: str | None,
              description: str | None) -> PolicyBuilder:
        rule: dict[str, Any] = {
            "id": rule_id, "effect": effect,
            "action": [action] if isinstance(action, str) else list(action),
            "resource": [resource] if isinstance(resource, str) else list(resource),
            "principal": [principal] if isinstance(principal, str) else list(principal),
        }
        if when is not None:
            rule["when"] = when
        if description is not None:
            rule["description"] = description
        self._rules.append(rule)
        return self

    def permit(self, rule_id: str, *, action: str | Sequence[str] = "*",
               resource: str | Sequence[str] = "*", principal: str | Sequence[str] = "*",
               when: str | None = None, description: str | None = None) -> PolicyBuilder:
        return self._rule("permit", rule_id, action, resource, principal, when, description)

    def forbid(self, rule_id: str, *, action: str | Sequence[str] = "*",
               resource: str | Sequence[str] = "*", principal: str | Sequence[str] = "*",
               when: str | None = None, description: str | None = None) -> PolicyBuilder:
        return self._rule("forbid", rule_id, action, resource, principal, when, description)

    def context(self, **declared: str) -> PolicyBuilder:
        """Declare the attributes a request context may carry (enables validation of them)."""
        self._context.update(declared)
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"types": {k: dict(v) for k, v in self._types.items()},
                               "rules": list(self._rules)}
        if self._context:
            out["context"] = dict(self._context)
        return out

    def build(self) -> Policy:
        return Policy.from_dict(self.to_dict())
