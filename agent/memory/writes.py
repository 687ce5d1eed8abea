"""Writing memories into one user's records and indexes: plain inserts, the fact policy and deletes.

Callers hold the user's lock (:class:`~agent.memory.user_cache.UserState.lock`) and have
embedded the texts already (outside any lock: that is the slow part).
"""

from __future__ import annotations

import uuid

import numpy as np

from agent.memory import facts
from agent.memory.items import Item, MemoryNotFoundError
from agent.memory.lexical import tokenize
from agent.memory.records import NewRow, RecordStore
from agent.memory.user_cache import UserState


def as_stored(vecs: np.ndarray) -> np.ndarray:
    """Vectors in float32, rounded as the rows store them (float16): an index rebuilt from the rows is identical."""
    return np.asarray(vecs, dtype=np.float32).astype(np.float16).astype(np.float32)


def write(records: RecordStore, model: str, user_id: str, st: UserState, items: list[Item], vecs: np.ndarray,
          fact_policy: bool = True) -> list[str]:
    """Store ``items`` (embedded as ``vecs``); returns their ids in order (for a duplicate fact: the existing id).

    Turns go in batched inserts; with ``fact_policy`` each fact goes alone under :func:`add_fact`,
    after the items before it are inserted (it may de-duplicate against them).
    """
    ids: list[str | None] = [None] * len(items)
    pending: list[int] = []
    for i, it in enumerate(items):
        if it.kind == "fact" and fact_policy:
            insert(records, model, user_id, st, items, vecs, pending, ids)
            pending = []
            ids[i] = add_fact(records, model, user_id, st, it, vecs[i])
        else:
            pending.append(i)
    insert(records, model, user_id, st, items, vecs, pending, ids)
    return [i for i in ids if i is not None]


def insert(records: RecordStore, model: str, user_id: str, st: UserState, items: list[Item],
           vecs: np.ndarray, which: list[int], ids: list[str | None]) -> None:
    """Insert ``items[i]`` for every ``i`` in ``which`` in one transaction, then index them; fills ``ids``."""
    if not which:
        return
    rows = []
    for i in which:
        it = items[i]
        rows.append(
            NewRow(
                id=uuid.uuid4().hex,
                user_id=user_id,
                text=it.text,
                kind=it.kind,
                created_at=it.created_at,
                session_id=it.session_id,
                metadata=it.metadata,
                tokens=" ".join(tokenize(it.text)),
                content_hash=facts.content_hash(it.text),
                embedding=vecs[i],
                embedding_model=model,
            )
        )
    seqs = records.insert(rows)  # durable from here on
    st.index.add(np.asarray(seqs, dtype=np.int64), vecs[which])
    if st.columns.active:
        st.columns.add(seqs, [r.kind for r in rows], [float(r.created_at) for r in rows])
    for row, seq, i in zip(rows, seqs, which, strict=True):
        st.lexical.add(seq, row.tokens.split())
        ids[i] = row.id


def add_fact(records: RecordStore, model: str, user_id: str, st: UserState, it: Item, vec: np.ndarray) -> str:
    """Store one fact under the policy of :mod:`agent.memory.facts`; returns its id (or the duplicate's)."""
    if it.supersedes is not None and records.get(user_id, it.supersedes) is None:
        raise MemoryNotFoundError(f"no memory {it.supersedes!r} for user {user_id!r}")
    same = records.find_by_hash(user_id, "fact", facts.content_hash(it.text))
    if same is not None and same.id != it.supersedes:
        return same.id
    decision = facts.FactDecision("new")
    if it.supersedes is None:
        scores, seqs = st.index.search(vec, 20)
        by_seq = {r.seq: r for r in records.get_by_seqs(user_id, seqs.tolist())}
        candidates = [
            (by_seq[int(s)].id, by_seq[int(s)].text, float(c))
            for c, s in zip(scores, seqs, strict=True)
            if int(s) in by_seq and by_seq[int(s)].kind == "fact" and by_seq[int(s)].superseded_by is None
        ]
        decision = facts.decide(it.text, candidates, auto_supersede=it.auto_supersede)
        if decision.action == "duplicate":
            assert decision.other_id is not None
            return decision.other_id
    ids: list[str | None] = [None]
    insert(records, model, user_id, st, [it], vec[None, :], [0], ids)
    new_id = ids[0]
    assert new_id is not None
    old = it.supersedes or (decision.other_id if decision.action == "supersede" else None)
    if old is not None:
        records.mark_superseded(user_id, old, new_id)
        old_rec = records.get(user_id, old)
        if st.columns.active and old_rec is not None:
            st.columns.set_superseded([old_rec.seq], True)
    return new_id


def delete(records: RecordStore, user_id: str, st: UserState, memory_id: str) -> bool:
    """Delete one memory from the records and the user's indexes; False if the user has no such memory.

    The facts it had superseded become current again.
    """
    seq = records.delete(user_id, memory_id)
    if seq is None:
        return False
    current_again = records.seqs_superseded_by(user_id, memory_id)
    records.unmark_superseded_by(user_id, memory_id)
    st.index.remove([seq])
    if st.columns.active:
        st.columns.remove([seq])
        st.columns.set_superseded(current_again, False)
    st.lexical.remove(seq)
    return True
