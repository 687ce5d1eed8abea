"""What a memory write is made of: ids, kinds and item fields, validated before anything is stored.

Patterns are matched with ``fullmatch``: ``$`` would also match before a final newline.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.ids import InvalidIdError

_MEMORY_ID = re.compile(r"[0-9a-f]{32}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ITEM_FIELDS = frozenset(
    {"text", "kind", "metadata", "created_at", "session_id", "supersedes", "auto_supersede"}
)


class MemoryNotFoundError(KeyError):
    """No memory with this id for this user (it never existed, was deleted, or is someone else's)."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else "memory not found"


def validate_memory_id(memory_id: object) -> str:
    """Return ``memory_id`` if it has the shape of a memory id (32 lower-case hex digits)."""
    if not isinstance(memory_id, str) or not _MEMORY_ID.fullmatch(memory_id):
        raise InvalidIdError(f"invalid memory id: expected 32 hex digits (got {str(memory_id)[:80]!r})")
    return memory_id


def timestamp(value: float | int | datetime | None) -> float:
    """A creation time as epoch seconds: now for None, a datetime converted, a number as it is; else TypeError."""
    if value is None:
        return time.time()
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"created_at must be epoch seconds or a datetime, not {type(value).__name__}")


@dataclass
class Item:
    """One memory to write, validated."""

    text: str
    kind: str
    metadata: dict[str, Any]
    created_at: float
    session_id: str | None
    supersedes: str | None = None
    auto_supersede: bool = True


def parse_item(raw: str | dict[str, Any]) -> Item:
    """Validate one item given to ``add_many`` (a string or a dict of the item fields)."""
    d: dict[str, Any] = {"text": raw} if isinstance(raw, str) else dict(raw)
    unknown = set(d) - _ITEM_FIELDS
    if unknown:
        raise ValueError(f"unknown memory fields: {sorted(unknown)}")
    text = d.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("memory text must be a non-empty string")
    kind = d.get("kind") or "turn"
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"invalid memory kind {kind!r}: use lower-case letters, digits and _")
    metadata = dict(d.get("metadata") or {})
    session_id = d.get("session_id") or metadata.get("session_id")
    if session_id is not None:
        session_id = str(session_id)
        if len(session_id) > 128:
            raise ValueError("session_id longer than 128 characters")
        metadata["session_id"] = session_id
    supersedes = d.get("supersedes")
    if supersedes is not None:
        validate_memory_id(supersedes)
    return Item(
        text=text.strip(),
        kind=kind,
        metadata=metadata,
        created_at=timestamp(d.get("created_at")),
        session_id=session_id,
        supersedes=supersedes,
        auto_supersede=bool(d.get("auto_supersede", True)),
    )
