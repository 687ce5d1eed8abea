"""Writing memories into one user's records and indexes: plain inserts and the fact policy.

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
