"""Grid search of the recall knobs on the *tuning* half of :mod:`bench.memory_long` (never the held-out half).

    python -m bench.memory_long_tune --store_dir /tmp/long [--lang en zh] [--embedding_model_name minilm]
    python -m bench.memory_long_tune --store_dir /tmp/long --grid '{"duplicate_cosine": [0.85, 0.9, 0.95]}'

Prints recall@10 and MRR per setting, best first (mean of the languages).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.embedding import MEMORY_EMBEDDING_MODEL, load_embedder
from agent.memory import MemoryStore
from agent.memory.recall import RecallSettings
from bench.memory_long import evaluate, fill
from bench.memory_long_data import generate

GRID = {
    "dense_weight": [0.5, 1.0, 2.0],
    "cjk_dense_weight": [0.5, 1.0],
    "neighbour_hits": [0, 3],
    "bridge_weight": [0.0, 0.5, 1.0],
    "bridge_hits": [1, 2],
}
"""The default grid; ``--grid`` (JSON, knob -> values) replaces it, other knobs keep their defaults."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store_dir", type=Path, required=True)
    ap.add_argument("--lang", nargs="+", default=["en", "zh"])
    ap.add_argument("--embedding_model_name", default=MEMORY_EMBEDDING_MODEL)
    ap.add_argument("--grid", type=json.loads, default=GRID, help="JSON object: knob -> list of values")
    args = ap.parse_args(argv)
    grid: dict[str, list] = args.grid
    emb = load_embedder(args.embedding_model_name)
    stores = {}
    data = {}
    for lang in args.lang:
        data[lang] = generate(lang)
        stores[lang] = MemoryStore(args.store_dir / f"{lang}-{emb.name}", embedder=emb)
        fill(stores[lang], data[lang])
    rows = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        params = replace(RecallSettings(), **dict(zip(keys, values, strict=True)))
        res = {lang: evaluate(stores[lang], data[lang], "tune", [("x", "hybrid", params)])["x"]["all"]
               for lang in args.lang}
        r10 = sum(r["recall@10"] for r in res.values()) / len(res)
        rows.append((r10, dict(zip(keys, values, strict=True)), res))
        print(round(r10, 3), rows[-1][1], {k: (v["recall@10"], v["mrr"]) for k, v in res.items()}, flush=True)
    print("\nbest first:")
    for r10, setting, res in sorted(rows, key=lambda r: -r[0])[:8]:
        print(round(r10, 3), setting, {k: (v["recall@10"], v["mrr"]) for k, v in res.items()})
    for s in stores.values():
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
