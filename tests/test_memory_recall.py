"""Recall regression test on bench/data/memory_recall.json (the README's recall benchmark).

The benchmark runs as the program a person runs (``python -m bench.memory_recall --json``):
the tests never import bench, so a benchmark can change its internals freely.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agent.embedding import MEMORY_EMBEDDING_MODEL
from tests.support.paths import ROOT

# Measured with MiniLM (see the README): hybrid recall@5 en 1.00, zh 1.00; recall@1 en 0.65, zh 0.46.
# Floors sit a little below, so a real regression fails and noise does not. They hold for memory's
# default embedder (USE multilingual) and for MiniLM, with the weights each is given (params_for).
FLOORS = {"en": {"recall@1": 0.55, "recall@5": 0.92}, "zh": {"recall@1": 0.38, "recall@5": 0.90}}


@pytest.fixture(scope="module", params=[MEMORY_EMBEDDING_MODEL, "minilm"])
def report(request):
    out = subprocess.run([sys.executable, "-m", "bench.memory_recall", "--json",
                          "--embedding_model_name", request.param], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_hybrid_recall_above_floor(report, lang):
    got = report["results"]["hybrid"][lang]
    for metric, floor in FLOORS[lang].items():
        assert got[metric] >= floor, f"{lang} {metric} {got[metric]} < {floor}: {report['results']['hybrid']}"


def test_hybrid_beats_dense_at_5(report):
    for lang in ("en", "zh"):
        assert report["results"]["hybrid"][lang]["recall@5"] >= report["results"]["dense"][lang]["recall@5"]
