"""Scale benchmark of the memory store: add throughput and search latency at 10k / 100k / 1M memories.

Embedding a million texts with MiniLM would take hours on two cores, so the bulk
memories get random unit vectors through the store's pre-computed-vector path
(``MemoryStore._add_precomputed``, the same one a migration would use) while their
texts are synthetic sentences for BM25. Queries are real texts embedded by the real
embedder on every search (the query cache is cleared), so latencies include the
query embedding. ``add`` throughput is measured separately with real embedding.

    python bench/memory_scale.py [--quick] [--json] [--sizes 1000000] [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.embedding import MEMORY_EMBEDDING_MODEL, load_embedder
from agent.memory import MemoryStore
from bench.common import load_average, machine

WORDS = [
    "cat",
    "dog",
    "coffee",
    "tea",
    "music",
    "guitar",
    "cello",
    "book",
    "movie",
    "trip",
    "japan",
    "beijing",
    "shanghai",
    "lisbon",
    "doctor",
    "knee",
    "vet",
    "dinner",
    "ramen",
    "sushi",
    "pizza",
    "work",
    "meeting",
    "deadline",
    "project",
    "sister",
    "brother",
    "mother",
    "birthday",
    "wedding",
    "hike",
    "mountain",
    "river",
    "beach",
    "rain",
    "snow",
    "garden",
    "plant",
    "bike",
    "car",
    "bus",
    "train",
    "flight",
    "hotel",
    "budget",
    "salary",
    "rent",
    "apartment",
    "move",
    "friend",
    "party",
    "game",
    "chess",
    "football",
    "tennis",
    "swim",
    "yoga",
    "run",
    "marathon",
]
QUERIES = [
    "what is my cat called",
    "where did I travel last month",
    "what did the doctor say about my knee",
    "how much is my rent",
    "what did I do yesterday",
    "who is my guitar teacher",
    "which restaurant did I like",
    "when is my sister's wedding",
]


def rss_mb() -> float:
    """Peak resident set of the process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mb() -> float:
    """Current resident set (MB): the peak alone would hide what a smaller store needs after a bigger one."""
    with Path("/proc/self/status").open() as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synthetic(n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choices(WORDS, k=8)) + f" #{i}" for i in range(n)]


def fill(store: MemoryStore, user: str, n: int, rng: random.Random, t0: float) -> float:
    nrng = np.random.default_rng(rng.randrange(1 << 30))
    start = time.perf_counter()
    for lo in range(0, n, 50_000):
        m = min(50_000, n - lo)
        texts = synthetic(m, rng)
        items = [
            {"text": t, "created_at": t0 + (lo + i) * 30.0, "session_id": f"s{(lo + i) // 20}"}
            for i, t in enumerate(texts)
        ]
        store._add_precomputed(user, items, nrng.standard_normal((m, store.embedder.dim)).astype(np.float32))
    return time.perf_counter() - start


def search_latency(store: MemoryStore, users: list[str], rounds: int) -> dict[str, float]:
    times = []
    for r in range(rounds):
        for q in QUERIES:
            # Measure the query embedding every time: empty the embedder's cache of recent texts.
            recent = getattr(store.embedder, "_recent", None)
            if recent is not None:
                recent.clear()
            user = users[(r * len(QUERIES) + len(times)) % len(users)]
            t = time.perf_counter()
            store.search(user, f"{q} {r}", k=5)
            times.append((time.perf_counter() - t) * 1000)
    a = np.asarray(times)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "n": len(times),
    }


def bench_add(store: MemoryStore, n: int = 200) -> dict[str, float]:
    rng = random.Random(7)
    texts = synthetic(n, rng)
    t = time.perf_counter()
    for x in texts[: n // 2]:
        store.add("add-user", x, session_id="s")
    single = (n // 2) / (time.perf_counter() - t)
    t = time.perf_counter()
    store.add_many("add-user", texts[n // 2 :])
    batch = (n - n // 2) / (time.perf_counter() - t)
    return {"add_per_s": round(single, 1), "add_many_per_s": round(batch, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10k and 100k only")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="one-user sizes to run instead (e.g. 1000000), and no many-user rows")
    ap.add_argument("--embedding_model_name", default=MEMORY_EMBEDDING_MODEL)
    ap.add_argument("--rounds", type=int, default=8,
                    help="rounds of the 8 queries per row (1M: half); more give a steadier p95 on a busy machine")
    args = ap.parse_args(argv)
    emb = load_embedder(args.embedding_model_name)
    emb.encode(["warm up"])
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    sizes = args.sizes or sizes
    rng = random.Random(0)
    t0 = time.time() - 90 * 86400
    out: dict[str, Any] = {
        "machine": {**machine(), "gpu": False},
        "embedder": emb.name,
        "note": "bulk memories use random unit vectors (pre-computed path); queries are embedded for real",
        "single_user": [],
        "many_users": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(Path(tmp) / "add", embedder=emb)
        out["add"] = bench_add(store)
        store.close()
        for n in sizes:
            store = MemoryStore(Path(tmp) / f"one{n}", embedder=emb)
            fill_s = fill(store, "u", n, rng, t0)
            t = time.perf_counter()
            store.search("u", "warm up the lexical index", k=5)  # first search starts the BM25 build
            first = time.perf_counter() - t
            # A large user's BM25 is built in the background; wait for it so the latencies below include it.
            if hasattr(store, "wait_for_indexes"):
                store.wait_for_indexes("u")
            bm25_ready = time.perf_counter() - t
            lat = search_latency(store, ["u"], rounds=max(1, args.rounds // 2) if n >= 1_000_000 else args.rounds)
            row = {
                "memories": n,
                "bulk_insert_per_s": round(n / fill_s),
                "first_search_s": round(first, 2),
                "bm25_ready_s": round(bm25_ready, 2),
                **lat,
                "index": store.stats("u")["index"]["type"],
                "rss_mb": round(rss_mb()),
                "rss_now_mb": round(rss_now_mb()),
            }
            out["single_user"].append(row)
            store.close()
            if not args.json:
                print(row, flush=True)
        many = [(100, 100), (1000, 100)] if args.quick else [(100, 100), (1000, 100), (100, 10_000)]
        for n_users, per in [] if args.sizes else many:
            store = MemoryStore(Path(tmp) / f"many{n_users}x{per}", embedder=emb)
            users = [f"user{i}" for i in range(n_users)]
            t = time.perf_counter()
            for u in users:
                fill(store, u, per, rng, t0)
            fill_s = time.perf_counter() - t
            for u in users:  # first touch builds each user's BM25
                store.search(u, "warm", k=1)
            lat = search_latency(store, users, rounds=args.rounds)
            row = {
                "users": n_users,
                "per_user": per,
                "memories": n_users * per,
                "bulk_insert_per_s": round(n_users * per / fill_s),
                **lat,
                "rss_mb": round(rss_mb()),
                "rss_now_mb": round(rss_now_mb()),
            }
            out["many_users"].append(row)
            store.close()
            if not args.json:
                print(row, flush=True)
    out["rss_mb_peak"] = round(rss_mb())
    out["load_average_end"] = load_average()
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
