"""Per-user FAISS indexes (cosine = inner product on unit vectors), saved atomically.

A small user gets an exact ``IndexIDMap2(IndexFlatIP)``. Past ``IVF_MIN`` vectors a
flat scan no longer fits the latency budget (100k x 384 floats is ~12 ms on two
cores), so the user's index is converted to an IVF index (float16 lists, lossless here) trained on
that user's own vectors, and retrained when it has grown four-fold since training.

The index file is only a cache of SQLite: next to it a small JSON file records the
watermark (row count and highest seq) it was saved at. On load, rows newer than
the watermark are added; if the counts still disagree (rows were deleted after the
save), or the file is missing or unreadable, the index is rebuilt from SQLite.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

IVF_MIN = 20_000
"""Vectors from which a user's index switches from exact (flat) to IVF."""

RETRAIN_GROWTH = 4
"""An IVF index is retrained once the user has this many times the vectors it was trained on."""


def _ivf_params(n: int) -> tuple[int, int]:
    """(nlist, nprobe) for ``n`` vectors: ~2*sqrt(n) lists, scanning about 2-3% of them."""
    nlist = int(min(8192, max(64, 2 * np.sqrt(n))))
    nprobe = int(min(64, max(16, nlist // 40)))
    return nlist, nprobe


class UserIndex:
    """The vectors of one user, keyed by record seq."""

    def __init__(self, dim: int, index: faiss.Index | None = None, trained_on: int = 0) -> None:
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.trained_on = trained_on
        self.dirty = 0  # writes since the last save

    @property
    def ntotal(self) -> int:
        """How many vectors the index holds."""
        return int(self.index.ntotal)

    @property
    def is_ivf(self) -> bool:
        """Whether the index is an IVF one (clustered) rather than flat."""
        return isinstance(self.index, faiss.IndexIVF)

    def add(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under their seqs; converts to IVF once the index is large enough."""
        if len(seqs) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index.add_with_ids(vectors, np.asarray(seqs, dtype=np.int64))
        self.dirty += len(seqs)
        n = self.ntotal
        if (not self.is_ivf and n >= IVF_MIN) or (self.is_ivf and n >= RETRAIN_GROWTH * self.trained_on):
            self._retrain()

    def remove(self, seqs: list[int]) -> None:
        """Remove the vectors of these seqs."""
        if seqs:
            self.index.remove_ids(np.asarray(seqs, dtype=np.int64))
            self.dirty += len(seqs)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, seqs)`` of the best ``k`` (fewer if the index is smaller)."""
        if self.ntotal == 0 or k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        scores, ids = self.index.search(q, min(k, self.ntotal))
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def vectors_of(self, seqs: Sequence[int]) -> dict[int, np.ndarray]:
        """The stored vector of each of these seqs that the index holds (the same values SQLite keeps)."""
        found, vecs = self.matrix_of(seqs)
        return dict(zip(found.tolist(), vecs, strict=True))

    def matrix_of(self, seqs: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(seqs held, their vectors as rows)``, in the order asked; seqs the index lacks are left out."""
        keys = np.asarray([int(s) for s in seqs], dtype=np.int64)
        if not len(keys):
            return keys, np.zeros((0, self.dim), np.float32)
        try:
            return keys, self.index.reconstruct_batch(keys)
        except RuntimeError:  # a seq not in the index (not expected): look them up one by one, skipping it
            held, rows = [], []
            for s in keys.tolist():
                with contextlib.suppress(RuntimeError):
                    rows.append(self.index.reconstruct(s))
                    held.append(s)
            return np.asarray(held, np.int64), np.asarray(rows, np.float32).reshape(len(rows), self.dim)

    def ids(self) -> np.ndarray:
        """All seqs in the index (for consistency checks)."""
        if not self.is_ivf:
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        invlists = self.index.invlists
        parts = []
        for i in range(self.index.nlist):
            size = invlists.list_size(i)
            if size:
                parts.append(faiss.rev_swig_ptr(invlists.get_ids(i), size).copy())
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All (seqs, vectors) in the index, used when converting to IVF."""
        seqs = self.ids()
        if not self.is_ivf:
            flat = faiss.downcast_index(self.index.index)
            raw = faiss.rev_swig_ptr(flat.get_xb(), self.ntotal * self.dim)
            vecs = raw.reshape(self.ntotal, self.dim).copy()
            return seqs, vecs
        invlists = self.index.invlists
        parts = []
        for i in range(self.index.nlist):
            size = invlists.list_size(i)
            if size:
                # Each vector's code is its raw float16 (or, in files saved before, float32) values.
                codes = faiss.rev_swig_ptr(invlists.get_codes(i), size * invlists.code_size)
                dtype = np.float16 if invlists.code_size == 2 * self.dim else np.float32
                parts.append(np.frombuffer(codes.tobytes(), dtype=dtype).reshape(size, self.dim).astype(np.float32))
        vecs = np.vstack(parts) if parts else np.zeros((0, self.dim), np.float32)
        return seqs, vecs

    def _retrain(self) -> None:
        seqs, vecs = self.vectors()
        self.index = build_ivf(self.dim, seqs, vecs)
        self.trained_on = len(seqs)
        self.dirty += 1


def build_ivf(dim: int, seqs: np.ndarray, vecs: np.ndarray) -> faiss.Index:
    """An IVF index over ``vecs`` trained on (a sample of) them."""
    n = len(seqs)
    nlist, nprobe = _ivf_params(n)
    quantizer = faiss.IndexFlatIP(dim)
    # Lists hold float16 codes of the raw vectors (no residuals): every stored vector is already
    # float16-rounded (see MemoryStore._encode), so this is lossless - the same scores and
    # neighbours as float32 lists - and a search reads half the bytes (1.5x faster at 1M).
    ivf = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                                        faiss.METRIC_INNER_PRODUCT, False)
    # A hashtable direct map makes remove_ids and reconstruct(seq) cheap.
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    sample = vecs
    if n > 40 * nlist:
        rng = np.random.default_rng(0)
        sample = vecs[rng.choice(n, 40 * nlist, replace=False)]
    ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
    ivf.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), np.asarray(seqs, dtype=np.int64))
    ivf.nprobe = nprobe
    return ivf


def build_index(dim: int, seqs: np.ndarray, vecs: np.ndarray) -> UserIndex:
    """A fresh index of the right kind for this many vectors."""
    if len(seqs) >= IVF_MIN:
        return UserIndex(dim, build_ivf(dim, seqs, vecs), trained_on=len(seqs))
    ui = UserIndex(dim)
    ui.add(seqs, vecs)
    return ui


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def save_index(ui: UserIndex, path: Path, watermark: dict) -> None:
    """Write the index then its watermark, each atomically (temp file + ``os.replace``).

    The watermark is written last: a crash between the two leaves an old watermark
    beside a newer index, which the load check treats as stale and repairs.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = faiss.serialize_index(ui.index).tobytes()
    _atomic_write(path, data)
    meta = dict(watermark, trained_on=ui.trained_on, ntotal=ui.ntotal, nbytes=len(data))
    _atomic_write(path.with_suffix(".json"), json.dumps(meta).encode())
    ui.dirty = 0


def load_index(path: Path, dim: int) -> tuple[UserIndex, dict] | None:
    """The saved index and its watermark, or None if missing, corrupt or inconsistent."""
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        data = path.read_bytes()
        if len(data) != meta.get("nbytes"):
            raise ValueError("index size does not match its watermark")
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        if index.d != dim or index.ntotal != meta.get("ntotal"):
            raise ValueError("index dimension or size does not match its watermark")
        # deserialize_index already returns the concrete class. (Downcasting again would make a
        # second, non-owning proxy and let the owner be freed under it: a segfault later.)
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = _ivf_params(index.ntotal)[1]
        elif not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"unexpected index type {type(index).__name__}")
    except FileNotFoundError:
        return None
    except Exception as exc:  # corrupt file: garbage bytes, truncated, wrong JSON...
        log.warning("memory index %s unreadable (%s); rebuilding from SQLite", path, exc)
        return None
    return UserIndex(dim, index, trained_on=int(meta.get("trained_on", 0))), meta


def remove_files(path: Path) -> None:
    """Delete a saved index and its JSON side file, if they exist."""
    for p in (path, path.with_suffix(".json")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
