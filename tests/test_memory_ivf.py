"""A large user's IVF index keeps float16 lists: lossless for the store's vectors, and old float32 files still load."""

from __future__ import annotations

import faiss
import numpy as np

from agent.memory import MemoryStore, vector_index
from agent.memory.vector_index import UserIndex, load_index, save_index


def _rounded(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Unit vectors rounded to float16, as MemoryStore stores and indexes them."""
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float16).astype(np.float32)


def test_ivf_vectors_and_scores_are_the_stored_ones(tmp_path, embedder, monkeypatch):
    monkeypatch.setattr(vector_index, "IVF_MIN", 600)
    store = MemoryStore(tmp_path / "mem", embedder=embedder)
    rng = np.random.default_rng(4)
    store._add_precomputed("big", [f"synthetic {i}" for i in range(900)], rng.standard_normal((900, embedder.dim)))
    ui = store._users["big"].index
    assert isinstance(ui.index, faiss.IndexIVFScalarQuantizer)
    seqs = store.records.seqs("big")
    db_seqs, db_vecs = store.records.vectors_for("big", seqs)
    held, vecs = ui.matrix_of(db_seqs.tolist())
    assert held.tolist() == db_seqs.tolist()
    assert np.array_equal(vecs, db_vecs), "the float16 lists give back exactly what SQLite holds"
    all_seqs, all_vecs = ui.vectors()
    order = np.argsort(all_seqs)
    assert np.array_equal(all_seqs[order], db_seqs) and np.array_equal(all_vecs[order], db_vecs)
    # Every list probed: the IVF search is an exact search, with the exact inner products.
    query = db_vecs[17] * 0.6 + db_vecs[400] * 0.4
    ui.index.nprobe = ui.index.nlist
    scores, found = ui.search(query, 20)
    exact = db_vecs @ query
    best = np.argsort(-exact)[:20]
    assert found.tolist() == db_seqs[best].tolist()
    assert np.allclose(scores, exact[best], atol=1e-5)
    assert store.search("big", "synthetic 3", k=1)
    store.close()


def test_an_old_float32_ivf_file_still_loads_and_searches(tmp_path):
    rng = np.random.default_rng(5)
    dim, n = 32, 3000
    vecs = _rounded(rng, n, dim)
    seqs = np.arange(1, n + 1, dtype=np.int64)
    old = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, 64, faiss.METRIC_INNER_PRODUCT)
    old.set_direct_map_type(faiss.DirectMap.Hashtable)
    old.train(vecs)
    old.add_with_ids(vecs, seqs)
    path = tmp_path / "u.faiss"
    save_index(UserIndex(dim, old, trained_on=n), path, {"count": n, "max_seq": n})
    loaded = load_index(path, dim)
    assert loaded is not None
    ui, _meta = loaded
    back_seqs, back = ui.vectors()
    order = np.argsort(back_seqs)
    assert np.array_equal(back[order], vecs)
    assert np.array_equal(ui.matrix_of([5, 2999])[1], vecs[[4, 2998]])
    assert ui.search(vecs[10], 1)[1].tolist() == [11]
    ui.add(np.arange(n + 1, 4 * n + 1, dtype=np.int64), _rounded(rng, 3 * n, dim))  # grows 4x: retrained
    assert isinstance(ui.index, faiss.IndexIVFScalarQuantizer) and ui.ntotal == 4 * n
    assert ui.search(vecs[10], 1)[1].tolist() == [11]
