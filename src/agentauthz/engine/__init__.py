"""The local evaluator: relationship stores, compiled checks, list and explain."""

from agentauthz.engine.evaluator import CheckRequest, Evaluator
from agentauthz.engine.sqlite import SQLiteStore
from agentauthz.engine.store import MemoryStore

__all__ = ["CheckRequest", "Evaluator", "MemoryStore", "SQLiteStore"]
