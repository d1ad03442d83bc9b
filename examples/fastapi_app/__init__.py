"""A multi-tenant document service protected by agentauthz (see README.md)."""
