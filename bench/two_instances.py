"""Two Parley instances sharing memory on PostgreSQL: recall latency on each, and cross-instance visibility.

Starts a private PostgreSQL (``tests/support/postgres.py``: Debian's postgresql package, a temp
cluster on a free port), seeds users with memories (random unit vectors through the
pre-computed-vector path, synthetic texts for BM25, as in ``memory_scale.py``), and
starts two ``server.py`` processes with ``--memory_db`` and a fake LLM that answers
at once. Then, all at the same time:

* sessions: WebSocket sessions spread over both servers (each user alternates
  between A and B from one session to the next), typing turns that are written
  to the shared memory;
* recall: ``GET /api/memory?q=...`` (the hybrid FAISS + BM25 search, query embedding
  included) in a loop on each instance; a user's first search on an instance
  (index cache loaded from PostgreSQL) is reported apart as "cold";
* visibility probes: a turn with a unique word is typed on one instance; the
  commit is timed by polling PostgreSQL directly, and the *other* instance's
  recall is polled for the word. Delay = commit -> the other instance's first
  recall that returns it (that recall's own latency included). A recall that
  started after the commit and missed the word would be a stale read: counted.

    python -m bench.two_instances [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine, print_table, summary_ms
from bench.memory_scale import synthetic

ENV = {"LLM_API_KEY": "bench", "HF_HUB_OFFLINE": "1"}


class _StubEmbedder:
    """Name and size of the default embedder, for seeding pre-computed vectors without loading it."""

    name, dim = "all-MiniLM-L6-v2", 384

    def encode(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - never called when seeding
        raise RuntimeError("the seeding path does not embed")


def search(base: str, user: str, q: str, k: int = 10) -> list[str]:
    url = f"{base}api/memory?{urllib.parse.urlencode({'user_id': user, 'q': q, 'k': k})}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return [m["text"] for m in json.loads(resp.read())["items"]]


def seed(dsn: str, users: list[str], per_user: int) -> None:
    from agent.memory import MemoryStore
    from agent.memory.records_pg import PostgresRecordStore

    rng, nrng = random.Random(7), np.random.default_rng(7)
    with MemoryStore(None, embedder=_StubEmbedder(), records=PostgresRecordStore(dsn)) as store:  # type: ignore[arg-type]
        for user in users:
            for start in range(0, per_user, 5000):
                n = min(5000, per_user - start)
                store._add_precomputed(user, synthetic(n, rng), nrng.standard_normal((n, 384)).astype(np.float32))


def recall_loop(name: str, base: str, users: list[str], stop: threading.Event, out: dict[str, list[float]]) -> None:
    """Searches on one instance until ``stop``; first search per user goes to ``cold``."""
    rng = random.Random(name)
    seen: set[str] = set()
    while not stop.is_set():
        user = rng.choice(users)
        # A number makes every query new: the embedder's query cache must not flatter the figures.
        q = f"{rng.choice(['coffee', 'trip', 'doctor', 'music', 'dinner'])} {rng.choice(['japan', 'work'])}"
        q += f" {rng.random()}"
        t = time.perf_counter()
        search(base, user, q)
        out["cold" if user not in seen else "warm"].append((time.perf_counter() - t) * 1000)
        seen.add(user)


def wait_recalls(lat: dict[str, dict[str, list[float]]], n: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(len(x["warm"]) for x in lat.values()) < n and time.monotonic() < deadline:
        time.sleep(0.2)


async def sessions(urls: list[str], users: list[str], turns: int, stop: asyncio.Event) -> int:
    """Sessions in a loop, user ``i``'s n-th session on instance ``(i + n) % 2``; returns turns done."""
    from tests.support.voice_client import VoiceClient

    done = 0

    async def one_user(i: int, user: str) -> None:
        nonlocal done
        n = 0
        while not stop.is_set():
            client = await VoiceClient.open(urls[(i + n) % 2], user, audio_output=False)
            for t in range(turns):
                await client.say_text(f"session {n} turn {t}: we talked about music and dinner plans")
                await client.wait_for("response.done", t + 1, timeout=60)
                done += 1
            await client.close()
            n += 1

    await asyncio.gather(*(one_user(i, u) for i, u in enumerate(users)))
    return done


