"""Cedar runs in process: there is no server to start, only the demo backend to build.

``demo_backend()`` yields a :class:`~agentauthz.backends.cedar.CedarBackend`
loaded with the shipped ``examples/backends/cedar/policy.cedar`` and
``schema.cedarschema`` and the demo data (``src/agentauthz/demo/data.yaml``):
the name the cross-backend parity suite imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agentauthz.backends.cedar import CedarBackend
from agentauthz.demo import DATA

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "backends" / "cedar"
POLICY = EXAMPLE / "policy.cedar"
SCHEMA = EXAMPLE / "schema.cedarschema"


@contextmanager
def demo_backend() -> Iterator[CedarBackend]:
    """The Cedar backend with the demo policy, schema and data (nothing to clean up)."""
    yield CedarBackend(POLICY, SCHEMA, data=DATA)
