"""Backends decide. ``LocalBackend`` is the embedded default; the adapters to other
engines live one file each beside it and import their client libraries lazily:

- :class:`~agentauthz.backends.opa.OPABackend` — an OPA server (extra ``opa``);
- :class:`~agentauthz.backends.oso_cloud.OsoCloudBackend` — Oso Cloud (extra ``oso``);
- :class:`~agentauthz.backends.cedar.CedarBackend` — Cedar, in process (extra ``cedar``);
- :class:`~agentauthz.backends.authzen.AuthZENBackend` — an OpenID AuthZEN PDP
  (extra ``authzen``).

``from agentauthz.backends import OPABackend`` works too: the adapter modules
are imported on first use, so ``import agentauthz`` never pulls in httpx, the
Oso SDK or cedarpy.
"""

from typing import TYPE_CHECKING, Any

from agentauthz.backends.base import BaseBackend
from agentauthz.backends.local import LocalBackend

if TYPE_CHECKING:
    from agentauthz.backends.authzen import AuthZENBackend
    from agentauthz.backends.cedar import CedarBackend
    from agentauthz.backends.opa import OPABackend, opa_data
    from agentauthz.backends.oso_cloud import OsoCloudBackend

__all__ = [
    "AuthZENBackend",
    "BaseBackend",
    "CedarBackend",
    "LocalBackend",
    "OPABackend",
    "OsoCloudBackend",
    "opa_data",
]

_LAZY = {
    "AuthZENBackend": "agentauthz.backends.authzen",
    "CedarBackend": "agentauthz.backends.cedar",
    "OPABackend": "agentauthz.backends.opa",
    "OsoCloudBackend": "agentauthz.backends.oso_cloud",
    "opa_data": "agentauthz.backends.opa",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentauthz.backends' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
