"""Voice-to-voice latency, premature replies, barge-in and false stops, measured the way a user feels them.

A client that follows docs/protocol.md streams speech made by the embedded TTS at
real time to a real Parley server (real VAD, Whisper, TTS) whose LLM is a fake
OpenAI server with a set time to first token and token rate.

    flock /tmp/parley-bench.lock .venv/bin/python -m bench.voice_latency [--quick] [--json]
        [--ttft_ms 0 300] [--server_args --whisper_window full ...]

Utterances (bench/voice_utterances.py): ``short`` questions of ~3 s, ``long`` ~10 s
sentences (English and Mandarin) with 0.5-1.1 s pauses inside, ``paused`` two
fragments (English and Mandarin) with a 0.5-1.1 s pause between.

Per turn, client side: final-answer latency = first reply audio byte received - the end
of the last word sent. Premature: a reply whose audio starts before the last word was
sent, or two answers to one utterance. Barge-in: from the first speech frame sent during
a reply to the last reply audio frame received. False stops: a click, a noise burst and
a 120 ms speech blip sent during a reply; a stop is counted when the reply ends
interrupted, a pause when its audio stops for more than 150 ms and then goes on.

``--trace``: the server's marks along each answered turn (speech/voice/trace.py: the VAD's last
speech frame, the pause, the decode queued/started/ended, the end silence chosen, the turn
confirmed, the LLM's first token, TTS's first audio, the first byte sent), in ms after the last
word on the client's clock (one process, one clock), as medians per utterance set.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import emit, load_average, machine, print_table, summary_ms
from tests.support.voice_client import silence

REPLY = "Sure. Here is a short answer to your question."
LONG_REPLY = " ".join(["This is a long answer that goes on and on so that it can be interrupted."] * 8)
SPEC_MARKS = ("speech_end", "pause", "decode_asked", "decode_queued", "decode_start", "decode_end", "decode_back",
              "end_silence", "turn_end")
PER_TURN = ("kind", "e2e", "end_silence_ms", "t_speech_end", "t_decode_end", "t_turn_end", "t_llm_first_delta",
            "t_tts_first_audio", "t_first_byte")
TURN_MARKS = ("reply_start", "confirm", "llm_first_delta", "tts_requested", "tts_first_audio", "first_byte")


class TraceMarks(logging.Handler):
    """Collects the server's turn marks (speech/voice/trace.py) from the ``speech.voice.trace`` logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.marks: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        mark = getattr(record, "trace", None)
        if isinstance(mark, dict):
            self.marks.append(mark)

    def __enter__(self) -> TraceMarks:
        logger = logging.getLogger("speech.voice.trace")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("speech.voice.trace").removeHandler(self)

    def timeline(self, turn_id: str, last_word: float, received: float | None) -> dict[str, float]:
        """ms after the last word of each mark of the turn that answered (``t_NAME``), and the end silence chosen."""
        start = next((m for m in self.marks if m["name"] == "reply_start" and m.get("turn") == turn_id), None)
        if start is None:
            return {}
        spec = start["spec"]
        out: dict[str, float] = {}
        for m in self.marks:
            ours = (m["name"] in SPEC_MARKS and m.get("spec") == spec) or (
                m["name"] in TURN_MARKS and m.get("turn") == turn_id)
            if ours and f"t_{m['name']}" not in out:  # the first of each (a decode has one start)
                out[f"t_{m['name']}"] = round((float(m["at"]) - last_word) * 1000, 1)  # type: ignore[arg-type]
                if m["name"] == "end_silence":
                    out["end_silence_ms"] = float(m["ms"])  # type: ignore[arg-type]
        if received is not None:
            out["t_first_byte_received"] = round((received - last_word) * 1000, 1)
        return out


async def settle(client, quiet_s: float = 1.5) -> None:
    """Wait until the server has sent nothing for ``quiet_s`` (a late second reply would count)."""
    while True:
        last = client.received[-1].at if client.received else 0.0
        if time.perf_counter() - last >= quiet_s:
            return
        await asyncio.sleep(0.1)


async def one_turn(client, utt, speed: float, marks: TraceMarks | None = None) -> dict[str, object]:
    """Stream lead-in silence + speech + trailing silence; time the answer from the last word."""
    before, after = 0.3, 2.5
    n_received = len(client.received)
    start = time.perf_counter()
    await client.stream_pcm(np.concatenate([silence(before), utt.pcm, silence(after)]), speed=speed)
    last_word = start + (before + utt.last_word_s) / speed
    deadline = time.perf_counter() + 120
    while not [r for r in client.received[n_received:] if r.event and r.event["type"] == "response.done"
               and not r.event["interrupted"]]:
        if time.perf_counter() > deadline:
            raise TimeoutError("no answer")
        await asyncio.sleep(0.05)
    await settle(client)
    new = client.received[n_received:]
    answers = [r.event for r in new if r.event and r.event["type"] == "response.done" and not r.event["interrupted"]]
    audio_starts = [r.at for r in new if r.event and r.event["type"] == "response.audio.start"]
    first_byte = next((r.at for r in new if r.audio is not None), None)
    return {
        "kind": utt.kind,
        "e2e": (first_byte - last_word) * 1000 if first_byte else float("nan"),
        "premature": int(bool(audio_starts and audio_starts[0] < last_word) or len(answers) > 1),
        **{f"server_{k}": v for k, v in answers[-1]["metrics"].items()},
        **(marks.timeline(answers[-1]["turn_id"], last_word, first_byte) if marks is not None else {}),
    }


