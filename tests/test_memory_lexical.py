"""BM25's fast paths give the exact answer of the plain ones: the cut top of a large index, the one-pass second hop."""

from __future__ import annotations

import random

import numpy as np
import pytest

from agent.memory.lexical import LexicalIndex

WORDS = [f"w{i}" for i in range(200)]


@pytest.fixture(scope="module")
def index():
    """60k documents (past the size where the top is cut), a few deleted, a tail of new ones."""
    rng = random.Random(3)
    docs = [[*rng.choices(WORDS, k=6), f"name{rng.randrange(3000)}"] for _ in range(60_000)]
    ix = LexicalIndex(list(range(1, len(docs) + 1)), docs)
    for seq in rng.sample(range(1, len(docs) + 1), 300):
        ix.remove(seq)
    for j in range(200):
        ix.add(100_000 + j, [*rng.choices(WORDS, k=5), f"name{rng.randrange(3000)}"])
    return ix


def plain_top(ix: LexicalIndex, tokens: list[str], k: int) -> list[tuple[int, float]]:
    """Every main score from bm25s, sorted in full, deleted rows dropped, the tail scored alike."""
    scores = ix._retriever.get_scores(tokens)
    hits = [(int(ix._main_seqs[i]), float(scores[i])) for i in np.argsort(-scores)
            if scores[i] > 0 and int(ix._main_seqs[i]) not in ix._deleted]
    hits += ix._score_tail(tokens)
    return sorted(hits, key=lambda h: -h[1])[:k]


def same(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> None:
    assert len(a) == len(b)
    assert [round(s, 4) for _, s in a] == [round(s, 4) for _, s in b]
    # Equal scores may come in either order; the sets of seqs above the last score must match.
    last = round(a[-1][1], 4)
    assert {q for q, s in a if round(s, 4) > last} == {q for q, s in b if round(s, 4) > last}


@pytest.mark.parametrize("query", [["w1", "w2"], ["w7"], ["w3", "w150", "name12"], ["name5"], ["nope", "w9"]])
def test_cut_top_is_exact(index, query):
    same(index.search(query, 50), plain_top(index, query, 50))


@pytest.mark.parametrize(("query", "extra"), [(["w1", "w2"], ["name7", "name8"]), (["w4"], ["name99"]),
                                              (["w5", "w6"], ["w5", "unknown"]), (["name3"], ["w8"])])
def test_second_hop_in_one_pass_is_exact(index, query, extra):
    scored = index.score(query)
    first = scored.top(50)
    assert first == index.search(query, 50)
    merged = query + [t for t in dict.fromkeys(extra) if t not in query]
    same(scored.plus(extra, 50), plain_top(index, merged, 50))


def test_empty_query_and_no_extra(index):
    assert index.search([], 10) == []
    scored = index.score(["w1"])
    assert scored.plus([], 10) == scored.top(10)


def test_a_new_document_scores_like_the_same_one_in_the_main_index():
    # New memories wait in the tail until a rebuild; they must not outrank an older twin meanwhile
    # (a present-state question would otherwise prefer whatever was said since the last build).
    rng = random.Random(5)
    docs = [rng.choices(WORDS, k=6) for _ in range(2000)]
    ix = LexicalIndex(list(range(len(docs))), docs)
    ix.add(5000, list(docs[7]))
    scores = dict(ix.search(docs[7][:3], 2000))
    assert scores[5000] == pytest.approx(scores[7], rel=0.02)
