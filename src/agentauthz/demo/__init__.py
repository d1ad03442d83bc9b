"""The demo policy and data shipped with the package (``agentauthz demo``).

``POLICY`` and ``DATA`` are the paths of its ``policy.yaml`` and ``data.yaml``,
for examples and experiments: ``Authorizer(POLICY, data=DATA)``.
"""

from pathlib import Path
from typing import Final

__all__ = ["DATA", "POLICY"]

POLICY: Final = Path(__file__).with_name("policy.yaml")
DATA: Final = Path(__file__).with_name("data.yaml")
