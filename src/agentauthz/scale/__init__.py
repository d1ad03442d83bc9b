"""Running at scale: state shared by every worker of a deployment, on Redis.

The embedded default keeps revocations, task ledgers, approvals and
break-glass grants in memory: one process. Many worker processes on many
machines share them through a real store instead::

    from agentauthz import Authorizer
    from agentauthz.scale import RedisState

    authz = Authorizer(policy="policy.yaml",
                       state=RedisState("redis://redis:6379/0", namespace="prod"))

- :mod:`agentauthz.scale.base` — the seam the authorizer sees (no Redis);
- :mod:`agentauthz.scale.state` — :class:`RedisState`: the namespace's keys, the write scripts;
- :mod:`agentauthz.scale.stores` — the four agent-layer stores on Redis;
- :mod:`agentauthz.scale.feed` — the change feed every worker follows.

Needs the ``redis`` extra (``pip install 'agentauthz[redis]'``); importing
:mod:`agentauthz` never imports Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentauthz.scale.base import Replica, SharedState

if TYPE_CHECKING:
    from agentauthz.scale.state import RedisState

__all__ = ["RedisState", "Replica", "SharedState"]


def __getattr__(name: str) -> Any:
    if name == "RedisState":
        try:
            from agentauthz.scale.state import RedisState
        except ImportError as exc:
            if exc.name not in ("redis", "redis.asyncio"):
                raise
            raise ImportError("agentauthz.scale.RedisState needs the Redis client: "
                              "pip install 'agentauthz[redis]'") from exc
        return RedisState
    raise AttributeError(f"module 'agentauthz.scale' has no attribute {name!r}")
