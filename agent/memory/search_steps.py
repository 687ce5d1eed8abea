"""The steps of :meth:`MemoryStore.search <agent.memory.store.MemoryStore.search>` beside the fusion itself.

Each takes what it reads as arguments (the record store, a user's indexes, the recall
knobs), so the store's ``search`` reads as the list of steps it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from agent.language import HAN
from agent.memory.columns_state import ColumnReader
from agent.memory.lexical import LexicalIndex, LexicalScores, tokenize
from agent.memory.recall import RecallSettings
from agent.memory.records import MemoryRecord, RecordStore
from agent.memory.timewindow import TimeWindow

MatrixLookup = Callable[[Sequence[int]], tuple[np.ndarray, np.ndarray]]
"""``(seqs, vectors)`` of some seqs (``UserIndex.matrix_of``)."""


def second_hop(records: RecordStore, user_id: str, params: RecallSettings, lexical_index: LexicalIndex | None,
               scored: LexicalScores | None, lexical: Sequence[tuple[int, float]],
               pool: int) -> list[tuple[int, float]]:
    """A second BM25 ranking: the query's words plus the rare words (names) of its best BM25 hits.

    "What has my sister started learning?" finds "My sister Anna came round..." but not
    "Anna told me she has just started learning pottery", which never says "sister";
    the hop carries "anna" over from the first turn to the second. ``scored`` is the first
    pass, extended rather than scored again (see :meth:`LexicalScores.plus`).
    """
    if params.bridge_weight <= 0 or lexical_index is None or scored is None or not lexical:
        return []
    asked = set(scored.tokens)
    rare: list[str] = []
    texts = records.texts_for(user_id, [s for s, _ in lexical[: params.bridge_hits]])
    for s, _ in lexical[: params.bridge_hits]:
        rare += [t for t in tokenize(texts.get(s, "")) if t not in asked and t not in rare
                 and lexical_index.share(t) <= params.bridge_max_share]
    if not rare:
        return []
    return scored.plus(rare, pool)


def window_ranking(columns: ColumnReader, vectors: MatrixLookup, window: TimeWindow | None, qvec: np.ndarray,
                   params: RecallSettings, pool: int) -> list[tuple[int, float]]:
    """The memories of the query's time window ranked by cosine (brings in what the global top-N missed)."""
    if window is None or (window.fuzzy and params.fuzzy_window_boost == 0):
        return []
    wseqs = columns.in_window(window.start, window.end, params.window_scan)
    if not wseqs:
        return []
    seqs_arr, vecs = vectors(sorted(wseqs))  # ascending, the order the SQL fetch of these vectors returned
    # Element-wise, not BLAS: OpenBLAS's threads spin after a call and starve the query embedder.
    sims = (vecs * qvec).sum(axis=1)
    order = np.argsort(-sims)[:pool]
    return [(int(seqs_arr[i]), float(sims[i])) for i in order]


def dense_only(records: RecordStore, user_id: str, scores: np.ndarray, seqs: np.ndarray, k: int,
               include_superseded: bool, kinds: Sequence[str] | None) -> list[MemoryRecord]:
    """Plain dense top-``k`` (``mode="dense"``, the benchmarks' baseline)."""
    by_seq = {r.seq: r for r in records.get_by_seqs(user_id, seqs.tolist())}
    out = []
    for s, c in zip(seqs.tolist(), scores.tolist(), strict=True):
        r = by_seq.get(s)
        if r is None or (r.superseded_by and not include_superseded) or (kinds and r.kind not in kinds):
            continue
        out.append(replace(r, score=float(c)))
        if len(out) == k:
            break
    return out


def current_params(p: RecallSettings, query: str) -> RecallSettings:
    """Params for this query: the present weighs recency more, and "now" or "before" picks among repeats.

    Questions about the present ("现在", "currently") let the newest of similar statements win;
    questions about before, the oldest.
    """
    q = f" {query.lower()}"
    if any(w in q for w in p.current_words):
        return replace(p, recency_weight=p.current_recency_weight, prefer="newest")
    if any(w in q for w in p.past_words):
        return replace(p, prefer="oldest")
    return p


def is_cjk(text: str) -> bool:
    """True if at least a third of the letters are Chinese characters."""
    cjk = len(HAN.findall(text))
    letters = sum(1 for c in text if c.isalpha())
    return letters > 0 and cjk * 3 >= letters
