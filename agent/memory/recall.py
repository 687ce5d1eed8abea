"""Fusing the dense and lexical rankings, time windows, neighbouring turns and recency into one list."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from agent.memory.columns_state import ColumnReader
from agent.memory.records import MemoryRecord, RecordStore
from agent.memory.timewindow import TimeWindow

VectorLookup = Callable[[Sequence[int]], dict[int, np.ndarray]]
"""The stored vector of each of some seqs (``UserIndex.vectors_of``)."""


@dataclass(frozen=True)
class RecallSettings:
    """Knobs of hybrid recall (defaults chosen on the tuning half of ``bench/memory_long.py``)."""

    pool: int = 50
    """Candidates taken from each ranking before fusion."""
    rrf_k: float = 60.0
    """Reciprocal rank fusion constant: 1 / (rrf_k + rank)."""
    dense_weight: float = 0.5
    """Weight of the dense ranking for mostly non-Chinese queries (BM25 counts 1)...

    Chosen with memory's embedder (USE multilingual) on ``bench.memory_long``'s tuning half:
    0.5 gave mean recall@10 0.843, 1.0 0.837, 2.0 lower. (MiniLM was best at 2.0.)
    """
    cjk_dense_weight: float = 0.5
    """...and for Chinese ones."""
    lexical_weight: float = 1.0
    trusted_coverage: float = 0.5
    """BM25 and its second hop count in full when the best BM25 hit covers at least this share of the
    query (:meth:`LexicalScores.coverage`), and in proportion below; 0 turns this off.

    "Which company do I work for now?" shares only "work" with the history ("the blender does not
    work"), none with "I accepted an offer from Northwind": its BM25 hits are chance matches, and
    at full weight any BM25 hit out-ranked dense's best find.
    On ``bench.memory_long``'s tuning half 0.5 lifted update recall@10 0.54 -> 0.58 (en) and
    0.42 -> 0.58 (zh) with no category lower; 0.625 cost English multi-hop 0.025 (its queries
    cover 0.5 to 0.7; update questions 0 to 0.3, single-hop ones a median of 0.8 en, 0.4 zh).
    """
    window_boost: float = 0.05
    """Added to memories inside the query's time window (about 3x a top-1 RRF score: in-window wins)."""
    fuzzy_window_boost: float = 0.0
    """...and inside a vague one ("recently", "最近"), where it is a hint, not a filter."""
    event_windows: bool = True
    """Resolve "the week after I went hiking" by finding that event first (see ``find_relative_event``)."""
    current_recency_weight: float = 0.003
    """Recency weight instead of ``recency_weight`` when the query asks about now ("现在", "currently")."""
    current_words: tuple[str, ...] = (" now", "currently", "these days", "at the moment", "at present",
                                      "现在", "目前", "如今")
    bridge_weight: float = 1.0
    """Weight of the second-hop BM25 ranking (see ``bridge_tokens``); 0 turns it off."""
    bridge_hits: int = 1
    """The best this many BM25 hits lend their rare words to the second hop (2 cost the small
    ``bench/memory_recall.py`` set 0.04-0.08 recall@1)..."""
    bridge_max_share: float = 0.02
    """...words found in at most this share of the user's memories (names, places)."""
    window_scan: int = 2000
    """At most this many memories of a time window are scored densely (newest first)."""
    neighbour_hits: int = 0
    """Neighbouring turns are looked up for this many top hits (off: 3 lost 0.02 recall@10 on the tuning half)..."""
    neighbour_factor: float = 0.3
    """...and get this fraction of the hit's score (added to their own)."""
    recency_weight: float = 1e-4
    """Tie-break: up to this much for the newest candidate."""
    duplicate_cosine: float = 0.8
    """A candidate this similar (cosine) to a better one is a repeat ("work was busy" told ten
    times) and goes behind every distinct one; 1.0 turns it off. See ``_distinct``."""
    distinct_scan: int = 6
    """Repeats are looked for among the best ``distinct_scan * k`` candidates."""
    past_words: tuple[str, ...] = ("before", "previous", "used to", "formerly", "之前", "以前", "原来")
    """Words of a question about an earlier state ("where did I live before the move?")."""
    prefer: str = ""
    """Of a statement and its repeats, which takes the place: "" the best-ranked, "newest" (questions
    about now: the newer statement wins), "oldest" (questions about before). Set per query."""
    time_words: frozenset[str] = field(
        default_factory=lambda: frozenset(
            [
                "yesterday", "today", "tonight", "last", "week", "month", "year", "ago", "days",
                "day", "past", "night", "morning",
                "recently", "lately", "this",
                "昨天", "昨晚",
                "今天", "今晚", "前天", "上周", "本周",
                "这周", "上个", "上个月", "本月", "这个",
                "个月", "星期", "礼拜",
                "最近", "之前", "以前", "天前", "几天", "前几天",
            ]
        )
    )


def params_for(embedder_name: str) -> RecallSettings:
    """The knobs tuned for this embedder: MiniLM keeps the weights chosen for it, others get the defaults.

    MiniLM's dense ranking is strong in English and weak in Chinese, USE's is the other way
    round; on ``bench.memory_long``'s tuning half MiniLM was best at dense weight 2.0 with
    neighbouring turns, USE at 0.5 without them, with the second hop and with repeats put last.
    """
    if embedder_name == "all-MiniLM-L6-v2":
        # Repeats off: MiniLM puts unrelated Chinese sentences within 0.8 of each other (it has
        # almost no Chinese), so every Chinese candidate looked like a repeat (zh recall@5 0.73 on
        # bench/memory_recall.py against 1.00).
        # BM25 kept at full weight: trusting MiniLM's weak Chinese ranking more cost zh single-hop and
        # MRR on the tuning half (0.899 -> 0.893, 0.498 -> 0.493) and zh recall@1 on bench/memory_recall.py.
        return RecallSettings(dense_weight=2.0, neighbour_hits=3, bridge_weight=0.0, duplicate_cosine=1.0,
                              trusted_coverage=0.0)
    return RecallSettings()


def lexical_trust(params: RecallSettings, coverage: float) -> float:
    """The share of their weight the BM25 rankings keep for a query whose best hit covers ``coverage``."""
    if params.trusted_coverage <= 0:
        return 1.0
    return max(0.0, min(1.0, coverage / params.trusted_coverage))


def _rrf(ranked: Sequence[tuple[int, float]], weight: float, k: float, into: dict[int, float]) -> None:
    for rank, (seq, _score) in enumerate(ranked):
        into[seq] = into.get(seq, 0.0) + weight / (k + rank + 1)


def fuse(
    records: RecordStore,
    user_id: str,
    columns: ColumnReader,
    vectors: VectorLookup,
    *,
    dense: Sequence[tuple[int, float]],
    lexical: Sequence[tuple[int, float]],
    window_ranked: Sequence[tuple[int, float]],
    window: TimeWindow | None,
    k: int,
    bridge: Sequence[tuple[int, float]] = (),
    params: RecallSettings,
    include_superseded: bool = False,
    kinds: Sequence[str] | None = None,
    cjk_query: bool = False,
    lexical_coverage: float = 1.0,
) -> list[MemoryRecord]:
    """Rank the candidates from every source and return the best ``k`` records with their scores.

    The candidates are ranked on the user's in-memory ``columns`` (kind, date, superseded)
    and ``vectors`` (the FAISS index's copies); only the final ``k`` rows are read from
    ``records``. ``lexical_coverage`` is how much of the query the best BM25 hit matches
    (see ``RecallSettings.trusted_coverage``).
    """
    p = params
    dense_weight = p.cjk_dense_weight if cjk_query else p.dense_weight
    trust = lexical_trust(p, lexical_coverage)
    scores: dict[int, float] = {}
    _rrf(dense, dense_weight, p.rrf_k, scores)
    _rrf(lexical, p.lexical_weight * trust, p.rrf_k, scores)
    # The window's own dense ranking brings in memories of that period that the global
    # top-N missed; it counts as a second dense vote, not a third independent signal.
    _rrf(window_ranked, dense_weight, p.rrf_k, scores)
    # The second hop ranks by the query's words too, so it is as much chance as the first.
    _rrf(bridge, p.bridge_weight * trust, p.rrf_k, scores)
    if not scores:
        return []
    cand = columns.usable(scores, include_superseded, kinds)  # ascending seq, as the SQL fetch returned them
    if not cand.seqs:
        return []
    created = dict(zip(cand.seqs, cand.created, strict=True))
    lo, span = min(cand.created), max(max(cand.created) - min(cand.created), 1.0)
    final: dict[int, float] = {}
    for s, t in created.items():
        v = scores[s] + p.recency_weight * (t - lo) / span
        if window is not None and window.contains(t):
            v += p.fuzzy_window_boost if window.fuzzy else p.window_boost
        final[s] = v

    # Neighbouring turns: the exchange just before/after a strong hit often holds the
    # rest of the answer ("I saw the doctor" -> "she told me to take vitamin D").
    top = sorted(final, key=final.__getitem__, reverse=True)[: p.neighbour_hits]
    extra: dict[int, tuple[float, float]] = {}  # neighbour seq -> (bonus, score of the hit it came from)
    top_recs = {r.seq: r for r in records.get_by_seqs(user_id, top)} if top else {}
    for r in (top_recs[s] for s in top if s in top_recs):
        if r.kind != "turn" or not r.session_id:
            continue
        for n in records.session_neighbours(user_id, r.session_id, r.seq):
            bonus = p.neighbour_factor * final[r.seq]
            if n not in extra or bonus > extra[n][0]:
                extra[n] = (bonus, final[r.seq])
    missing = columns.usable([n for n in extra if n not in created], include_superseded, kinds)
    for s, t in zip(missing.seqs, missing.created, strict=True):
        created[s] = t
        final[s] = p.recency_weight * (t - lo) / span
    for n, (bonus, source) in extra.items():
        if n in final and final[n] < source:
            # Pulled up, but never above the hit that vouches for it.
            final[n] = min(final[n] + bonus, source - 1e-6)

    ranked = sorted(final, key=lambda s: (final[s], created[s]), reverse=True)
    best = _distinct(vectors, ranked, k, p, created) if p.duplicate_cosine < 1.0 else ranked[:k]
    cosine = dict(dense)
    for s, sim in window_ranked:
        cosine.setdefault(s, sim)
    recs = {r.seq: r for r in records.get_by_seqs(user_id, best)}
    return [replace(recs[s], score=round(final[s], 6), similarity=round(cosine.get(s, 0.0), 6))
            for s in best if s in recs]


def _distinct(vectors: VectorLookup, ranked: list[int], k: int, p: RecallSettings,
              created: dict[int, float]) -> list[int]:
    """The best ``k`` of ``ranked`` with repeats moved behind the distinct candidates.

    A long history says the same small things many times ("work was busy today"); ten
    copies of one remark would fill the top ten and push out the one turn that answers
    the question. A candidate whose vector is within ``duplicate_cosine`` of a better
    kept one is a repeat; repeats only fill places no distinct candidate is left for. With
    ``prefer`` set, a newer (older) repeat takes its statement's place: asked "where do I work
    now?", "I started my new job at B" beats the similar, older "...at A".
    """
    scan = ranked[: max(k, p.distinct_scan * k)]
    vec_of = vectors(scan)
    dim = len(next(iter(vec_of.values()))) if vec_of else 1
    kept: list[int] = []
    kept_vecs: list[np.ndarray] = []  # kept_vecs[i] is the vector of kept[i]
    repeats: list[int] = []
    for s in scan:
        v = vec_of.get(s)
        if v is None:  # no stored vector (not expected for an indexed row): cannot be compared, so kept
            v = np.zeros(dim, np.float32)
        # Element-wise, not BLAS (see search_steps.window_ranking: BLAS threads starve the embedder).
        sims = [float((kv * v).sum()) for kv in kept_vecs]
        j = max(range(len(sims)), key=sims.__getitem__) if sims else -1
        if j >= 0 and sims[j] >= p.duplicate_cosine:
            other = kept[j]
            if (p.prefer == "newest" and created[s] > created[other]) or (
                    p.prefer == "oldest" and created[s] < created[other]):
                kept[j], kept_vecs[j], s = s, v, other
            repeats.append(s)
            continue
        kept.append(s)
        kept_vecs.append(v)
        if len(kept) == k:
            break
    return (kept + repeats + ranked[len(scan):])[:k]