def probe(dsn: str, writer_ws: str, reader: str, user: str, word: str) -> dict[str, float]:
    """Type ``word`` on the writer; time its commit (PostgreSQL) and its first recall on the reader."""
    import psycopg

    from tests.support.voice_client import VoiceClient

    async def say() -> float:
        client = await VoiceClient.open(writer_ws, user, audio_output=False)
        await client.say_text(f"remember the code word {word} please")
        await client.wait_for("response.done", timeout=60)
        await client.close()
        return time.perf_counter()

    commit: list[float] = []
    stale = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        said = threading.Thread(target=lambda: commit.append(-asyncio.run(say())))
        said.start()
        while True:  # a tight poll on the database: the commit time to about a millisecond
            if conn.execute("SELECT 1 FROM memories WHERE user_id=%s AND text LIKE %s",
                            (user, f"%{word}%")).fetchone():
                t_commit = time.perf_counter()
                break
            time.sleep(0.001)
    reply_done = -commit[0] if commit else t_commit
    while True:
        t0 = time.perf_counter()
        hit = any(word in text for text in search(reader, user, word))
        if hit:
            t_seen = time.perf_counter()
            break
        stale += t0 > t_commit  # started after the commit and still missed it
    said.join()
    return {"delay_ms": (t_seen - t_commit) * 1000, "stale": stale,
            "reply_to_commit_ms": (t_commit - reply_done) * 1000}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.fakes.openai_server import FakeOpenAI
    from tests.support.postgres import PrivatePostgres
    from tests.support.server_process import ServerProcess

    started = time.perf_counter()
    seeded = [f"seed{i}" for i in range(args.users)]
    talkers = [f"talk{i}" for i in range(args.sessions)]
    with PrivatePostgres() as pg, FakeOpenAI() as fake, tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        seed(pg.dsn, seeded, args.memories)
        seed_s = time.perf_counter() - t
        flags = ["--lm_model_url", fake.base_url, "--lm_model_name", "fake", "--lm_tool_routing", "off",
                 "--extract_facts", "off", "--max_turns_per_minute", "100000", "--max_sessions", "64",
                 "--tts", "espeak", "--log_level", "WARNING", "--memory_dir", str(Path(tmp) / "unused"),
                 "--memory_db", pg.dsn]
        servers = [ServerProcess(flags, env=ENV), ServerProcess(flags, env=ENV)]
        t = time.perf_counter()
        starters = [threading.Thread(target=s.__enter__) for s in servers]
        for s in starters:
            s.start()
        for s in starters:
            s.join()
        start_s = time.perf_counter() - t
        try:
            a, b = (s.url for s in servers)
            if not (a and b):
                raise RuntimeError("a server did not start:\n" + "\n".join(s.log() for s in servers))
            ws = [u.replace("http://", "ws://") + "ws" for u in (a, b)]
            lat = {name: {"cold": [], "warm": []} for name in ("A", "B")}
            stop_recall, stop_sessions = threading.Event(), asyncio.Event()
            loops = [threading.Thread(target=recall_loop, args=(n, u, seeded, stop_recall, lat[n]))
                     for n, u in (("A", a), ("B", b))]
            for th in loops:
                th.start()
            talking = asyncio.create_task(sessions(ws, talkers, args.turns, stop_sessions))
            probes = []
            for i in range(args.probes):  # alternate directions: A -> B, B -> A
                w, r = (0, b) if i % 2 == 0 else (1, a)
                word = f"zq{i}x{random.Random(i).randrange(10**6)}"
                probes.append(await asyncio.to_thread(probe, pg.dsn, ws[w], r, f"probe{i % 3}", word))
            await asyncio.to_thread(wait_recalls, lat, args.min_recalls)
            stop_recall.set()
            stop_sessions.set()
            turns_done = await talking
            for th in loops:
                th.join()
        finally:
            for s in servers:
                s.__exit__()
    delays = [p["delay_ms"] for p in probes]
    recall_rows = [{"instance": n, "searches": len(v["warm"]), "p50_ms": summary_ms(v["warm"])["p50"],
                    "p95_ms": summary_ms(v["warm"])["p95"],
                    "cold_p50_ms": summary_ms(v["cold"])["p50"] if v["cold"] else None}
                   for n, v in lat.items()]
    vis = {"probes": len(probes), "p50_ms": summary_ms(delays)["p50"], "p95_ms": summary_ms(delays)["p95"],
           "max_ms": round(max(delays), 2), "stale_reads": int(sum(p["stale"] for p in probes)),
           "reply_to_commit_p50_ms": summary_ms([p["reply_to_commit_ms"] for p in probes])["p50"]}
    result = {"machine": machine(), "users": args.users, "memories_per_user": args.memories,
              "sessions": args.sessions, "turns_during_run": turns_done, "seed_s": round(seed_s, 1),
              "servers_start_s": round(start_s, 1), "recall": recall_rows, "visibility": vis,
              "total_s": round(time.perf_counter() - started, 1),
              "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}  # other work on the machine shows here
    if not args.json:
        print(f"{args.users} users x {args.memories} memories seeded in {seed_s:.1f} s; two servers ready in "
              f"{start_s:.1f} s; {args.sessions} sessions alternating between them, {turns_done} turns")
        print_table("Recall on each instance under load (HTTP search, query embedding included)", recall_rows)
        print_table("Cross-instance visibility (commit on one -> first recall returning it on the other)", [vis])
        print(f"total {result['total_s']} s; load average at the end {result['load_avg_1m_at_end']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="A small run (a minute or so on two cores).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--users", type=int, default=20, help="Seeded users searched on both instances.")
    parser.add_argument("--memories", type=int, default=5000, help="Seeded memories per user.")
    parser.add_argument("--sessions", type=int, default=6, help="Concurrent talking sessions.")
    parser.add_argument("--turns", type=int, default=3, help="Turns per session before it moves instance.")
    parser.add_argument("--probes", type=int, default=30, help="Visibility probes.")
    parser.add_argument("--min_recalls", type=int, default=300, help="Warm searches (both instances) at least.")
    args = parser.parse_args()
    if args.quick:
        args.users, args.memories, args.sessions, args.probes, args.min_recalls = 4, 500, 2, 6, 40
    with contextlib.redirect_stderr(io.StringIO()) if args.json else contextlib.nullcontext():
        result = asyncio.run(run(args))
    emit(result, args.json)


if __name__ == "__main__":
    main()
