"""The facade application code talks to: ``check``, ``list_*``, relationship writes.

Every method has an async twin (``acheck``...). The local evaluator does no
I/O, so its twins answer inline without yielding to the event loop; a
remote backend differs only where it waits for the network.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agentauthz.engine.data import load_data
from agentauthz.engine.evaluator import CheckRequest, Evaluator
from agentauthz.engine.explain import Explanation, explain
from agentauthz.engine.store import MemoryStore
from agentauthz.errors import ConfigurationError
from agentauthz.model import Decision, EntityLike, Relationship
from agentauthz.policy.schema import Policy

__all__ = ["Authorizer"]

PolicySource = str | os.PathLike[str] | Mapping[str, Any] | Policy
RelationshipLike = Relationship | str | tuple[str, str, str]


class Authorizer:
    """Answers "may this principal do this action on this resource, in this context?".

    ``policy`` is a path to a YAML/JSON file, YAML text, a mapping, or a
    :class:`~agentauthz.policy.Policy`; it is validated here and a bad one
    raises :class:`~agentauthz.errors.PolicyError` naming every problem.
    ``data`` optionally preloads relationships and attributes (see
    :func:`agentauthz.engine.data.load_data`). ``store`` chooses where
    relationships live (in memory by default; :class:`~agentauthz.engine.SQLiteStore`
    to survive restarts).
    """

    def __init__(self, policy: PolicySource, *, data: str | os.PathLike[str] | Mapping[str, Any]
                 | None = None, store: MemoryStore | None = None, max_depth: int = 50) -> None:
        if policy is None:
            raise ConfigurationError("Authorizer needs a policy: a file path, YAML text, "
                                     "a mapping or a Policy")
        self._evaluator = Evaluator(Policy.load(policy), store, max_depth=max_depth)
        # the hot path: answer with the evaluator's bound method, one frame fewer
        self.check = self._evaluator.check  # type: ignore[method-assign]
        if data is not None:
            self.load_data(data)

    # ------------------------------------------------------------ properties
    @property
    def policy(self) -> Policy:
        return self._evaluator.policy

    @property
    def policy_version(self) -> str:
        return self._evaluator.policy_version

    @property
    def store(self) -> MemoryStore:
        return self._evaluator.store

    @property
    def evaluator(self) -> Evaluator:
        return self._evaluator

    # ----------------------------------------------------------------- policy
    def reload_policy(self, policy: PolicySource) -> None:
        """Swap the policy atomically; a bad policy raises and leaves the old one in force."""
        self._evaluator.set_policy(Policy.load(policy))

    # ------------------------------------------------------------------- data
    def write(self, add: Iterable[RelationshipLike] = (),
              remove: Iterable[RelationshipLike] = ()) -> int:
        """Add and remove relationships in one validated batch; returns how many changed."""
        return self._evaluator.write(add, remove)

    def add(self, *relationships: RelationshipLike) -> int:
        """Shorthand for ``write(add=relationships)``."""
        return self._evaluator.write(add=relationships)

    def remove(self, *relationships: RelationshipLike) -> int:
        """Shorthand for ``write(remove=relationships)``."""
        return self._evaluator.write(remove=relationships)

    def set_attributes(self, entity: EntityLike, attributes: Mapping[str, Any] | None) -> None:
        self._evaluator.set_attributes(entity, attributes)

    def load_data(self, source: str | os.PathLike[str] | Mapping[str, Any]) -> None:
        """Load a data file's relationships and attributes (validated against the schema)."""
        dataset = load_data(source)
        self._evaluator.write(add=dataset.relationships)
        for entity, attrs in dataset.attributes.items():
            self._evaluator.set_attributes(entity, attrs)

    # ----------------------------------------------------------------- checks
    def check(self, principal: EntityLike, action: str, resource: EntityLike,
              context: Mapping[str, Any] | None = None) -> Decision:
        """Decide. Never raises for a deny: malformed input and errors deny with a reason."""
        return self._evaluator.check(principal, action, resource, context)

    def check_many(self, requests: Sequence[CheckRequest | tuple[Any, ...]]) -> list[Decision]:
        return self._evaluator.check_many(requests)

    def list_resources(self, principal: EntityLike, action: str, resource_type: str,
                       context: Mapping[str, Any] | None = None) -> frozenset[str]:
        """Every known entity of ``resource_type`` that ``check`` would allow."""
        return self._evaluator.list_resources(principal, action, resource_type, context)

    def list_actions(self, principal: EntityLike, resource: EntityLike,
                     context: Mapping[str, Any] | None = None) -> frozenset[str]:
        return self._evaluator.list_actions(principal, resource, context)

    def authorized_fields(self, principal: EntityLike, action: str, resource: EntityLike,
                          context: Mapping[str, Any] | None = None) -> frozenset[str]:
        return self._evaluator.authorized_fields(principal, action, resource, context)

    def explain(self, principal: EntityLike, action: str, resource: EntityLike,
                context: Mapping[str, Any] | None = None) -> Explanation:
        """The full decision tree; ``str()`` of it is readable."""
        return explain(self._evaluator, principal, action, resource, context)

    # ---------------------------------------------------------- async twins
    async def acheck(self, principal: EntityLike, action: str, resource: EntityLike,
                     context: Mapping[str, Any] | None = None) -> Decision:
        return self.check(principal, action, resource, context)

    async def acheck_many(self, requests: Sequence[CheckRequest | tuple[Any, ...]]
                          ) -> list[Decision]:
        return self.check_many(requests)

    async def alist_resources(self, principal: EntityLike, action: str, resource_type: str,
                              context: Mapping[str, Any] | None = None) -> frozenset[str]:
        return self.list_resources(principal, action, resource_type, context)

    async def alist_actions(self, principal: EntityLike, resource: EntityLike,
                            context: Mapping[str, Any] | None = None) -> frozenset[str]:
        return self.list_actions(principal, resource, context)

    async def aauthorized_fields(self, principal: EntityLike, action: str, resource: EntityLike,
                                 context: Mapping[str, Any] | None = None) -> frozenset[str]:
        return self.authorized_fields(principal, action, resource, context)

    async def awrite(self, add: Iterable[RelationshipLike] = (),
                     remove: Iterable[RelationshipLike] = ()) -> int:
        return self.write(add, remove)
