"""How many simultaneous sessions one server sustains: voice (real-time audio in) and text-only.

The server runs as ``python server.py`` in a child process with its embedded engines
(Silero VAD, Whisper base, Piper) and a fake OpenAI LLM (TTFT and token rate set by
flags) that, like the clients, lives in this process. So the server's two cores are
shared with the clients and the fake, as on a one-box deployment. Voice levels run
first, then text levels, on the same server.

    .venv/bin/python -m bench.concurrency [--quick] [--json] [--mode voice text] [--profile DIR]

Voice: N clients each stream English speech made by the embedded TTS at real time
(lead-in silence, 2-3 s of speech, 2.5 s of silence), wait for the reply, and go
again; their starts are spread over one turn so that users do not all stop speaking
at the same instant. ``e2e`` = first reply audio byte - end of the last word sent (as in
bench.voice_latency). N grows 1, 2, 3, ... until the e2e median exceeds 1.5x the
single-session median; the largest N within that bound is "sustained".

Text: N clients with ``audio_output: false`` type a question, wait for the answer,
pause 0.5-1.5 s and ask again. ``overhead`` = first ``response.text.delta`` - text
sent - the fake TTFT. N doubles 1, 2, 4, ...; the largest N whose p95 overhead (and every
smaller N's) is under 100 ms is "sustained". Levels go on until the p95 passes 1 s.

``--profile DIR`` records the server with py-spy (raw collapsed stacks, one file per
level) while the clients run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench.common import (
    emit,
    fake_llm,
    fake_llm_server_args,
    load_average,
    machine,
    print_table,
    summary_ms,
)
from bench.voice_latency import REPLY, one_turn
from bench.voice_utterances import SHORT, Utterance
from tests.support.paths import ROOT
from tests.support.server_process import ServerProcess
from tests.support.speech import loud_frames, trim, tts_speech16k

VOICE_LIMIT = 1.5
"""A voice level is sustained while its e2e median is at most this many times the single-session median."""
TEXT_LIMIT_MS = 100.0
"""A text level is sustained while its first-token overhead p95 is below this."""
TEXT_GIVE_UP_MS = 1000.0
"""Text levels keep growing past the target (to show the trend) until the p95 overhead passes this."""
QUESTIONS = [
    "What is the capital of France?", "Tell me a fun fact about octopuses.", "How long should I boil an egg?",
    "Which planet is the largest?", "Why is the sky blue?", "What should I cook tonight?",
]


@contextlib.contextmanager
def profiled(server: ServerProcess, out: Path | None) -> Iterator[subprocess.Popen[bytes] | None]:
    """Sample the server with py-spy while the block runs (nothing when ``out`` is None)."""
    spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if out is None:
        yield None
        return
    proc = subprocess.Popen([spy, "record", "--pid", str(server.proc.pid), "--format", "raw", "--threads",
                             "--rate", "200", "--output", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def voice_session(url: str, index: int, speech: list[Utterance], turns: int, delay_s: float
                        ) -> list[dict[str, float | int]]:
    """One simulated speaker: wait ``delay_s``, then ``turns`` spoken turns in real time."""
    from tests.support.voice_client import VoiceClient

    await asyncio.sleep(delay_s)
    client = await VoiceClient.open(url, f"voice{index}")
    try:
        return [await one_turn(client, speech[(index + t) % len(speech)], 1.0) for t in range(turns)]
    finally:
        await client.close()


async def voice_level(url: str, n: int, speech: list[Utterance], turns: int, cycle_s: float
                      ) -> dict[str, object]:
    started = time.perf_counter()
    results = await asyncio.gather(*(voice_session(url, i, speech, turns, i * cycle_s / n) for i in range(n)))
    flat = [t for session in results for t in session]
    e2e = [float(t["e2e"]) for t in flat if not np.isnan(t["e2e"])]
    asr = [float(t["server_asr"]) for t in flat if "server_asr" in t]
    return {"sessions": n, "turns": len(flat), "e2e_p50": summary_ms(e2e)["p50"], "e2e_p95": summary_ms(e2e)["p95"],
            "asr_p50": summary_ms(asr)["p50"] if asr else None,
            "premature": sum(int(t["premature"]) for t in flat), "missing": len(flat) - len(e2e),
            "wall_s": round(time.perf_counter() - started, 1), "load_average": load_average()[0]}


async def text_session(url: str, index: int, turns: int, ttft_ms: float, rng: random.Random
                       ) -> list[dict[str, float]]:
    """One typing user: ``turns`` questions, each after the previous answer and a short pause."""
    from tests.support.voice_client import VoiceClient

    await asyncio.sleep(rng.uniform(0, 1.0))
    client = await VoiceClient.open(url, f"text{index}", audio_output=False)
    out = []
    try:
        for t in range(turns):
            n_done = len(client.events("response.done"))
            sent = time.perf_counter()
            await client.say_text(f"{QUESTIONS[(index + t) % len(QUESTIONS)]} ({index}.{t})")
            done = await client.wait_for("response.done", n_done + 1, timeout=120)
            first = client.first_time("response.text.delta", after=sent)
            if first is not None:
                out.append({"overhead": (first - sent) * 1000 - ttft_ms, **done["metrics"]})
            await asyncio.sleep(rng.uniform(0.5, 1.5))
    finally:
        await client.close()
    return out


async def text_level(url: str, n: int, turns: int, ttft_ms: float) -> dict[str, object]:
    rng = random.Random(n)
    started = time.perf_counter()
    results = await asyncio.gather(*(text_session(url, i, turns, ttft_ms, rng) for i in range(n)))
    flat = [x for session in results for x in session]
    s = summary_ms([x["overhead"] for x in flat])
    wall = time.perf_counter() - started
    # The server's own split of the wait (docs/protocol.md metrics), to see which stage grows with N.
    stages = {f"{k}_p50": summary_ms([x[k] for x in flat if k in x])["p50"]
              for k in ("route", "memory", "retrieval", "llm_ttft") if any(k in x for x in flat)}
    return {"sessions": n, "turns": len(flat), "overhead_p50": s["p50"], "overhead_p95": s["p95"], **stages,
            "turns_per_s": round(len(flat) / wall, 1), "load_average": load_average()[0]}


def n_before(levels: list[int], n: int) -> int:
    """The level before ``n`` (0 for the first): a level counts as sustained only if every smaller one was."""
    i = levels.index(n)
    return levels[i - 1] if i else 0


def run_voice(args: argparse.Namespace, server: ServerProcess) -> dict[str, object]:
    from speech.engines.factory import build_tts, engine_settings

    tts = build_tts(engine_settings())
    # Latency is measured from the last word (bench.voice_latency), so each clip carries where it ends.
    clips = [(s, trim(tts_speech16k(tts, s))) for s in SHORT]
    speech = [Utterance("short", s, pcm, (np.flatnonzero(loud_frames(pcm))[-1] + 1) * 0.01) for s, pcm in clips]
    rows: list[dict[str, object]] = []
    sustained = 0
    cycle_s = 0.0
    for n in args.voice_levels:
        out = args.profile / f"voice-{n}.txt" if args.profile else None
        with profiled(server, out):
            row = asyncio.run(voice_level(server.ws_url, n, speech, args.voice_turns, cycle_s))
        rows.append(row)
        if n == 1:
            cycle_s = float(row["wall_s"]) / args.voice_turns  # one turn of one user, start to settled
        base = float(rows[0]["e2e_p50"])
        ok = float(row["e2e_p50"]) <= VOICE_LIMIT * base and not row["missing"]
        row["within_1.5x"] = ok
        if not args.json:
            print_table(f"voice, {n} session(s)", [row])
        if not ok:
            break
        sustained = n
    return {"levels": rows, "max_sustained": sustained,
            "single_e2e_p50": rows[0]["e2e_p50"] if rows else None}


def run_text(args: argparse.Namespace, server: ServerProcess) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    sustained = 0
    for n in args.text_levels:
        out = args.profile / f"text-{n}.txt" if args.profile else None
        with profiled(server, out):
            row = asyncio.run(text_level(server.ws_url, n, args.text_turns, args.ttft_ms))
        ok = float(row["overhead_p95"]) < TEXT_LIMIT_MS
        row["under_100ms"] = ok
        rows.append(row)
        if not args.json:
            print_table(f"text, {n} session(s)", [row])
        if ok and sustained == n_before(args.text_levels, n):
            sustained = n
        if float(row["overhead_p95"]) > TEXT_GIVE_UP_MS:
            break  # far past the target: more sessions only take longer to say so
    return {"levels": rows, "max_sustained": sustained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Voice: 1 session x 1 turn; text: 1 and 4 x 2.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--mode", nargs="+", choices=("voice", "text"), default=["voice", "text"])
    parser.add_argument("--voice_levels", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--voice_turns", type=int, default=3, help="Turns per voice session per level.")
    parser.add_argument("--text_levels", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--text_turns", type=int, default=5, help="Turns per text session per level.")
    parser.add_argument("--ttft_ms", type=float, default=0.0, help="Fake LLM time to first token.")
    parser.add_argument("--tokens_per_s", type=float, default=50.0, help="Fake LLM token rate.")
    parser.add_argument("--profile", type=Path, default=None, help="Folder for py-spy recordings of the server.")
    parser.add_argument("--server_args", default="",
                        help='Extra server.py flags for an A/B run, e.g. "--malloc_arena_max 0" (split on spaces).')
    args = parser.parse_args()
    if args.quick:
        args.voice_levels, args.voice_turns, args.text_levels, args.text_turns = [1], 1, [1, 4], 2
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {"machine": machine(), "ttft_ms": args.ttft_ms, "tokens_per_s": args.tokens_per_s,
                                 "server_args": args.server_args}
    with (contextlib.redirect_stderr(io.StringIO()) if args.json else contextlib.nullcontext(),
          tempfile.TemporaryDirectory() as tmp):
        # One server for both modes (as deployed): its start-up (~25 s here) is most of a --quick run.
        fake = fake_llm(REPLY, ttft_ms=args.ttft_ms, tokens_per_s=args.tokens_per_s)
        server = ServerProcess([*fake_llm_server_args(fake.base_url, str(Path(tmp) / "memory")),
                                "--max_sessions", "512", "--max_turns_per_minute", "1000",
                                *args.server_args.split()]).start()
        result["server_ready_s"] = round(server.ready_s, 1)
        try:
            if "voice" in args.mode:
                result["voice"] = run_voice(args, server)
            if "text" in args.mode:
                result["text"] = run_text(args, server)
        finally:
            server.stop()
            fake.stop()
    result["load_average_end"] = load_average()
    if not args.json:
        summary = []
        if "voice" in result:
            v = result["voice"]
            summary.append({"mode": "voice", "max_sustained": v["max_sustained"],
                            "rule": f"e2e median <= {VOICE_LIMIT}x single ({v['single_e2e_p50']} ms)"})
        if "text" in result:
            summary.append({"mode": "text", "max_sustained": result["text"]["max_sustained"],
                            "rule": f"first-token overhead p95 < {TEXT_LIMIT_MS:.0f} ms"})
        print_table(f"Sustained sessions (load average at start {result['machine']['load_average']})", summary)
    emit(result, args.json)


if __name__ == "__main__":
    main()
