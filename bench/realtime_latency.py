"""A spoken turn over ``/v1/realtime`` (the stock ``openai`` SDK) against the same turn over ``/ws``.

One real Parley in-process (real VAD, Whisper, TTS; the fake LLM at TTFT 0), the same utterances
sent at real time in 20 ms chunks, alternating transport turn by turn so both see the same load.
Final-answer latency = first reply audio received - the end of the last word sent
(``/ws``: the first binary frame; Realtime: the first ``response.output_audio.delta``).

    flock /tmp/parley-bench.lock .venv/bin/python -m bench.realtime_latency [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import emit, load_average, machine, print_table, summary_ms
from bench.voice_latency import REPLY, one_turn


async def realtime_turn(conn, utt, pcm24: np.ndarray) -> tuple[float, bool]:
    """Stream one utterance over the Realtime connection: (ms from its last word to the first reply audio,
    premature: a reply began before the last word or a second reply came), as bench.voice_latency counts."""
    before, after = 0.3, 2.5
    audio = np.concatenate([np.zeros(int(before * 24000), np.int16), pcm24, np.zeros(int(after * 24000), np.int16)])
    start = time.perf_counter()
    first_audio: float | None = None
    created: list[float] = []

    async def listen() -> None:
        nonlocal first_audio
        async for event in conn:
            if event.type == "response.created":
                created.append(time.perf_counter())
            if event.type == "response.output_audio.delta" and first_audio is None:
                first_audio = time.perf_counter()
            if event.type == "response.done" and event.response.status == "completed" \
                    and time.perf_counter() > start + before + utt.last_word_s:
                return

    listener = asyncio.ensure_future(listen())
    for i, at in enumerate(range(0, audio.size, 480)):  # 20 ms, paced against the clock as /ws's client is
        await conn.input_audio_buffer.append(audio=base64.b64encode(audio[at:at + 480].tobytes()).decode())
        delay = start + (i + 1) * 0.02 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.wait_for(listener, 120)
    last_word = start + before + utt.last_word_s
    premature = bool(first_audio and first_audio < last_word) or len(created) > 1
    return ((first_audio - last_word) * 1000 if first_audio else float("nan")), premature


async def run(args: argparse.Namespace) -> dict[str, object]:
    from openai import AsyncOpenAI

    from agent.config import AgentSettings
    from agent.embedding import load_embedder
    from bench.voice_utterances import make_utterances
    from speech.audio import resample_pcm16
    from speech.engines.factory import add_speech_arguments, build_engines
    from tests.support.fakes.openai_server import FakeOpenAI, Reply
    from tests.support.in_process import running_server
    from tests.support.voice_client import VoiceClient

    parser = argparse.ArgumentParser()
    add_speech_arguments(parser)
    engines = build_engines(parser.parse_args([]))
    engines.warm_up()
    embedder = load_embedder()
    sets = make_utterances(engines.tts, engines.tts.sample_rate, args.quick)
    utterances = [u for _ in range(args.rounds) for name in ("short", "long") for u in sets[name]]
    load_before = load_average()
    ws_ms: list[float] = []
    rt_ms: list[float] = []
    premature = {"ws": 0, "realtime": 0}
    with FakeOpenAI(lambda _: Reply(text=REPLY, token_interval_s=1 / 50)) as fake, \
            tempfile.TemporaryDirectory() as tmp:
        config = AgentSettings(lm_model_url=fake.base_url, lm_model_name="fake", lm_api_key="bench",
                             memory_dir=str(Path(tmp) / "mem"), lm_tool_routing="off", extract_facts="off")
        async with running_server(config, embedder, engines, max_turns_per_minute=1000) as srv:
            client = await VoiceClient.open(srv.ws_url, "bench-ws")
            sdk = AsyncOpenAI(base_url=f"{srv.http_url}/v1", api_key="unused")
            async with sdk.realtime.connect(model="parley", extra_query={"user_id": "bench-rt"}) as conn:
                for utt in utterances:
                    turn = await one_turn(client, utt, 1.0)
                    ws_ms.append(float(turn["e2e"]))  # type: ignore[arg-type]
                    premature["ws"] += int(turn["premature"])  # type: ignore[call-overload]
                    ms, early = await realtime_turn(conn, utt, resample_pcm16(utt.pcm, 16000, 24000))
                    rt_ms.append(ms)
                    premature["realtime"] += int(early)
                    await asyncio.sleep(1.0)
            await client.close()
    ws, rt = summary_ms(ws_ms), summary_ms(rt_ms)
    return {"machine": machine(), "load_average_before": load_before, "load_average_after": load_average(),
            "turns_each": len(utterances), "ws_ms": ws, "realtime_ms": rt, "premature": premature,
            "ws_turns_ms": [round(v, 1) for v in ws_ms], "realtime_turns_ms": [round(v, 1) for v in rt_ms],
            "realtime_over_ws_p50": round(rt["p50"] / ws["p50"], 3) if ws["p50"] else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer utterances")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if not args.json:
        print_table("Final-answer latency after the last word (ms, client side, TTFT 0)",
                    [{"transport": "/ws", **result["ws_ms"],  # type: ignore[dict-item]
                      "premature": result["premature"]["ws"]},  # type: ignore[index]
                     {"transport": "/v1/realtime (openai SDK)", **result["realtime_ms"],  # type: ignore[dict-item]
                      "premature": result["premature"]["realtime"]}])  # type: ignore[index]
        print(f"realtime / ws at p50: {result['realtime_over_ws_p50']}; load before {result['load_average_before']},"
              f" after {result['load_average_after']}")
    emit(result, args.json)


if __name__ == "__main__":
    main()
