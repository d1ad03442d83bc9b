"""The demo policy and data shipped with the package (``agentauthz demo``)."""
