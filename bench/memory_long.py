"""Long-history recall benchmark: thousands of turns, >= 500 labelled questions per language.

The histories come from :mod:`bench.memory_long_data` (seeded, generated at run time:
nothing is kept in git). Every turn goes through ``MemoryStore.add_many`` with its
session and date; every question is a ``MemoryStore.search(user, question, k=10,
now=...)``. For each *stage* of the recall stack (plain dense, BM25 alone, then each
stage added in turn) it reports recall@1/5/10 (share of a question's evidence turns
in the top k, averaged) and MRR (1 / rank of the first evidence turn, 0 past 10), on
the tuning half and the held-out half, overall and per question category.

    python -m bench.memory_long [--json] [--split test] [--store_dir DIR] [--lang en zh]

``--store_dir`` keeps the filled stores between runs (filling embeds ~7,400 turns).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.embedding import MEMORY_EMBEDDING_MODEL, Embedder, load_embedder
from agent.memory import MemoryStore
from agent.memory.recall import RecallSettings
from bench.memory_long_data import generate

K = 10


def stages(base: RecallSettings) -> list[tuple[str, str, RecallSettings]]:
    """(name, search mode, params): each stage adds one thing to the one before."""
    off = replace(base, window_boost=0.0, fuzzy_window_boost=0.0, window_scan=0, event_windows=False,
                  neighbour_hits=0, recency_weight=0.0, current_recency_weight=0.0, bridge_weight=0.0,
                  duplicate_cosine=1.0, trusted_coverage=0.0)
    bm25 = replace(off, dense_weight=0.0, cjk_dense_weight=0.0)
    timed = replace(off, window_boost=base.window_boost, fuzzy_window_boost=base.fuzzy_window_boost,
                    window_scan=base.window_scan)
    events = replace(timed, event_windows=base.event_windows)
    bridged = replace(events, bridge_weight=base.bridge_weight)
    neighbours = replace(bridged, neighbour_hits=base.neighbour_hits)
    return [
        ("dense", "dense", base),
        ("bm25", "hybrid", bm25),
        ("+dense (RRF)", "hybrid", off),
        ("+time window", "hybrid", timed),
        ("+event window", "hybrid", events),
        ("+second hop", "hybrid", bridged),
        ("+neighbours" if base.neighbour_hits else "(neighbours off)", "hybrid", neighbours),
        ("+recency", "hybrid", replace(base, duplicate_cosine=1.0, trusted_coverage=0.0)),
        ("+repeats last", "hybrid", replace(base, trusted_coverage=0.0)),
        ("+BM25 by coverage (default)", "hybrid", base),
    ]


def fill(store: MemoryStore, users: list[dict[str, Any]]) -> dict[str, str]:
    """Store every user's turns (skipped for users already in the store); returns memory id -> key."""
    for u in users:
        if store.stats(u["user_id"])["total"]:
            continue
        items = [
            {"text": t["text"], "session_id": s["id"], "created_at": s["start"] + 90 * i,
             "metadata": {"key": t["key"]}}
            for s in u["sessions"] for i, t in enumerate(s["turns"])
        ]
        store.add_many(u["user_id"], items)
    return {}


def score(keys: list[str], evidence: list[str]) -> dict[str, float]:
    ev = set(evidence)
    out = {f"recall@{k}": len(ev & set(keys[:k])) / len(ev) for k in (1, 5, 10)}
    first = next((i for i, key in enumerate(keys[:K]) if key in ev), None)
    out["mrr"] = 0.0 if first is None else 1.0 / (first + 1)
    return out


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {m: round(sum(r[m] for r in rows) / len(rows), 3) for m in rows[0]} | {"n": len(rows)}


def evaluate(store: MemoryStore, users: list[dict[str, Any]], split: str,
             which: list[tuple[str, str, RecallSettings]]) -> dict[str, Any]:
    """Per stage: overall and per-category means on the users of ``split``."""
    per: dict[str, dict[str, list[dict[str, float]]]] = {name: {} for name, _m, _p in which}
    saved = store.params
    try:
        for u in users:
            if split != "all" and u["split"] != split:
                continue
            for q in u["questions"]:
                for name, mode, params in which:
                    store.params = params
                    hits = store.search(q["user"], q["question"], k=K, now=q["now"], tz=UTC, mode=mode)
                    s = score([h.metadata["key"] for h in hits], q["evidence"])
                    per[name].setdefault("all", []).append(s)
                    per[name].setdefault(q["category"], []).append(s)
    finally:
        store.params = saved
    return {name: {cat: _mean(rows) for cat, rows in sorted(cats.items())} for name, cats in per.items()}


def run(embedder: Embedder, langs: list[str], splits: list[str], store_dir: Path | None,
        params: RecallSettings | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {"embedder": embedder.name, "k": K, "langs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for lang in langs:
            users = generate(lang)
            folder = (store_dir or Path(tmp)) / f"{lang}-{embedder.name}"
            store = MemoryStore(folder, embedder=embedder, params=params)
            t = time.perf_counter()
            fill(store, users)
            fill_s = time.perf_counter() - t
            t = time.perf_counter()
            which = stages(store.params)
            res = {split: evaluate(store, users, split, which) for split in splits}
            report["langs"][lang] = {
                "users": len(users),
                "turns": sum(len(s["turns"]) for u in users for s in u["sessions"]),
                "questions": {sp: sum(len(u["questions"]) for u in users if sp in ("all", u["split"]))
                              for sp in splits},
                "fill_s": round(fill_s, 1),
                "eval_s": round(time.perf_counter() - t, 1),
                "results": res,
            }
            store.close()
    return report


def table(report: dict[str, Any]) -> str:
    lines = [f"embedder={report['embedder']}", ""]
    for lang, r in report["langs"].items():
        for split, res in r["results"].items():
            lines += [f"### {lang}, {split} half ({r['questions'][split]} questions, {r['turns']} turns, "
                      f"{r['users']} users in all)", "",
                      "| stage | R@1 | R@5 | R@10 | MRR | R@10 single | multi | update | temporal |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            for name, cats in res.items():
                a = cats["all"]
                per_cat = " | ".join(f"{cats[c]['recall@10']:.3f}" if c in cats else "-"
                                     for c in ("single-hop", "multi-hop", "update", "temporal"))
                lines.append(f"| {name} | {a['recall@1']:.3f} | {a['recall@5']:.3f} | {a['recall@10']:.3f} "
                             f"| {a['mrr']:.3f} | {per_cat} |")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--lang", nargs="+", default=["en", "zh"], choices=["en", "zh"])
    ap.add_argument("--split", nargs="+", default=["tune", "test"], choices=["tune", "test", "all"])
    ap.add_argument("--store_dir", type=Path, default=None, help="keep the filled stores here between runs")
    ap.add_argument("--embedding_model_name", default=MEMORY_EMBEDDING_MODEL)
    args = ap.parse_args(argv)
    report = run(load_embedder(args.embedding_model_name), args.lang, args.split, args.store_dir)
    print(json.dumps(report, ensure_ascii=False) if args.json else table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