def trace_rows(turns: list[dict[str, object]], ttft: float) -> list[dict[str, object]]:
    """One row per mark: its median ms after the last word, per utterance set."""
    names = [k for k in turns[0] if k.startswith("t_") or k == "end_silence_ms"] if turns else []
    rows = []
    for name in names:
        row: dict[str, object] = {"ttft_ms": ttft, "mark": name.removeprefix("t_")}
        for kind in ("all", "short", "long", "paused"):
            vals = [float(t[name]) for t in turns if name in t and (kind == "all" or t["kind"] == kind)]  # type: ignore[arg-type]
            row[kind] = summary_ms(vals)["p50"] if vals else ""
        rows.append(row)
    return rows


async def start_long_reply(client) -> int:
    await settle(client)
    n_done = len(client.events("response.done"))
    await client.say_text("tell me a very long story")
    await client.wait_for("response.audio.start", len(client.events("response.audio.start")) + 1, timeout=60)
    await asyncio.sleep(1.0)
    return n_done


async def barge_in(client, speech: np.ndarray, speed: float) -> float:
    """Ask for a long answer by text, interrupt it with speech.

    Returns ms from the first speech frame sent to the last reply frame received.
    """
    n_done = await start_long_reply(client)
    speech_start = time.perf_counter()
    # 2.5 s of silence after it, as after every turn: more than the longest end-of-turn silence
    # (--late_silence_ms, which the speaker's pause habit can reach), so the interruption's turn ends.
    await client.stream_pcm(np.concatenate([speech, silence(2.5)]), speed=speed)
    done = await client.wait_for("response.done", n_done + 1, timeout=60)
    if not done["interrupted"]:
        return float("nan")
    done_at = next(r.at for r in client.received if r.event is done)
    last = max(r.at for r in client.received if r.audio is not None and r.at <= done_at)
    await client.wait_for("response.done", n_done + 2, timeout=120)  # the answer to the interruption
    await settle(client)
    return (last - speech_start) * 1000


async def false_stops(client, sounds: dict[str, np.ndarray], speed: float) -> dict[str, int]:
    """Non-speech sounds during a reply: how many stopped it (interrupted) or paused its audio."""
    stops = pauses = 0
    for sound in sounds.values():
        n_done = await start_long_reply(client)
        sent = time.perf_counter()
        await client.stream_pcm(np.concatenate([sound, silence(1.2)]), speed=speed)
        frames = [r.at for r in client.received if r.audio is not None and r.at >= sent - 0.1]
        gaps = np.diff(frames) if len(frames) > 1 else np.zeros(0)
        ended = client.events("response.done")[n_done:]
        if ended and ended[0]["interrupted"]:
            stops += 1
        elif gaps.size and gaps.max() > 0.15:
            pauses += 1
        await client.send_json({"type": "interrupt"})
        await client.wait_for("response.done", n_done + 1, timeout=30)
        await settle(client)
    return {"false_stops": stops, "false_pauses": pauses, "sounds": len(sounds)}


def rows_for(turns: list[dict[str, object]], ttft: float, kind: str) -> dict[str, object]:
    sel = [t for t in turns if kind == "all" or t["kind"] == kind]
    e2e = [float(t["e2e"]) for t in sel]  # type: ignore[arg-type]
    stats = summary_ms(e2e)
    stage = {k: summary_ms([float(t[k]) for t in sel if k in t])["p50"]  # type: ignore[arg-type]
             for k in ("server_vad_end", "server_asr", "server_llm_ttft", "server_tts_first_audio")
             if any(k in t for t in sel)}
    return {"ttft_ms": ttft, "set": kind, "turns": len(sel), "e2e_p50": stats["p50"], "e2e_p95": stats["p95"],
            "premature": f"{sum(int(t['premature']) for t in sel)}/{len(sel)}",  # type: ignore[call-overload]
            **{k.removeprefix("server_") + "_p50": v for k, v in stage.items()}}


