"""Soak: sessions joining and leaving for a bounded time, mixed audio and text, and no growth.

Starts ``server.py`` (real VAD, Whisper and TTS; the LLM is a fake OpenAI server) and
keeps ``--clients`` visitors busy: each opens a session as one of a few users, takes one
to three actions (a typed turn, a spoken turn streamed at ``--speed`` x real time, a
barge-in, or leaving in the middle of a reply without a goodbye), then leaves, and comes
back as someone else. ``/healthz`` is sampled throughout.

Growth is measured between two quiet moments (no sessions, no memory writes pending):
after a warm-up that lets pools and caches fill, and at the end. Figures that would grow
with a leak: resident memory, threads, open files, asyncio tasks.

    .venv/bin/python -m bench.soak [--quick] [--json] [--duration_s 600] [--warmup_s 240] [--clients 6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import random
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import emit, fake_llm_server_args, machine, print_table
from tests.support.server_process import ServerProcess

USERS = 8
SENTENCES = ["What time is it in London right now?", "Tell me something nice about the sea.",
             "How far is the moon from the earth?", "Remind me what I said about my garden."]
LONG_REPLY = " ".join(["This is a long answer that goes on so that it can be interrupted."] * 10)


@dataclass
class SoakPlan:
    """How long and how hard to push."""

    duration_s: float = 600.0
    """Length of the measured phase (after the warm-up)."""
    warmup_s: float = 240.0
    """Load before the baseline sample, so pools, caches and lazy imports are already full.
    Under the mixed load they fill in about 4 minutes here (+330 MB measured after 1 minute)."""
    clients: int = 6
    """Visitors at once; each joins, acts and leaves in a loop."""
    audio_share: float = 0.3
    """Share of actions that are spoken turns (the rest: typed turns, barge-ins, abrupt exits)."""
    speed: float = 2.0
    """Audio streaming speed (1 = real time)."""
    seed: int = 7
    """Seed of every visitor's choices (visitor i uses seed + i)."""
    actions: tuple[str, ...] = ("text", "text", "barge_in", "leave")
    """What a visitor picks from (uniformly) when it does not speak; repeat a name to weight it.
    Narrowing it (and ``audio_share``) bisects a growth to one kind of action."""
    audio_output: float = 0.5
    """Share of sessions that ask for spoken replies (the rest are text only, no TTS)."""


@dataclass
class SoakBounds:
    """The growth allowed between the quiet sample after the warm-up and the one at the end."""

    rss_mb: float = 96.0
    """Resident memory: allocator fragmentation and the memory store's growing indexes take some."""
    threads: int = 8
    """Thread pools start threads lazily up to their maximum; none should be left per session."""
    open_fds: int = 8
    """Sockets of sessions still closing count for a moment; a leak is one per session."""
    tasks: int = 2
    """asyncio tasks: none may be left behind by a finished session."""


@dataclass
class SoakCounts:
    """What the visitors did and saw."""

    sessions: int = 0
    actions: dict[str, int] = field(default_factory=lambda: {"text": 0, "audio": 0, "barge_in": 0, "leave": 0})
    error_events: int = 0
    failures: list[str] = field(default_factory=list)
    """Expected events that never came (with the action): must stay empty."""


def health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "healthz", timeout=60) as resp:  # slow under a profiler
        return json.loads(resp.read())


def sample(url: str, started: float) -> dict[str, Any]:
    h = health(url)
    return {"t_s": round(time.monotonic() - started, 1), "sessions": h["sessions"],
            "pending_writes": h["memory_writes"]["pending"], **h["process"]}


