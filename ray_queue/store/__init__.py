"""Durable manager state: the ``Store`` seam, an SQLite implementation and the JSON codec."""

from ray_queue.store.base import MemoryStore, Payload, Store, StoredState
from ray_queue.store.sqlite import SQLiteStore

__all__ = ["MemoryStore", "Payload", "SQLiteStore", "Store", "StoredState"]
