"""The policy file's shape, as pydantic models.

These models describe what a policy file may contain; they are validated
once, at load. Evaluation never touches them: the engine compiles them into
closures first.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "AgentDefinition",
    "ArgumentConstraintDefinition",
    "AttributeType",
    "ChainRuleDefinition",
    "PolicyDefinition",
    "ResultDefinition",
    "RuleDefinition",
    "ToolDefinition",
    "TypeDefinition",
]

AttributeType = Literal[
    "string", "int", "double", "bool", "list", "map", "timestamp", "duration", "any"
]


def _as_list(value: object) -> object:
    """Accept ``"a | b"`` or ``"a"`` where a list of names is expected."""
    if isinstance(value, str):
        return [part.strip() for part in value.split("|")] if "|" in value else [value]
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TypeDefinition(_Strict):
    """One entity type: its relations, permissions, declared attributes and field rules."""

    description: str | None = None
    relations: dict[str, list[str]] = Field(default_factory=dict)
    permissions: dict[str, str] = Field(default_factory=dict)
    attributes: dict[str, AttributeType] = Field(default_factory=dict)
    fields: dict[str, dict[str, str]] = Field(default_factory=dict)

    @field_validator("relations", mode="before")
    @classmethod
    def _relation_lists(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: _as_list(v) for k, v in value.items()}
        return value

    @field_validator("fields", mode="before")
    @classmethod
    def _field_rules(cls, value: object) -> object:
        if isinstance(value, list):
            return {name: {} for name in value}
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value


class RuleDefinition(_Strict):
    """A permit or forbid rule: who, what, on which type, under which condition."""

    id: str
    effect: Literal["permit", "forbid"]
    action: list[str] = Field(default_factory=lambda: ["*"])
    resource: list[str] = Field(default_factory=lambda: ["*"])
    principal: list[str] = Field(default_factory=lambda: ["*"])
    when: str | None = None
    description: str | None = None

    @field_validator("action", "resource", "principal", mode="before")
    @classmethod
    def _selector_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return [value]
        return value


class AgentDefinition(_Strict):
    """One registered agent: who owns it, how risky it is, what it is for and may use."""

    id: str
    owner: str
    purpose: str
    risk: Literal["low", "medium", "high"] = "medium"
    status: Literal["active", "suspended", "retired"] = "active"
    tools: list[str] = Field(default_factory=list)
    spiffe_id: str | None = None
    description: str | None = None


class ArgumentConstraintDefinition(_Strict):
    """What one tool argument may be: listed values, a range, a pattern, allowed hosts."""

    one_of: list[str | int | float | bool] | None = None
    min: int | float | None = None
    max: int | float | None = None
    pattern: str | None = None
    hosts: list[str] | None = None
    max_length: int | None = None
    required: bool = False


class ResultDefinition(_Strict):
    """How a tool's result maps to resources, for filtering before the model sees it."""

    resource: str
    action: str = "read"
    records: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    mask: str | None = None


class ToolDefinition(_Strict):
    """A tool an agent may call: what it does, to what, and what it may return."""

    action: str = "call"
    resource: str | None = None
    effect: Literal["read", "write", "external", "privileged"] = "read"
    labels: list[str] = Field(default_factory=list)
    label_attribute: str | None = "classification"
    constraints: dict[str, ArgumentConstraintDefinition] = Field(default_factory=dict)
    result: ResultDefinition | None = None
    hard_block: Literal["privilege_change", "token_minting", "credential_change"] | None = None
    description: str | None = None


class ChainRuleDefinition(_Strict):
    """A rule over what a task has already done (its ledger).

    It applies to a call whose tool is in ``tool`` and whose effect is in
    ``effect`` (either may be omitted: any), and fires on exactly one of:
    ``after_labels`` (a label read earlier in the task), ``first`` (the first
    call of this effect after a read), ``max_calls`` (the budget of matching
    calls is spent), ``same_attribute`` (the resource's attribute differs from
    an earlier step's).
    """

    id: str
    tool: list[str] | None = None
    effect: list[Literal["read", "write", "external", "privileged"]] | None = None
    after_labels: list[str] | None = None
    first: bool = False
    max_calls: int | None = None
    same_attribute: str | None = None
    decision: Literal["deny", "approval_required"] = "deny"
    description: str | None = None

    @field_validator("tool", "effect", "after_labels", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class PolicyDefinition(_Strict):
    """A whole policy: types, rules, and the declared shape of the request context."""

    version: Literal[1] = 1
    description: str | None = None
    types: dict[str, TypeDefinition]
    rules: list[RuleDefinition] = Field(default_factory=list)
    context: dict[str, AttributeType] = Field(default_factory=dict)
    agents: list[AgentDefinition] = Field(default_factory=list)
    tools: dict[str, ToolDefinition] = Field(default_factory=dict)
    chains: list[ChainRuleDefinition] = Field(default_factory=list)

    @field_validator("tools", mode="before")
    @classmethod
    def _empty_tools(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    @field_validator("types", mode="before")
    @classmethod
    def _empty_types(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value
