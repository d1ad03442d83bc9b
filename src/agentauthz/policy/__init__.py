"""The policy language: schema models, YAML loading, validation, the CEL subset."""

from agentauthz.policy.builder import PolicyBuilder
from agentauthz.policy.schema import Policy

__all__ = ["Policy", "PolicyBuilder"]