async def quiet_sample(url: str, started: float, timeout_s: float = 120.0) -> dict[str, Any]:
    """Wait until no session is open and no memory write is pending, then sample."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = await asyncio.to_thread(sample, url, started)
        if (now["sessions"] == 0 and now["pending_writes"] == 0) or time.monotonic() > deadline:
            await asyncio.sleep(1.0)  # closing sockets and finished tasks are collected
            return await asyncio.to_thread(sample, url, started)
        await asyncio.sleep(0.5)


async def _act(client: Any, action: str, rng: random.Random, audio: np.ndarray, speed: float, n: int) -> None:
    from tests.support.voice_client import silence

    done = len(client.events("response.done"))
    if action == "text":
        text = f"{rng.choice(SENTENCES)} ({n})"
        await client.say_text(text)
        reply = await client.wait_for("response.done", done + 1, timeout=60)
        if reply["text"] != f"You said: {text}":
            raise AssertionError(f"typed turn answered {reply['text']!r}")
    elif action == "audio":
        await client.stream_pcm(np.concatenate([silence(0.3), audio, silence(1.5)]), speed=speed)
        await client.wait_for("response.done", done + 1, timeout=90)
    else:  # barge_in or leave: both interrupt a long reply, by message or by vanishing
        await client.say_text("tell me a long story")
        await client.wait_for("response.text.delta", len(client.events("response.text.delta")) + 1, timeout=60)
        if action == "leave":
            client.ws.transport.abort()  # no close handshake, no session.end: a dropped connection
            return
        await client.send_json({"type": "interrupt"})
        await client.wait_for("response.done", done + 1, timeout=60)


async def visitor(url: str, index: int, plan: SoakPlan, audio: np.ndarray, stop_at: float, counts: SoakCounts) -> None:
    """Join, act, leave; until ``stop_at``. ``url`` is the server's HTTP root."""
    from tests.support.voice_client import VoiceClient

    rng = random.Random(plan.seed + index)
    ws_url = url.replace("http://", "ws://", 1) + "ws"
    n = 0
    while time.monotonic() < stop_at:
        try:
            client = await VoiceClient.open(ws_url, f"soak-{rng.randrange(USERS)}",
                                           audio_output=rng.random() < plan.audio_output)
        except Exception as exc:  # refused or dropped at the door: count it, the run goes on
            counts.failures.append(f"visitor {index} could not open a session: {type(exc).__name__}: {exc}")
            await asyncio.sleep(1.0)
            continue
        counts.sessions += 1
        try:
            for _ in range(rng.randint(1, 3)):
                r = rng.random()
                action = "audio" if r < plan.audio_share else rng.choice(plan.actions)
                n += 1
                try:
                    await _act(client, action, rng, audio, plan.speed, n)
                except (TimeoutError, AssertionError) as exc:
                    counts.failures.append(f"visitor {index} {action}: {exc}")
                    break
                counts.actions[action] += 1
                if action == "leave":
                    break
            else:
                await client.send_json({"type": "session.end"})
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.ws.wait_closed(), 30)
        except Exception as exc:  # a closed socket mid-action is a failure to count, not a crash
            counts.failures.append(f"visitor {index}: {type(exc).__name__}: {exc}")
        finally:
            counts.error_events += len(client.events("error"))
            await client.close()


def make_audio() -> np.ndarray:
    """A spoken question, made by espeak-ng, at 16 kHz."""
    from speech.audio import resample_pcm16
    from speech.engines.tts_espeak import EspeakTTS

    tts = EspeakTTS()
    pcm = np.concatenate(list(tts.synthesize("Please tell me what the weather will be like tomorrow.", "en")))
    return resample_pcm16(pcm, tts.sample_rate, 16000)


async def soak(url: str, plan: SoakPlan) -> dict[str, Any]:
    """Run the warm-up and the measured phase against a running server at ``url``."""
    audio = make_audio()
    started = time.monotonic()
    samples: list[dict[str, Any]] = []
    counts = SoakCounts()

    async def load(seconds: float) -> None:
        stop_at = time.monotonic() + seconds
        visitors = [asyncio.create_task(visitor(url, i, plan, audio, stop_at, counts)) for i in range(plan.clients)]
        while not all(v.done() for v in visitors):
            samples.append(await asyncio.to_thread(sample, url, started))
            await asyncio.wait(visitors, timeout=max(2.0, plan.duration_s / 60))
        await asyncio.gather(*visitors)

    await load(plan.warmup_s)
    baseline = await quiet_sample(url, started)
    await load(plan.duration_s)
    final = await quiet_sample(url, started)
    growth = {k: round(final[k] - baseline[k], 1) for k in ("rss_mb", "threads", "open_fds", "tasks")}
    return {"plan": asdict(plan), "counts": asdict(counts), "baseline": baseline, "final": final,
            "growth": growth, "peak_rss_mb": max(s["rss_mb"] for s in samples),
            "peak_sessions": max(s["sessions"] for s in samples), "samples": samples}


