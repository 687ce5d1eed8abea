"""Voice-to-voice latency, premature replies and barge-in, measured the way a user feels them.

A client that follows docs/protocol.md streams speech made by the embedded TTS at
real time to a real Parley server (real VAD, Whisper, TTS) whose LLM is a fake
OpenAI server with a set time to first token and token rate.

    .venv/bin/python -m bench.voice_latency [--quick] [--json] [--ttft_ms 0 300] [--turns 20]

Per turn, client side: ``e2e`` = first reply audio byte received - end of the user's
speech sent. ``overhead`` = e2e - the configured end-of-turn silence - the fake TTFT.
Premature replies: utterances with 0.5-1 s pauses inside; a reply that starts before
the whole utterance was sent, or two replies to one utterance, counts.
Barge-in: from the first frame of speech sent during a reply to the last reply audio
frame received.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import emit, machine, print_table, summary_ms

SENTENCES = [
    "What is the capital of France and how big is it?",
    "Can you tell me a fun fact about octopuses?",
    "How long does it take to boil an egg?",
    "Which planet in our solar system is the largest?",
    "Please explain why the sky looks blue.",
    "What should I cook for dinner tonight?",
    "How many people live in Tokyo today?",
    "Tell me something interesting about whales.",
]
PAUSED = [
    ("I would like to know", "the height of Mount Everest"),
    ("Can you tell me", "how far away the moon is"),
    ("My favourite fruit is", "mango and I eat it every day"),
]
REPLY = "Sure. Here is a short answer to your question. It has two more sentences. This is the last one."
LONG_REPLY = " ".join(["This is a long answer that goes on and on so that it can be interrupted."] * 8)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), dtype=np.int16)


async def settle(client, quiet_s: float = 1.5) -> None:
    """Wait until the server has sent nothing for ``quiet_s`` (a late second reply would count)."""
    while True:
        last = client.received[-1].at if client.received else 0.0
        if time.perf_counter() - last >= quiet_s:
            return
        await asyncio.sleep(0.1)


async def one_turn(client, speech: np.ndarray, speed: float) -> dict[str, float | int]:
    """Stream lead-in silence + speech + trailing silence; time the reply."""
    before, after = 0.3, 2.5
    n_done = len(client.events("response.done"))
    start = time.perf_counter()
    await client.stream_pcm(np.concatenate([silence(before), speech, silence(after)]), speed=speed)
    speech_end = start + (before + len(speech) / 16000) / speed
    done = await client.wait_for("response.done", n_done + 1, timeout=120)
    await settle(client)
    first_audio = client.first_time("response.audio.start", after=start)
    first_byte = next((r.at for r in client.received if r.audio is not None and r.at >= start), None)
    replies = len(client.events("response.done")) - n_done
    return {
        "e2e": (first_byte - speech_end) * 1000 if first_byte else float("nan"),
        "premature": int(bool(first_audio and first_audio < speech_end) or replies > 1),
        **{f"server_{k}": v for k, v in done["metrics"].items()},
    }


async def barge_in(client, speech: np.ndarray, speed: float) -> float:
    """Ask for a long answer by text, interrupt it with speech; return ms to the last reply frame."""
    await settle(client)
    n_done = len(client.events("response.done"))
    await client.say_text("tell me a very long story")
    await client.wait_for("response.audio.start", len(client.events("response.audio.start")) + 1, timeout=60)
    await asyncio.sleep(1.0)
    speech_start = time.perf_counter()
    await client.stream_pcm(np.concatenate([speech, silence(1.5)]), speed=speed)
    done = await client.wait_for("response.done", n_done + 1, timeout=60)
    if not done["interrupted"]:
        return float("nan")
    done_at = next(r.at for r in client.received if r.event is done)
    last = max(r.at for r in client.received if r.audio is not None and r.at <= done_at)
    await client.wait_for("response.done", n_done + 2, timeout=120)  # the answer to the interruption
    await settle(client)
    return (last - speech_start) * 1000


async def run(args: argparse.Namespace) -> dict[str, object]:
    from agent.config import AgentConfig
    from agent.embedding import load_embedder
    from speech.engines import build_engines
    from speech.vad import resample_pcm16
    from tests.fakes.openai_server import FakeOpenAI, Reply
    from tests.server_harness import running_server
    from tests.voice_client import VoiceClient

    engines = build_engines()
    engines.warm_up()
    embedder = load_embedder()

    def speak(text: str) -> np.ndarray:
        pcm = np.concatenate(list(engines.tts.synthesize(text, "en")))
        return resample_pcm16(pcm, engines.tts.sample_rate, 16000)

    sentences = [speak(s) for s in SENTENCES]
    paused = [np.concatenate([speak(a), silence(0.5 + 0.25 * i), speak(b)]) for i, (a, b) in enumerate(PAUSED)]
    interruption = speak("Stop please, that is enough.")
    silence_ms = engines.args.min_silence_ms
    results: dict[str, object] = {
        "machine": machine(), "speed": args.speed, "min_silence_ms": silence_ms,
        "speculative_silence_ms": engines.args.speculative_silence_ms,
        "utterance_s": round(float(np.mean([len(s) / 16000 for s in sentences])), 2),
    }
    rows = []
    for ttft in args.ttft_ms:
        def reply(request: dict, ttft: float = ttft) -> Reply:
            text = LONG_REPLY if "long story" in request["messages"][-1]["content"] else REPLY
            return Reply(text=text, ttft_s=ttft / 1000, token_interval_s=1 / 50)

        with FakeOpenAI(reply) as fake, tempfile.TemporaryDirectory() as tmp:
            config = AgentConfig(lm_model_url=fake.base_url, lm_model_name="fake", lm_api_key="bench",
                                 memory_dir=str(Path(tmp) / "mem"), lm_tool_routing="off", extract_facts="off")
            async with running_server(config, embedder, engines, max_turns_per_minute=1000) as srv:
                client = await VoiceClient.open(srv.ws_url, "bench")
                turns = [await one_turn(client, sentences[i % len(sentences)], args.speed)
                         for i in range(args.turns)]
                pauses = [await one_turn(client, paused[i % len(paused)], args.speed)
                          for i in range(args.paused)]
                barges = [await barge_in(client, interruption, args.speed) for _ in range(args.barge_ins)]
                await client.close()
        e2e = [t["e2e"] for t in turns]
        stages = {k: summary_ms([t[k] for t in turns if k in t])["p50"]
                  for k in ("server_vad_end", "server_asr", "server_llm_ttft", "server_tts_first_audio", "server_e2e")}
        row = {
            "ttft_ms": ttft,
            "turns": len(turns),
            "e2e_p50": summary_ms(e2e)["p50"],
            "e2e_p95": summary_ms(e2e)["p95"],
            "overhead_p50": round(summary_ms(e2e)["p50"] - silence_ms - ttft, 1),
            "premature": f"{sum(int(t['premature']) for t in pauses + turns)}/{len(pauses) + len(turns)}",
            "barge_in_p50": summary_ms(barges)["p50"] if barges else None,
            **{k.removeprefix("server_") + "_p50": v for k, v in stages.items()},
        }
        rows.append(row)
    results["runs"] = rows
    if not args.json:
        print(f"utterances {results['utterance_s']} s, end-of-turn silence {silence_ms} ms, "
              f"speculative at {results['speculative_silence_ms']} ms, speed x{args.speed}")
        print_table("Voice-to-voice latency (ms, client side)", rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 turns, 3 paused utterances, 2 barge-ins, TTFT 0.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--ttft_ms", type=float, nargs="+", default=[0.0, 300.0], help="Fake LLM TTFTs to run.")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--paused", type=int, default=6, help="Utterances with pauses inside.")
    parser.add_argument("--barge_ins", type=int, default=5)
    parser.add_argument("--speed", type=float, default=1.0, help="Audio streaming speed (1 = real time).")
    args = parser.parse_args()
    if args.quick:
        args.turns, args.paused, args.barge_ins, args.ttft_ms = 5, 3, 2, [0.0]
    with contextlib.redirect_stderr(io.StringIO()) if args.json else contextlib.nullcontext():
        result = asyncio.run(run(args))
    emit(result, args.json)


if __name__ == "__main__":
    main()
