"""Which ``--memory_min_score`` keeps the right memories out of prompts unasked, per embedder.

Every turn, Parley searches memory for the top ``memory_prompt_k`` (3) and puts in the prompt
those whose cosine similarity to the turn is at least ``--memory_min_score``. The threshold
was set on MiniLM's scale; another embedder scores the same evidence differently. This
script measures, on the *tuning* half of :mod:`bench.memory_long` (never the held-out half):

- recall: share of the evidence turns found in the top 3 that pass the threshold;
- precision: share of passing memories that are evidence;
- off-topic: share of everyday questions no memory answers (``bench/data/everyday_questions.json``:
  "北京有什么好玩的地方？", "How do I boil an egg?") that get at least one memory in their prompt.

    python -m bench.memory_min_score [--store_dir DIR] [--embedding_model_name use-multilingual minilm]

``--store_dir`` shares the filled stores with ``bench.memory_long`` (same folder names).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.embedding import MEMORY_EMBEDDING_MODEL, load_embedder
from agent.memory import MemoryStore
from bench.memory_long import fill
from bench.memory_long_data import generate

PROMPT_K = 3
EVERYDAY = Path(__file__).parent / "data" / "everyday_questions.json"
THRESHOLDS = [round(0.2 + 0.025 * i, 3) for i in range(17)]  # 0.2 .. 0.6


def everyday(lang: str) -> list[str]:
    """The everyday questions of one language (no memory answers them)."""
    data = json.loads(EVERYDAY.read_text(encoding="utf-8"))
    return [q["q"] for q in data.get(lang, [])]


def collect(store: MemoryStore, lang: str) -> tuple[list[tuple[float, bool]], int, list[list[float]]]:
    """(similarity, is evidence) of every top-3 hit on the tuning half, the evidence count, off-topic sims."""
    users = generate(lang)
    fill(store, users)
    hits: list[tuple[float, bool]] = []
    n_evidence = 0
    tune = [u for u in users if u["split"] == "tune"]
    for u in tune:
        for q in u["questions"]:
            ev = set(q["evidence"])
            n_evidence += len(ev)
            for h in store.search(q["user"], q["question"], k=PROMPT_K, now=q["now"], tz=UTC):
                hits.append((h.similarity, h.metadata["key"] in ev))
    off = [[h.similarity for h in store.search(u["user_id"], text, k=PROMPT_K, now=u["questions"][0]["now"], tz=UTC)]
           for u in tune for text in everyday(lang)]
    return hits, n_evidence, off


def sweep(hits: list[tuple[float, bool]], n_evidence: int, off: list[list[float]]) -> list[dict[str, float]]:
    rows = []
    for t in THRESHOLDS:
        kept = [ev for sim, ev in hits if sim >= t]
        good = sum(kept)
        rows.append({"threshold": t, "recall": round(good / max(1, n_evidence), 3),
                     "precision": round(good / max(1, len(kept)), 3),
                     "off_topic": round(sum(any(s >= t for s in sims) for sims in off) / max(1, len(off)), 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store_dir", type=Path, default=None)
    ap.add_argument("--embedding_model_name", nargs="+", default=[MEMORY_EMBEDDING_MODEL, "minilm"])
    ap.add_argument("--lang", nargs="+", default=["en", "zh"], choices=["en", "zh"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.embedding_model_name:
            emb = load_embedder(name)
            for lang in args.lang:
                with MemoryStore((args.store_dir or Path(tmp)) / f"{lang}-{emb.name}", embedder=emb) as store:
                    report[f"{emb.name}/{lang}"] = sweep(*collect(store, lang))
    if args.json:
        print(json.dumps(report))
        return 0
    for key, rows in report.items():
        print(f"\n{key}: threshold, recall of evidence in the top {PROMPT_K}, precision, "
              "off-topic prompts with a memory")
        for r in rows:
            print(f"  {r['threshold']:.3f}  recall {r['recall']:.3f}  precision {r['precision']:.3f}  "
                  f"off-topic {r['off_topic']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