def within(result: dict[str, Any], bounds: SoakBounds) -> list[str]:
    """The bounds the run broke (empty: none)."""
    return [f"{k} grew by {result['growth'][k]} (bound {v})" for k, v in asdict(bounds).items()
            if result["growth"][k] > v]


async def run_against_new_server(plan: SoakPlan, extra_args: tuple[str, ...] = (),
                                 prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Start a fake LLM and ``server.py`` in a temporary folder, soak it, stop both."""
    from tests.support.fakes.openai_server import FakeOpenAI, Reply, echo

    def reply(request: dict[str, Any]) -> Reply:
        if "long story" in request["messages"][-1]["content"]:
            return Reply(text=LONG_REPLY, token_interval_s=1 / 50)
        return echo(request)

    with FakeOpenAI(reply) as fake, tempfile.TemporaryDirectory() as tmp:
        args = [*fake_llm_server_args(fake.base_url, str(Path(tmp) / "mem")), "--max_turns_per_minute", "100000",
                "--max_sessions", "64", "--log_level", "WARNING", *extra_args]
        server = ServerProcess(args, env={"LLM_API_KEY": "soak", "HF_HUB_OFFLINE": "1"}, prefix=prefix,
                               timeout_s=900.0 if prefix else 300.0).start()
        try:
            result = await soak(f"http://127.0.0.1:{server.port}/", plan)
            result["server_exit"] = server.proc.poll() if server.proc else None  # None: still running
        finally:
            server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 s warm-up and 40 s measured, 4 clients.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--duration_s", type=float, default=SoakPlan.duration_s)
    parser.add_argument("--warmup_s", type=float, default=SoakPlan.warmup_s)
    parser.add_argument("--clients", type=int, default=SoakPlan.clients)
    parser.add_argument("--speed", type=float, default=SoakPlan.speed)
    parser.add_argument("--audio_share", type=float, default=SoakPlan.audio_share,
                        help="Share of actions that are spoken turns.")
    parser.add_argument("--actions", default=",".join(SoakPlan.actions),
                        help="Comma-separated choices for the other actions (text, barge_in, leave).")
    parser.add_argument("--audio_output", type=float, default=SoakPlan.audio_output,
                        help="Share of sessions with spoken replies.")
    parser.add_argument("--server_prefix", default="",
                        help='Run the server under a profiler, e.g. "heaptrack -o /tmp/parley" (split on spaces).')
    parser.add_argument("--server_args", default="",
                        help='Extra server.py flags, e.g. "--malloc_arena_max 0" (split on spaces).')
    args = parser.parse_args()
    actions = tuple(a for a in args.actions.split(",") if a)
    if unknown := set(actions) - {"text", "barge_in", "leave"}:
        parser.error(f"unknown actions: {sorted(unknown)}")
    plan = SoakPlan(duration_s=args.duration_s, warmup_s=args.warmup_s, clients=args.clients, speed=args.speed,
                    audio_share=args.audio_share, actions=actions, audio_output=args.audio_output)
    if args.quick:
        plan.duration_s, plan.warmup_s, plan.clients = 40.0, 20.0, 4
    with contextlib.redirect_stderr(io.StringIO()) if args.json else contextlib.nullcontext():
        result = asyncio.run(run_against_new_server(plan, tuple(args.server_args.split()),
                                                    prefix=tuple(args.server_prefix.split())))
    result["machine"] = machine()
    result["server_args"] = args.server_args
    result["broken_bounds"] = within(result, SoakBounds())
    if not args.json:
        c = result["counts"]
        print(f"{plan.duration_s:.0f} s after {plan.warmup_s:.0f} s warm-up, {plan.clients} clients: "
              f"{c['sessions']} sessions, actions {c['actions']}, {c['error_events']} error events, "
              f"{len(c['failures'])} failures, peak {result['peak_sessions']} sessions")
        step = max(1, len(result["samples"]) // 12)
        print_table("Samples (/healthz)", [*result["samples"][::step], result["final"]])
        print_table("Growth from the quiet sample after warm-up to the quiet sample at the end",
                    [{**result["growth"], "bounds": asdict(SoakBounds()), "broken": result["broken_bounds"] or "none"}])
        for failure in c["failures"][:10]:
            print("failure:", failure)
    emit(result, args.json)


if __name__ == "__main__":
    main()
