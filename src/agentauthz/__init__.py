"""agentauthz: embeddable authorization for AI-native products."""
