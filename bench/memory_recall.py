"""Recall benchmark for Parley's long-term memory: plain dense top-k vs the hybrid search.

Data: ``bench/data/memory_recall.json``: 32 hand-written sessions (16 English, 16
Chinese) spread over eight weeks, with distractor sessions and facts that change
(old job -> new job, old home -> new home), and 52 questions, each with the keys
of the turns that hold the answer. Every turn (user words + reply) is one memory.

recall@k = share of a question's evidence turns found in the top k, averaged over
questions. Usage::

    python bench/memory_recall.py [--json] [--quick] [--embedding_model_name minilm]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.embedding import MEMORY_EMBEDDING_MODEL, Embedder, load_embedder
from agent.memory import MemoryStore

DATA = Path(__file__).parent / "data" / "memory_recall.json"
USER = "bench-user"


def load_data(path: Path = DATA) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def build_store(memory_dir: Path, embedder: Embedder, data: dict[str, Any]) -> dict[str, str]:
    """Fill a store with every session; return memory id -> turn key."""
    store = MemoryStore(memory_dir, embedder=embedder)
    id_to_key: dict[str, str] = {}
    for sess in sorted(data["sessions"], key=lambda s: s["start"]):
        start = datetime.fromisoformat(sess["start"]).timestamp()
        items = [
            {
                "text": f"User: {t['user']}\nAssistant: {t['assistant']}",
                "session_id": sess["id"],
                "created_at": start + 120 * i,
                "metadata": {"key": t["key"], "lang": sess["lang"]},
            }
            for i, t in enumerate(sess["turns"])
        ]
        ids = store.add_many(USER, items)
        id_to_key.update(zip(ids, (t["key"] for t in sess["turns"]), strict=True))
    store.close()
    return id_to_key


def evaluate(store: MemoryStore, data: dict[str, Any], mode: str, k: int = 5) -> dict[str, dict[str, float]]:
    """recall@1 and recall@k per language for one search mode."""
    now = datetime.fromisoformat(data["now"]).timestamp()
    per: dict[str, list[tuple[float, float]]] = {}
    misses: list[str] = []
    for q in data["questions"]:
        hits = store.search(USER, q["question"], k=k, now=now, tz=UTC, mode=mode)
        keys = [h.metadata["key"] for h in hits]
        ev = set(q["evidence"])
        r1 = len(ev & set(keys[:1])) / len(ev)
        rk = len(ev & set(keys[:k])) / len(ev)
        per.setdefault(q["lang"], []).append((r1, rk))
        if rk < 1:
            misses.append(f"{mode}: {q['question']} -> {keys[:3]} (want {sorted(ev)})")
    out = {
        lang: {
            "recall@1": round(sum(a for a, _ in v) / len(v), 3),
            f"recall@{k}": round(sum(b for _, b in v) / len(v), 3),
            "questions": len(v),
        }
        for lang, v in sorted(per.items())
    }
    out["_misses"] = misses  # type: ignore[assignment]
    return out


def run(embedder: Embedder, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build a store in a temp dir and evaluate dense and hybrid; returns the figures."""
    data = data or load_data()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_store(Path(tmp), embedder, data)
        build_s = time.perf_counter() - t0
        store = MemoryStore(tmp, embedder=embedder)
        try:
            results = {mode: evaluate(store, data, mode) for mode in ("dense", "hybrid")}
        finally:
            store.close()
    return {
        "embedder": embedder.name,
        "memories": sum(len(s["turns"]) for s in data["sessions"]),
        "sessions": len(data["sessions"]),
        "questions": len(data["questions"]),
        "build_seconds": round(build_s, 2),
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"embedder={report['embedder']} memories={report['memories']} sessions={report['sessions']}"
        f" questions={report['questions']}",
        "",
        "| method | lang | recall@1 | recall@5 | n |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode, res in report["results"].items():
        for lang, r in res.items():
            if lang.startswith("_"):
                continue
            lines.append(
                f"| {mode} | {lang} | {r['recall@1']:.3f} | {r['recall@5']:.3f} | {r['questions']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", help="default embedder only (already well under 60 s)")
    ap.add_argument("--embedding_model_name", default=MEMORY_EMBEDDING_MODEL)
    ap.add_argument("--misses", action="store_true", help="also list the questions not fully recalled")
    args = ap.parse_args(argv)
    report = run(load_embedder(args.embedding_model_name))
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(table(report))
        if args.misses:
            for mode in report["results"]:
                print("\n".join(report["results"][mode]["_misses"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
