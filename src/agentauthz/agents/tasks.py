"""Tasks: a credential issued just in time, in force for one block of code.

``with authz.task(scope=[...], ttl=300, purpose="...") as task:`` issues a
signed :class:`~agentauthz.agents.credentials.TaskCredential` for the current
agent and the user it acts for, makes ``Delegation(agent, user, credential)``
the current principal for the block, and revokes the task — with every
credential derived from it — when the block exits, however it exits.

``task.token`` carries the credential across a process boundary;
``task.attenuate(...)`` derives a narrower child for a sub-agent (no key
needed); ``authz.join_task(token)`` takes a token up in another process.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agentauthz import enforce
from agentauthz.agents.delegation import Delegation

if TYPE_CHECKING:
    from agentauthz.agents.credentials import Scope, TaskCredential
    from agentauthz.authorizer import Authorizer
    from agentauthz.model import Decision
    from agentauthz.typing import EntityLike

__all__ = ["Task"]


class Task:
    """A task credential bound to an authorizer; a sync and async context manager.

    Entering makes the delegation the current principal; exiting restores the
    previous one and, for a task this process issued (``revoke_on_exit``),
    revokes it.
    """

    def __init__(self, authz: Authorizer, credential: TaskCredential, *,
                 revoke_on_exit: bool) -> None:
        self.authz = authz
        self.credential = credential
        self.revoke_on_exit = revoke_on_exit
        self.principal = Delegation(credential.agent, credential.on_behalf_of, credential)
        self._tokens: list[tuple[contextvars.Token[Any], contextvars.Token[Any]]] = []

    # -------------------------------------------------------------- fields
    @property
    def id(self) -> str:
        """This credential's id (the task id for the task's own credential)."""
        return self.credential.id

    @property
    def task_id(self) -> str:
        return self.credential.task_id

    @property
    def token(self) -> str:
        """The credential as a compact string, for another process or a sub-agent."""
        return self.credential.token

    @property
    def scope(self) -> Scope:
        return self.credential.scope

    @property
    def expires_at(self) -> float:
        return self.credential.expires_at

    # ----------------------------------------------------------- behaviour
    def check(self, action: str, resource: EntityLike,
              context: Mapping[str, Any] | None = None) -> Decision:
        """``authz.check`` with this task's delegation as the principal."""
        return self.authz.check(self.principal, action, resource, context)

    def attenuate(self, *, scope: Iterable[tuple[str, str] | str] | Scope | None = None,
                  ttl: float | None = None, agent: EntityLike | None = None,
                  purpose: str | None = None) -> Task:
        """A narrower child task (scope ⊆, expiry ≤), optionally for a sub-agent.

        Needs no signing key. Asking for more than this task has raises
        :class:`~agentauthz.errors.InvalidInputError`. The child is revoked
        when its own ``with`` block exits, and with this task in any case.
        """
        agent_key = None if agent is None else Delegation.of(agent).agent
        child = self.credential.attenuate(scope=scope, ttl=ttl, agent=agent_key,
                                          purpose=purpose)
        return Task(self.authz, child, revoke_on_exit=True)

    def revoke(self, *, reason: str = "") -> None:
        """Revoke now: this credential and every one derived from it."""
        if self.credential.id == self.credential.task_id:
            self.authz.revoke(task=self.credential.task_id, reason=reason)
        else:
            self.authz.revoke(credential=self.credential, reason=reason)

    # ------------------------------------------------------------- context
    def __enter__(self) -> Task:
        self.authz._arm()
        self._tokens.append((enforce._principal.set(self.principal),
                             enforce._authorizer.set(self.authz)))
        return self

    def __exit__(self, *exc: object) -> None:
        p, a = self._tokens.pop()
        enforce._authorizer.reset(a)
        enforce._principal.reset(p)
        if self.revoke_on_exit and not self._tokens:
            self.revoke(reason="task block exited")

    async def __aenter__(self) -> Task:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def __repr__(self) -> str:
        return f"<Task {self.credential.id} {self.principal}>"
