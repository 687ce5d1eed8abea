"""What the Prometheus metrics cost: per turn on the session's path, and per scrape.

Per turn: one realistic turn's outgoing messages (transcript, route, sources, 80 text
deltas, audio start, 20 ms audio frames for 6 s of speech, audio end, response.done with
its metrics) through :class:`~speech.transport.metrics.MeteredConnection` to a socket that drops
them, against the same messages sent to that socket directly. Per scrape: the time of
``/metrics``'s body (``generate_latest``, run on the event loop) once every stage, route and
transport label has been used, i.e. the largest the exposition gets.

    .venv/bin/python -m bench.metrics_overhead [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from types import SimpleNamespace

import numpy as np

from bench.common import emit, load_average, machine, print_table, summary_ms
from speech.transport.metrics import MeteredConnection, ServerMetrics

ROUTES = ("direct", "web_search", "memory_recall", "clock", "none")


class DropSocket:
    """Accepts messages and drops them: only the cost of the path in front of it is left."""

    async def send(self, message: str | bytes) -> None:
        return None


def turn_messages(turn_id: str, route: str) -> list[str | bytes]:
    """A spoken turn's outgoing messages, as speech/voice/reply.py sends them."""
    def ev(kind: str, **fields: object) -> str:
        return json.dumps({"type": kind, **fields}, ensure_ascii=False)

    frame = np.zeros(441, dtype="<i2").tobytes()  # 20 ms at 22,050 Hz
    messages: list[str | bytes] = [ev("vad.end"), ev("transcript.final", text="what is the weather", turn_id=turn_id),
                                   ev("route", turn_id=turn_id, route=route, reason="router"),
                                   ev("sources", turn_id=turn_id, items=[{"title": "t", "url": "u", "snippet": "s"}])]
    messages += [ev("response.text.delta", turn_id=turn_id, delta=" word") for _ in range(80)]
    messages.append(ev("response.audio.start", turn_id=turn_id, sample_rate=22050))
    messages += [frame] * 300
    messages.append(ev("response.audio.end", turn_id=turn_id))
    messages.append(ev("response.done", turn_id=turn_id, text="an answer", interrupted=False, metrics={
        "vad_end": 180.0, "asr": 420.0, "memory": 12.0, "route": 9.0, "retrieval": 35.0, "llm_ttft": 310.0,
        "tts_first_audio": 95.0, "e2e": 1100.0}))
    return messages


async def time_turns(metrics: ServerMetrics, turns: int, metered: bool) -> list[float]:
    """Milliseconds to send each turn's messages, through the metrics or not."""
    sock = DropSocket()
    out: list[float] = []
    for i in range(turns):
        route = ROUTES[i % len(ROUTES)]
        messages = turn_messages(f"t{i}", route)
        target = MeteredConnection(sock, metrics.observer("ws" if i % 2 else "cleans2s", "s", "u")) if metered else sock
        started = time.perf_counter()
        for message in messages:
            await target.send(message)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer turns and scrapes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    turns, scrapes = (300, 100) if args.quick else (2000, 500)
    # What the scrape reads from the server: an idle memory writer's counters, no sessions.
    writer = SimpleNamespace(pending=0, saved=0, failed=0)
    server = SimpleNamespace(agent=SimpleNamespace(writer=writer), sessions=set(), draining=False)
    metrics = ServerMetrics(server)  # type: ignore[arg-type]
    load_before = load_average()
    plain, metered = [], []
    for _ in range(2):  # interleaved A/B, so both see the same load
        plain += asyncio.run(time_turns(metrics, turns // 2, metered=False))
        metered += asyncio.run(time_turns(metrics, turns // 2, metered=True))
    scrape_ms, size = [], 0
    for _ in range(scrapes):
        started = time.perf_counter()
        body = metrics.exposition()
        scrape_ms.append((time.perf_counter() - started) * 1000)
        size = len(body)
    result = {
        "machine": machine(), "load_average_before": load_before, "load_average_after": load_average(),
        "turn_plain_ms": summary_ms(plain), "turn_metered_ms": summary_ms(metered),
        "per_turn_overhead_ms_p50": round(float(np.median(metered) - np.median(plain)), 3),
        "scrape_ms": summary_ms(scrape_ms), "scrape_bytes": size,
    }
    if not args.json:
        print_table("Per turn (386 messages: 86 events + 300 audio frames)",
                    [{"path": "direct", **result["turn_plain_ms"]},
                     {"path": "through the metrics", **result["turn_metered_ms"]}])
        print_table("Per scrape (every stage x route x transport in use)",
                    [{**result["scrape_ms"], "bytes": size}])
        print(f"\nload average before {load_before}, after {result['load_average_after']}")
    emit(result, args.json)


if __name__ == "__main__":
    main()
