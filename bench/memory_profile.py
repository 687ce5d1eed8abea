"""Where one memory search's time goes at 100k (or ``--memories``) memories of one user: a cProfile of searches.

The user is filled the way :mod:`bench.memory_scale` does it (random unit vectors, synthetic
texts); every search embeds its query for real (the embedder's cache of recent texts is
emptied). Prints the wall-clock p50/p95 and, per step of the search (query embedding,
FAISS, BM25, second hop, fusion, SQL fetches), its share of the profiled time.

    python -m bench.memory_profile [--memories 100000] [--searches 200] [--embedding_model_name NAME]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.embedding import MEMORY_EMBEDDING_MODEL, load_embedder
from agent.memory import MemoryStore
from bench.common import load_average
from bench.memory_scale import QUERIES, fill

# (label, file name ending, function name) of the steps reported.
STEPS = [
    ("query embedding", "embedding.py", "encode"),
    ("FAISS", "vector_index.py", "search"),
    ("BM25 scoring", "lexical.py", "score"),
    ("BM25 top", "lexical.py", "top"),
    ("second hop", "search_steps.py", "second_hop"),
    ("time window ranking", "search_steps.py", "window_ranking"),
    ("fusion (with its SQL fetch)", "recall.py", "fuse"),
    ("columns lookup", "columns.py", "usable"),
    ("vectors from FAISS", "vector_index.py", "vectors_of"),
    ("SQL get_by_seqs", "sql_reads.py", "get_by_seqs"),
    ("SQL session/window", "sql_reads.py", "seqs_in_window"),
    ("whole search", "store.py", "search"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memories", type=int, default=100_000)
    ap.add_argument("--searches", type=int, default=200)
    ap.add_argument("--embedding_model_name", default=MEMORY_EMBEDDING_MODEL)
    args = ap.parse_args(argv)
    emb = load_embedder(args.embedding_model_name)
    emb.encode(["warm up"])
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(Path(tmp) / "one", embedder=emb)
        fill(store, "u", args.memories, random.Random(0), time.time() - 90 * 86400)
        t = time.perf_counter()
        store.search("u", "warm up the lexical index", k=5)  # loads the columns, starts a large user's BM25 build
        first_s = time.perf_counter() - t
        store.wait_for_indexes("u")
        recent = getattr(emb, "_recent", None)
        wall = []
        prof = cProfile.Profile()
        for i in range(args.searches):
            if recent is not None:
                recent.clear()
            q = f"{QUERIES[i % len(QUERIES)]} {i}"
            t = time.perf_counter()
            prof.enable()
            store.search("u", q, k=5)
            prof.disable()
            wall.append((time.perf_counter() - t) * 1000)
        store.close()
    stats = pstats.Stats(prof)
    per: dict[str, float] = {}
    for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        for label, ending, name in STEPS:
            if file.endswith(ending) and func == name:
                # max, not sum: a wrapper and the function it wraps share a name (CachedEmbedder.encode)
                per[label] = max(per.get(label, 0.0), ct)
    total = per.get("whole search", 1e-9)
    out = {
        "embedder": emb.name,
        "memories": args.memories,
        "searches": args.searches,
        "first_search_s": round(first_s, 3),
        "p50_ms": round(float(np.percentile(wall, 50)), 2),
        "p95_ms": round(float(np.percentile(wall, 95)), 2),
        "ms_per_search_profiled": {k: round(v * 1000 / args.searches, 2) for k, v in per.items()},
        "share": {k: round(v / total, 3) for k, v in per.items() if k != "whole search"},
        "load_average": load_average(),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
