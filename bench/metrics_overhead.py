"""What the Prometheus metrics cost: per turn on the session's path, and per scrape.

Per turn: one realistic turn's outgoing messages (transcript, route, sources, 80 text
deltas, audio start, 20 ms audio frames for 6 s of speech, audio end, response.done with
its metrics) through :class:`~speech.transport.metrics.MeteredLink` to a link that drops
them, against the same messages sent to that link directly. Per scrape: the time of
``/metrics``'s body (``generate_latest``, run on the event loop) once every stage, route and
transport label has been used, i.e. the largest the exposition gets.

    .venv/bin/python -m bench.metrics_overhead [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from types import SimpleNamespace

import numpy as np

from bench.common import emit, load_average, machine, print_table, summary_ms
from speech.protocol import (
    ResponseAudioEnd,
    ResponseAudioStart,
    ResponseDone,
    ResponseTextDelta,
    Route,
    ServerEvent,
    Sources,
    TranscriptFinal,
    VadEnd,
)
from speech.transport.metrics import MeteredLink, ServerMetrics
from speech.voice.link import ClientInput, ClientLink

ROUTES = ("direct", "web_search", "memory_recall", "clock", "none")


class DropLink(ClientLink):
    """Accepts events and audio and drops them: only the cost of the path in front of it is left."""

    async def receive(self) -> ClientInput:
        raise NotImplementedError("nothing is received in this benchmark")

    async def send_event(self, event: ServerEvent) -> None:
        return None

    async def send_audio(self, pcm: bytes) -> None:
        return None

    async def close(self, code: int, reason: str) -> None:
        return None


def turn_messages(turn_id: str, route: str) -> list[ServerEvent | bytes]:
    """A spoken turn's outgoing events and audio, as speech/voice/reply.py sends them."""
    frame = np.zeros(441, dtype="<i2").tobytes()  # 20 ms at 22,050 Hz
    messages: list[ServerEvent | bytes] = [
        VadEnd(), TranscriptFinal("what is the weather", turn_id), Route(turn_id, route, "router"),
        Sources(turn_id, [{"title": "t", "url": "u", "snippet": "s"}])]
    messages += [ResponseTextDelta(turn_id, " word") for _ in range(80)]
    messages.append(ResponseAudioStart(turn_id, 22050))
    messages += [frame] * 300
    messages.append(ResponseAudioEnd(turn_id))
    messages.append(ResponseDone(turn_id, "an answer", interrupted=False, metrics={
        "vad_end": 180.0, "asr": 420.0, "memory": 12.0, "route": 9.0, "retrieval": 35.0, "llm_ttft": 310.0,
        "tts_first_audio": 95.0, "e2e": 1100.0}))
    return messages


async def time_turns(metrics: ServerMetrics, turns: int, metered: bool) -> list[float]:
    """Milliseconds to send each turn's messages, through the metrics or not."""
    drop = DropLink()
    out: list[float] = []
    for i in range(turns):
        route = ROUTES[i % len(ROUTES)]
        messages = turn_messages(f"t{i}", route)
        target: ClientLink = (MeteredLink(drop, metrics.observer("ws" if i % 2 else "cleans2s", "s", "u"))
                              if metered else drop)
        started = time.perf_counter()
        for message in messages:
            if isinstance(message, bytes):
                await target.send_audio(message)
            else:
                await target.send_event(message)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer turns and scrapes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    turns, scrapes = (300, 100) if args.quick else (2000, 500)
    # What the scrape reads from the server: an idle memory writer's counters, no sessions.
    writes = {"pending": 0, "saved": 0, "failed": 0}
    server = SimpleNamespace(agent=SimpleNamespace(memory_writes=lambda: writes), sessions=set(), draining=False)
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
