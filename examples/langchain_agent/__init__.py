"""A LangChain support assistant whose every tool call agentauthz decides (see README.md)."""
