"""The default embedder's numpy MiniLM gives sentence-transformers' vectors, with one BLAS thread."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.embedding import CachedEmbedder, SentenceTransformerEmbedder, _minilm_dir, load_embedder
from agent.minilm import BATCH_SIZE, NumpyMiniLM

TEXTS = [
    "The cat sat on the mat.",
    "你好，请用一句话介绍你自己",
    "今天北京的天气怎么样？",
    "what is the weather in Shanghai today",
    "x",
    "",
    "Ünïcödé naïve café, 東京 and São Paulo!",
    "memory " * 400,  # longer than the model's 256 tokens: truncated the same way
]


@pytest.fixture(scope="module")
def reference() -> SentenceTransformerEmbedder:
    """The same model through sentence-transformers (torch), the library it was trained for."""
    return SentenceTransformerEmbedder(_minilm_dir())


@pytest.fixture(scope="module")
def minilm() -> NumpyMiniLM:
    return NumpyMiniLM(_minilm_dir())


def test_default_embedder_is_the_numpy_minilm():
    embedder = load_embedder("minilm")
    assert isinstance(embedder, CachedEmbedder) and isinstance(embedder.inner, NumpyMiniLM)
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384


def test_vectors_match_sentence_transformers(minilm, reference):
    ours, theirs = minilm.encode(TEXTS), reference.encode(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_more_texts_than_a_batch_keep_their_order(minilm, reference):
    texts = [f"note {i}: " + "word " * (i % 37) for i in range(BATCH_SIZE * 2 + 5)]
    ours, theirs = minilm.encode(texts), reference.encode(texts)
    assert np.abs(ours - theirs).max() < 1e-5


def test_padding_does_not_change_a_short_text(minilm):
    alone = minilm.encode(["a short question"])[0]
    beside_a_long_one = minilm.encode(["a short question", "a much longer text " * 30])[0]
    assert np.abs(alone - beside_a_long_one).max() < 1e-5


def test_encode_of_nothing_is_empty(minilm):
    assert minilm.encode([]).shape == (0, 384)


def test_encode_runs_numpy_blas_on_the_configured_threads_and_restores_them(monkeypatch):
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    model = NumpyMiniLM(_minilm_dir(), threads=1)
    before = blas_threads()
    seen: list[list[int]] = []
    original = model._forward

    def forward(rows):
        seen.append(blas_threads())
        return original(rows)

    monkeypatch.setattr(model, "_forward", forward)
    model.encode(["one thread is enough for one query"])
    assert seen and all(threads == [1] * len(threads) for threads in seen)
    assert blas_threads() == before


def test_a_folder_that_is_not_bert_is_refused_clearly(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "xlm-roberta", "hidden_act": "gelu"}))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    with pytest.raises(ValueError, match="not a BERT model"):
        NumpyMiniLM(tmp_path)
