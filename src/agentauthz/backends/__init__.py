"""Backends decide. ``LocalBackend`` is the embedded default; remote adapters
(OPA, Oso Cloud, AuthZEN, Cedar) live one file each beside it and import their
client libraries lazily."""

from agentauthz.backends.base import BaseBackend
from agentauthz.backends.local import LocalBackend

__all__ = ["BaseBackend", "LocalBackend"]