async def run(args: argparse.Namespace) -> dict[str, object]:
    from agent.config import AgentSettings
    from agent.embedding import load_embedder
    from bench.voice_utterances import make_utterances
    from speech.audio import resample_pcm16
    from speech.engines.factory import add_speech_arguments, build_engines
    from tests.support.fakes.openai_server import FakeOpenAI, Reply
    from tests.support.in_process import running_server
    from tests.support.speech import trim
    from tests.support.voice_client import VoiceClient

    parser = argparse.ArgumentParser()
    add_speech_arguments(parser)
    engines = build_engines(parser.parse_args(args.server_args))
    engines.warm_up()
    embedder = load_embedder()
    sets = make_utterances(engines.tts, engines.tts.sample_rate, args.quick)
    utterances = [u for _ in range(args.rounds) for name in ("short", "long", "paused") for u in sets[name]]

    def speak(text: str) -> np.ndarray:
        return trim(resample_pcm16(np.concatenate(list(engines.tts.synthesize(text, "en"))),
                                   engines.tts.sample_rate, 16000))

    interruption = speak("Stop please, that is enough.")
    rng = np.random.default_rng(7)
    sounds = {"click": (rng.standard_normal(320) * 12000).clip(-32000, 32000).astype(np.int16),
              "noise_200ms": (rng.standard_normal(3200) * 3000).astype(np.int16),
              "speech_blip_120ms": speak("Hm, yes.")[:1920]}
    results: dict[str, object] = {
        "machine": machine(), "speed": args.speed, "server_args": " ".join(args.server_args),
        "min_silence_ms": engines.args.min_silence_ms, "speculative_silence_ms": engines.args.speculative_silence_ms,
        "utterance_s": {k: round(float(np.mean([u.pcm.size / 16000 for u in v])), 2) for k, v in sets.items()},
    }
    rows, extras, traces, per_turn = [], [], [], []
    for ttft in args.ttft_ms:
        def reply(request: dict, ttft: float = ttft) -> Reply:
            text = LONG_REPLY if "long story" in request["messages"][-1]["content"] else REPLY
            return Reply(text=text, ttft_s=ttft / 1000, token_interval_s=1 / 50)

        with FakeOpenAI(reply) as fake, tempfile.TemporaryDirectory() as tmp:
            config = AgentSettings(lm_model_url=fake.base_url, lm_model_name="fake", lm_api_key="bench",
                                 memory_dir=str(Path(tmp) / "mem"), lm_tool_routing="off", extract_facts="off")
            async with running_server(config, embedder, engines, max_turns_per_minute=1000) as srv:
                client = await VoiceClient.open(srv.ws_url, "bench")
                with TraceMarks() if args.trace else contextlib.nullcontext() as marks:
                    turns = [await one_turn(client, u, args.speed, marks) for u in utterances]
                barges = [await barge_in(client, interruption, args.speed) for _ in range(args.barge_ins)]
                noise = await false_stops(client, sounds, args.speed) if args.barge_ins else {}
                await client.close()
        rows += [rows_for(turns, ttft, k) for k in ("all", "short", "long", "paused")]
        if args.trace:
            traces += trace_rows(turns, ttft)
            per_turn += [{"ttft_ms": ttft, **{k: round(v, 1) if isinstance(v, float) else v
                                                for k, v in t.items() if k in PER_TURN}} for t in turns]
        extras.append({"ttft_ms": ttft, "barge_in_p50": summary_ms(barges)["p50"] if barges else None,
                       "barge_in_max": round(max(barges), 1) if barges else None, **noise})
    results["runs"] = rows
    if args.trace:
        results["trace"], results["trace_turns"] = traces, per_turn
    results["barge_in"] = extras
    results["load_average_after"] = load_average()
    if not args.json:
        print(f"utterances {results['utterance_s']} s, end-of-turn silence {results['min_silence_ms']} ms, "
              f"speculative at {results['speculative_silence_ms']} ms, speed x{args.speed}, "
              f"server args '{results['server_args']}', load before {results['machine']['load_average']}")
        print_table("Final-answer latency after the last word (ms, client side)", rows)
        print_table("Barge-in (ms) and non-speech sounds during a reply", extras)
        if args.trace:
            print_table("Turn marks, p50 ms after the last word (end_silence_ms: the silence chosen)", traces)
            print_table("Each turn (ms after the last word)", per_turn)
        print("load after", results["load_average_after"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 short, 3 long, 3 paused utterances, 2 barge-ins.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--ttft_ms", type=float, nargs="+", default=None,
                        help="Fake LLM TTFTs to run (default 0 and 300; 0 with --quick).")
    parser.add_argument("--rounds", type=int, default=1, help="Times the utterance sets are gone through.")
    parser.add_argument("--barge_ins", type=int, default=4)
    parser.add_argument("--speed", type=float, default=1.0, help="Audio streaming speed (1 = real time).")
    parser.add_argument("--trace", action="store_true", help="Also print where each turn's time went (marks).")
    parser.add_argument("--server_args", nargs=argparse.REMAINDER, default=[],
                        help="Speech flags for the server, e.g. --whisper_window full (last on the line).")
    args = parser.parse_args()
    if args.quick:
        args.barge_ins = 2
    if args.ttft_ms is None:
        args.ttft_ms = [0.0] if args.quick else [0.0, 300.0]
    with contextlib.redirect_stderr(io.StringIO()) if args.json else contextlib.nullcontext():
        result = asyncio.run(run(args))
    emit(result, args.json)


if __name__ == "__main__":
    main()
