"""Lexical side of recall: tokenisation (jieba for Chinese, lower-case words otherwise) and BM25.

Each user gets a BM25 index (``bm25s``) built lazily from the tokens stored in
SQLite, so a rebuild never re-runs jieba. Rebuilding on every write would cost
seconds at 100k memories, so new rows go to a small *tail* scored in Python with
the same BM25 formula (document frequencies from the main index plus the tail),
and deleted rows are filtered out; the main index is rebuilt only once the tail
or the deletions exceed ``REBUILD_FRACTION`` of it.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable

import bm25s
import jieba
import numpy as np

from agent.language import HAN, HAN_RANGES

jieba.setLogLevel(logging.WARNING)

_TOKEN = re.compile(f"[{HAN_RANGES}]+|[a-z0-9]+")

STOPWORDS = frozenset(
    [
        "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "by", "for",
        "with", "about", "as", "is", "are", "was", "were", "be", "been", "being", "am", "do",
        "does", "did", "i", "me", "my", "mine", "we", "our", "you", "your", "he", "him", "his",
        "she", "her", "it", "its", "they", "them", "their", "this", "that", "these", "those",
        "what", "which", "who", "whom", "when", "where", "why", "how", "there", "here", "so", "not",
        "no", "yes", "can", "could", "would", "should", "will", "shall", "may", "might", "must",
        "have", "has", "had", "just", "than", "then", "too", "very", "also", "any", "some", "all",
        "again", "ever", "s", "t", "d", "ll", "m", "re", "ve", "don", "doesn", "didn", "isn",
        "tell", "said", "say", "says", "told", "ask", "asked", "remember", "recall",
        "的", "了", "是", "我", "你", "他", "她", "它", "们", "我们",
        "你们", "在", "和", "与", "就", "都", "也", "还",
        "吗", "呢", "吧", "啊", "呀", "么", "什么", "这", "那", "这个",
        "那个", "一个", "有", "没有", "说", "过", "着",
        "给", "把", "被", "让", "对", "跟", "个", "很", "又", "会",
        "要", "想", "能", "请", "问", "记得", "告诉",
    ]
)


def tokenize(text: str, drop_stopwords: bool = True) -> list[str]:
    """Lower-case word tokens; runs of Chinese characters are cut by jieba (search mode).

    English words lose a plural/third-person "s" (lives -> live, cats -> cat): crude,
    but it needs no stemmer package and fixes the commonest lexical misses.
    """
    out: list[str] = []
    for piece in _TOKEN.findall(text.lower()):
        # jieba's search mode also emits the sub-words of long words (上海市 -> 上海, 海市, 上海市).
        words = [w for w in jieba.cut_for_search(piece) if w.strip()] if HAN.match(piece) else [piece]
        for w in words:
            if drop_stopwords and w in STOPWORDS:
                continue
            if len(w) > 3 and w.isascii() and w.endswith("s") and not w.endswith("ss"):
                w = w[:-1]
            out.append(w)
    return out


REBUILD_FRACTION = 0.1
REBUILD_MIN = 2000
K1, B = 1.5, 0.75  # bm25s defaults, so tail scores are on the main index's scale


class LexicalIndex:
    """BM25 over one user's memories, keyed by record seq."""

    def __init__(self, seqs: list[int], token_lists: list[list[str]]) -> None:
        self._main_seqs = np.asarray(seqs, dtype=np.int64)
        self._retriever: bm25s.BM25 | None = None
        self._df: Counter[str] = Counter()
        self._total_len = 0
        if seqs:
            self._retriever = bm25s.BM25(k1=K1, b=B)
            # A doc with no tokens would be dropped by bm25s and shift the row numbers.
            self._retriever.index([t or ["\x00"] for t in token_lists], show_progress=False)
            for toks in token_lists:
                self._df.update(set(toks))
                self._total_len += len(toks)
        self._tail: dict[int, list[str]] = {}
        self._deleted: set[int] = set()

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[list[int], list[str]]]) -> LexicalIndex:
        """Build the index from ``(seqs, token lists)`` batches."""
        seqs: list[int] = []
        toks: list[list[str]] = []
        for s, t in rows:
            seqs += s
            toks += [x.split() for x in t]
        return cls(seqs, toks)

    @property
    def size(self) -> int:
        """How many documents the index holds."""
        return len(self._main_seqs) + len(self._tail) - len(self._deleted)

    def share(self, token: str) -> float:
        """Share of the user's memories that contain ``token`` (0 for an unknown one)."""
        return self._df[token] / max(1, self.size)

    def contains(self, seq: int) -> bool:
        """True if ``seq`` is indexed (main rows are in seq order, as the store reads them)."""
        seq = int(seq)
        if seq in self._tail:
            return True
        i = int(np.searchsorted(self._main_seqs, seq))
        return i < len(self._main_seqs) and int(self._main_seqs[i]) == seq and seq not in self._deleted

    def needs_rebuild(self) -> bool:
        """Whether enough was added or deleted since the last build that rebuilding pays."""
        churn = len(self._tail) + len(self._deleted)
        return churn > max(REBUILD_MIN, REBUILD_FRACTION * len(self._main_seqs))

    def add(self, seq: int, tokens: list[str]) -> None:
        """Add one document (kept in the unindexed tail until the next rebuild)."""
        self._tail[int(seq)] = tokens
        self._df.update(set(tokens))
        self._total_len += len(tokens)

    def remove(self, seq: int) -> None:
        """Remove one document."""
        if self._tail.pop(int(seq), None) is None:
            self._deleted.add(int(seq))

    def search(self, query_tokens: list[str], k: int) -> list[tuple[int, float]]:
        """Best ``k`` (seq, bm25 score) with a positive score, best first."""
        if not query_tokens or k <= 0:
            return []
        hits: list[tuple[int, float]] = []
        if self._retriever is not None and len(self._main_seqs):
            scores = self._retriever.get_scores(query_tokens)
            want = min(len(scores), k + len(self._deleted))
            top = np.argpartition(-scores, want - 1)[:want] if want < len(scores) else np.arange(len(scores))
            hits += [
                (int(self._main_seqs[i]), float(scores[i]))
                for i in top
                if scores[i] > 0 and int(self._main_seqs[i]) not in self._deleted
            ]
        if self._tail:
            hits += self._score_tail(query_tokens)
        hits.sort(key=lambda h: -h[1])
        return hits[:k]

    def _score_tail(self, query_tokens: list[str]) -> list[tuple[int, float]]:
        n_docs = len(self._main_seqs) + len(self._tail)
        avg_len = max(1.0, self._total_len / max(1, n_docs))
        q = set(query_tokens)
        # bm25s' default idf ("lucene"): log(1 + (N - df + 0.5) / (df + 0.5)).
        idf = {t: math.log(1 + (n_docs - self._df[t] + 0.5) / (self._df[t] + 0.5)) for t in q}
        out = []
        for seq, toks in self._tail.items():
            tf = Counter(t for t in toks if t in q)
            if not tf:
                continue
            norm = K1 * (1 - B + B * len(toks) / avg_len)
            out.append((seq, sum(idf[t] * c * (K1 + 1) / (c + norm) for t, c in tf.items())))
        return out
