"""all-MiniLM-L6-v2 run in numpy: the default embedder without torch, transformers or sentence-transformers.

Why: on the start-up path, ``import sentence_transformers`` (torch, transformers, scikit-learn,
torch._dynamo) took 6.5 s of a 11.5 s start on two idle cores, longer than loading every speech
engine (``python -X importtime``, bench/startup.py). The model itself is a 6-layer BERT with
22 M parameters; its forward pass is a few matrix products, which numpy (already loaded) runs
with the same float32 BLAS. Tokenization is the model's own ``tokenizer.json`` read by Hugging
Face ``tokenizers`` (the Rust library that sentence-transformers uses underneath), and the
weights are the package's ``model.safetensors`` read by ``safetensors.numpy``.

The result is the same vectors as sentence-transformers (mean pooling over the tokens, then L2
normalisation; tests/test_minilm.py compares the two on English, Chinese and long text), so
indexes written by either agree. Other sentence-transformers folders
(``--embedding_model_name DIR``) still load through sentence-transformers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

BATCH_SIZE = 64
"""Texts per forward pass (sentence-transformers' ``encode`` default for this model's callers)."""


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mean).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x).

    erf comes from Abramowitz and Stegun 7.1.26 (numpy has none): absolute error under 1.5e-7, the
    size of float32 rounding here (tests/test_minilm.py checks the vectors against sentence-transformers').
    In place where it can: this is a third of the encoder's time.
    """
    z = np.abs(x) * np.float32(1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + np.float32(0.3275911) * z)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 1 - erf(|x| / sqrt 2)
    erf = np.copysign(1.0 - poly, x)
    erf += 1.0
    erf *= x
    erf *= np.float32(0.5)
    return erf


class NumpyMiniLM:
    """A BERT sentence encoder (mean pooling, unit length) from a sentence-transformers folder, in numpy.

    Thread-safe: the forward pass keeps no state between calls.
    """

    def __init__(self, model_dir: str | Path, name: str = "all-MiniLM-L6-v2", threads: int = 1) -> None:
        from safetensors.numpy import load_file
        from threadpoolctl import ThreadpoolController
        from tokenizers import Tokenizer

        path = Path(model_dir)
        config = json.loads((path / "config.json").read_text())
        st_config = json.loads((path / "sentence_bert_config.json").read_text())
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{path} is not a BERT model with GELU; load it with sentence-transformers")
        self.name = name
        self.dim = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config["layer_norm_eps"])
        self._max_len = int(st_config.get("max_seq_length", 256))
        # numpy's OpenBLAS runs a thread per core and spins at each product's end: on two shared cores a
        # one-query encode took 330 ms instead of 15 (the same finding as torch's threads, embed_threads()).
        self.threads = threads
        self._blas = ThreadpoolController()
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        # sentence-transformers truncates to max_seq_length and pads each batch to its longest text.
        self._tokenizer.enable_truncation(self._max_len)
        self._tokenizer.no_padding()
        w = load_file(str(path / "model.safetensors"))
        self._word = w["embeddings.word_embeddings.weight"]
        self._position = w["embeddings.position_embeddings.weight"]
        self._token_type = w["embeddings.token_type_embeddings.weight"]
        self._emb_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."

            def linear(name: str, prefix: str = p) -> tuple[np.ndarray, np.ndarray]:
                # Stored (out, in) as torch's Linear; transposed once so each call is x @ W.
                return np.ascontiguousarray(w[prefix + name + ".weight"].T), w[prefix + name + ".bias"]

            q, k, v = linear("attention.self.query"), linear("attention.self.key"), linear("attention.self.value")
            self._layers.append({
                # One product for query, key and value instead of three.
                "qkv": (np.concatenate([q[0], k[0], v[0]], axis=1), np.concatenate([q[1], k[1], v[1]])),
                "attn_out": linear("attention.output.dense"),
                "attn_norm": (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                "inter": linear("intermediate.dense"),
                "out": linear("output.dense"),
                "out_norm": (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            })

    def encode(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit-length rows, in the order of ``texts``."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        # Similar lengths together, so a batch pads little (as sentence-transformers does).
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._blas.limit(limits=self.threads, user_api="blas"):
            for start in range(0, len(order), BATCH_SIZE):
                batch = order[start:start + BATCH_SIZE]
                out[batch] = self._forward([encodings[i].ids for i in batch])
        return out

    def _forward(self, rows: list[list[int]]) -> np.ndarray:
        batch, length = len(rows), max(len(r) for r in rows)
        ids = np.zeros((batch, length), dtype=np.int64)
        mask = np.zeros((batch, length), dtype=np.float32)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
            mask[i, :len(r)] = 1.0
        x = self._word[ids] + self._position[:length] + self._token_type[0]
        x = _layer_norm(x, *self._emb_norm, self._eps)
        # Padding gets the most negative float32 before the softmax, as transformers does.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        heads, head_dim = self._heads, self.dim // self._heads
        scale = np.float32(1.0 / math.sqrt(head_dim))
        for layer in self._layers:
            # Linear layers on a 2-D (tokens, features) matrix: one BLAS product each. Batched products
            # on strided views fall back to numpy's own loops, 15 times slower in bulk (measured).
            flat = x.reshape(batch * length, self.dim)
            qkv = flat @ layer["qkv"][0] + layer["qkv"][1]
            qkv = np.ascontiguousarray(qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4))
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = np.matmul(q, np.ascontiguousarray(k.transpose(0, 1, 3, 2))) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = np.matmul(probs, v).transpose(0, 2, 1, 3).reshape(batch * length, self.dim)
            flat = _layer_norm(context @ layer["attn_out"][0] + layer["attn_out"][1] + flat, *layer["attn_norm"],
                               self._eps)
            hidden = _gelu(flat @ layer["inter"][0] + layer["inter"][1])
            flat = _layer_norm(hidden @ layer["out"][0] + layer["out"][1] + flat, *layer["out_norm"], self._eps)
            x = flat.reshape(batch, length, self.dim)
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
