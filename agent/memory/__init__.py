"""Long-term memory: ``MemoryStore`` (SQLite or PostgreSQL + FAISS + BM25, hybrid and time-aware recall)."""

from agent.ids import InvalidIdError
from agent.memory.facts import DUPLICATE_COSINE, SUPERSEDE_COSINE
from agent.memory.recall import RecallSettings
from agent.memory.records import MemoryRecord, RecordStore, SQLiteRecordStore
from agent.memory.store import MemoryNotFoundError, MemoryStore, open_memory, validate_memory_id

__all__ = [
    "DUPLICATE_COSINE",
    "SUPERSEDE_COSINE",
    "InvalidIdError",
    "MemoryNotFoundError",
    "MemoryRecord",
    "MemoryStore",
    "RecallSettings",
    "RecordStore",
    "SQLiteRecordStore",
    "open_memory",
    "validate_memory_id",
]
