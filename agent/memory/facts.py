"""De-duplication and supersession policy for stored facts.

Policy (applied by :meth:`MemoryStore.add` for ``kind="fact"``, checked against the
user's *current* facts, i.e. those not superseded):

1. **Exact duplicate**: the same normalised text (case, punctuation and spacing
   ignored) -> the existing id is returned, nothing is written.
2. **Near duplicate**: cosine similarity >= ``DUPLICATE_COSINE`` (0.93) -> the
   existing id is returned ("The user lives in Beijing." vs "User lives in Beijing").
3. **Supersede**, explicit: the caller passes ``supersedes=<id>`` (the graph's LLM
   decided) -> the new fact is stored and the old one gets ``superseded_by``.
4. **Supersede**, automatic: a fact "about the same thing" that says something
   different. Embeddings alone cannot tell "lives in Beijing" / "lives in Shanghai"
   (same slot, new value) from "allergic to peanuts" / "allergic to shellfish" (two
   values that both hold), so we require both a similarity band
   ``SUPERSEDE_COSINE <= cos < DUPLICATE_COSINE`` *and* the same frame: the two
   texts share a leading run of tokens covering at least ``SUPERSEDE_PREFIX`` of the
   longer one, and differ only in a short tail (the value) of at most
   ``SUPERSEDE_MAX_TAIL`` tokens. Pass ``auto_supersede=False`` to turn it off.

Superseded facts stay in SQLite (``list(..., include_superseded=True)`` and the CLI
show them, with ``superseded_by``); ``search`` leaves them out unless asked.
Turns are never de-duplicated: saying the same thing twice is two events.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from agent.memory.lexical import tokenize

DUPLICATE_COSINE = 0.93
SUPERSEDE_COSINE = 0.55
SUPERSEDE_PREFIX = 0.6
SUPERSEDE_MAX_TAIL = 3

_PUNCT = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Case-folded text without punctuation and with single spaces (the de-dup key)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCT.sub(" ", text).split())


def content_hash(text: str) -> str:
    """A short hash of the normalised text: the same fact said twice hashes the same."""
    return hashlib.sha256(normalise(text).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class FactDecision:
    """What to do with a new fact: ``action`` is "duplicate", "supersede" or "new"."""

    action: str
    other_id: str | None = None


def same_frame(old: str, new: str) -> bool:
    """True if the texts share a leading frame and differ only in a short tail."""
    a, b = tokenize(old, drop_stopwords=False), tokenize(new, drop_stopwords=False)
    if not a or not b:
        return False
    prefix = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        prefix += 1
    longest = max(len(a), len(b))
    tail_a, tail_b = len(a) - prefix, len(b) - prefix
    return (
        prefix / longest >= SUPERSEDE_PREFIX
        and 0 < max(tail_a, tail_b) <= SUPERSEDE_MAX_TAIL
    )


def decide(
    new_text: str, candidates: list[tuple[str, str, float]], auto_supersede: bool = True
) -> FactDecision:
    """Decide about ``new_text`` given ``(id, text, cosine)`` of the closest current facts."""
    for mid, _text, cos in candidates:
        if cos >= DUPLICATE_COSINE:
            return FactDecision("duplicate", mid)
    if auto_supersede:
        for mid, text, cos in sorted(candidates, key=lambda c: -c[2]):
            if cos >= SUPERSEDE_COSINE and same_frame(text, new_text):
                return FactDecision("supersede", mid)
    return FactDecision("new")
