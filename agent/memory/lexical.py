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
K1, B = 1.5, 0.75
CUT_MIN = 50_000
"""Past this many documents the top is cut from a sample first (see ``LexicalScores._top_rows``)."""
CUT_STRIDE = 16  # bm25s defaults, so tail scores are on the main index's scale


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

    def idf(self, token: str) -> float:
        """BM25's IDF of ``token`` (bm25s' default, "lucene"); an unknown word gets the highest."""
        n_docs = len(self._main_seqs) + len(self._tail)
        return math.log(1 + (n_docs - self._df[token] + 0.5) / (self._df[token] + 0.5))

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
        return self.score(query_tokens).top(k)

    def score(self, query_tokens: list[str]) -> LexicalScores:
        """The BM25 scores of every document for this query, to take the top of and to extend."""
        return LexicalScores(self, query_tokens)

    def _postings(self, tokens: Iterable[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(row numbers, BM25 contributions) of each known token in the main index."""
        r = self._retriever
        if r is None:
            return []
        sc, out = r.scores, []
        for t in tokens:
            tid = r.vocab_dict.get(t)
            if tid is not None:
                lo, hi = int(sc["indptr"][tid]), int(sc["indptr"][tid + 1])
                out.append((sc["indices"][lo:hi], sc["data"][lo:hi]))
        return out

    def _score_tail(self, query_tokens: list[str]) -> list[tuple[int, float]]:
        n_docs = len(self._main_seqs) + len(self._tail)
        avg_len = max(1.0, self._total_len / max(1, n_docs))
        q = set(query_tokens)
        # bm25s' default idf ("lucene"): log(1 + (N - df + 0.5) / (df + 0.5)).
        idf = {t: self.idf(t) for t in q}
        out = []
        for seq, toks in self._tail.items():
            tf = Counter(t for t in toks if t in q)
            if not tf:
                continue
            norm = K1 * (1 - B + B * len(toks) / avg_len)
            # bm25s' "lucene" term part has no (K1 + 1) factor: with it a new row scored 2.5x its twin.
            out.append((seq, sum(idf[t] * c / (c + norm) for t, c in tf.items())))
        return out


class LexicalScores:
    """One query's BM25 scores over a user's index: its top ``k``, and the top of the query plus more words.

    At a million memories one scoring pass costs milliseconds (a score per document, then the
    top of a million): the second hop (``plus``) reuses this pass instead of scoring again.
    """

    def __init__(self, index: LexicalIndex, query_tokens: list[str]) -> None:
        self._ix = index
        self.tokens = list(query_tokens)
        r = index._retriever
        self._main = (r.get_scores(self.tokens) if r is not None and len(index._main_seqs) and self.tokens
                      else np.zeros(0, np.float32))
        self._first: list[tuple[int, float]] | None = None

    def top(self, k: int) -> list[tuple[int, float]]:
        """Best ``k`` (seq, score) with a positive score, best first."""
        if not self.tokens or k <= 0:
            return []
        ix = self._ix
        hits = [(int(ix._main_seqs[i]), float(self._main[i])) for i in self._top_rows(k)]
        if ix._tail:
            hits += ix._score_tail(self.tokens)
        hits.sort(key=lambda h: -h[1])
        self._first = hits[:k]
        return self._first

    def coverage(self) -> float:
        """How much of the query the best hit matches, 0 to 1: its score over what a full match would score.

        A full match is an average-length document holding each query word once: the sum of
        the words' IDF times BM25's term part for one occurrence, 1 / (1 + K1). Words the
        history never uses count in full, so a query BM25 can match only in part (a paraphrase
        of the stored turn) covers little, and its ranking is mostly chance.
        """
        best = self._first if self._first else self.top(1)
        ideal = sum(self._ix.idf(t) for t in dict.fromkeys(self.tokens)) / (1 + K1)
        return min(1.0, best[0][1] / ideal) if best and ideal > 0 else 0.0

    def plus(self, extra_tokens: list[str], k: int) -> list[tuple[int, float]]:
        """Best ``k`` for the query's words plus ``extra_tokens`` (BM25 adds up over the query's words).

        Exact without a second pass: a document none of the extra words occur in keeps its
        score, so it can only be in the new top ``k`` if it was in this query's top ``k``;
        the others are the (few) documents that hold a rare extra word.
        """
        extra = [t for t in dict.fromkeys(extra_tokens) if t not in self.tokens]
        if not extra or k <= 0:
            return self.top(k) if self._first is None else self._first[:k]
        first = self._first if self._first is not None and len(self._first) >= k else self.top(k)
        ix = self._ix
        combined: dict[int, float] = {}
        posts = ix._postings(extra)
        if posts and len(self._main):
            rows = np.concatenate([p[0] for p in posts]).astype(np.int64)
            vals = np.concatenate([p[1] for p in posts])
            uniq, inv = np.unique(rows, return_inverse=True)
            add = np.bincount(inv, weights=vals).astype(np.float32)
            for row, v in zip(uniq.tolist(), (self._main[uniq] + add).tolist(), strict=True):
                seq = int(ix._main_seqs[row])
                if seq not in ix._deleted:
                    combined[seq] = v
        for seq, v in first:
            combined.setdefault(seq, v)  # held no extra word (a tail row is re-scored below)
        if ix._tail:
            combined.update(ix._score_tail(self.tokens + extra))
        return sorted(((s, v) for s, v in combined.items() if v > 0), key=lambda h: -h[1])[:k]

    def _top_rows(self, k: int) -> list[int]:
        """Rows of the main index's best ``k`` positive scores, deleted rows left out."""
        s, ix = self._main, self._ix
        if not len(s):
            return []
        want = min(len(s), k + len(ix._deleted))
        if len(s) > CUT_MIN and want * CUT_STRIDE < len(s):
            # argpartition over a million scores costs ~4 ms. The want-th best of every
            # CUT_STRIDE-th score is a cut that at least ``want`` documents reach, so the top is
            # the rows above it (usually a few hundred) and, to fill up, rows equal to it (exact).
            sample = s[::CUT_STRIDE]
            cut = np.partition(sample, len(sample) - want)[len(sample) - want]
            if cut > 0:
                cand = np.flatnonzero(s > cut)
                if len(cand) < want:
                    cand = np.concatenate([cand, np.flatnonzero(s == cut)[: want - len(cand)]])
            else:
                cand = np.flatnonzero(s > 0)
        else:
            cand = np.arange(len(s))
        if want < len(cand):
            cand = cand[np.argpartition(-s[cand], want - 1)[:want]]
        return [int(i) for i in cand if s[i] > 0 and int(ix._main_seqs[i]) not in ix._deleted]
