"""The rows of long-term memory as callers and stores see them (shared by the record stores and the store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MemoryRecord:
    """One remembered item as callers see it.

    ``created_at`` is seconds since the epoch (UTC). ``score`` is only meaningful in
    search results (the fused relevance, higher is better); it is 0.0 elsewhere.
    ``superseded_by`` is the id of the newer fact that replaced this one, if any.
    """

    id: str
    user_id: str
    text: str
    kind: str
    created_at: float
    session_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    superseded_by: str | None = None
    score: float = 0.0
    similarity: float = 0.0
    """In search results: cosine similarity of the query and this memory (0.0 if it was not a dense hit)."""
    seq: int = field(default=0, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used by export and the CLI)."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "kind": self.kind,
            "text": self.text,
            "created_at": self.created_at,
            "metadata": self.metadata,
            "superseded_by": self.superseded_by,
            "score": self.score,
        }


@dataclass(frozen=True)
class NewRow:
    """A row to insert: everything but the sequence number SQLite assigns."""

    id: str
    user_id: str
    text: str
    kind: str
    created_at: float
    session_id: str | None
    metadata: dict[str, Any]
    tokens: str
    content_hash: str
    embedding: np.ndarray
    embedding_model: str
