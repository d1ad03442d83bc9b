"""Adapters to web and agent frameworks, one module each.

Nothing is imported here: each module imports its framework when *it* is
imported, and says which extra to install when the framework is missing::

    from agentauthz.integrations.fastapi import AgentAuthz, require  # pip install 'agentauthz[fastapi]'
"""

__all__: list[str] = []
