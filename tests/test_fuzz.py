"""Fuzzing (issue 7): property tests for the protocol parser and the HTTP routes, and a
random-frame run over the WebSocket against a real in-process server (on the engine fakes of
tests/support/engine_fakes.py: the frames are about the protocol, not a model), with zero server crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import string
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.ids import InvalidIdError, validate_user_id
from speech.protocol import Interrupt, ProtocolError, SessionEnd, SessionStart, TextInput, parse_client_message
from speech.transport.http_api import WEB_ROOT, HttpRoutes, json_response, token_matches
from tests.support.in_process import running_server
from tests.support.voice_client import VoiceClient

FUZZ_SEED = 20240607
FUZZ_INPUTS = int(os.environ.get("FUZZ_INPUTS", 1000))
MAX_MESSAGE_BYTES = 64 * 1024

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
message_types = st.sampled_from(["session.start", "text", "interrupt", "session.end", "dance", "", "TEXT"])
field_names = st.sampled_from(["type", "user_id", "token", "sample_rate", "audio_output", "text", "extra"])
messages = st.dictionaries(field_names, json_values, max_size=6).flatmap(
    lambda d: message_types.map(lambda t: {**d, "type": t}) | st.just(d))


def check_parse(raw: str) -> None:
    try:
        msg = parse_client_message(raw)
    except ProtocolError as exc:
        assert exc.code and exc.message
        return
    assert isinstance(msg, SessionStart | TextInput | Interrupt | SessionEnd)
    if isinstance(msg, SessionStart):
        assert isinstance(msg.user_id, str) and isinstance(msg.sample_rate, int)
        assert isinstance(msg.audio_output, bool)
    if isinstance(msg, TextInput):
        assert isinstance(msg.text, str)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_parser_any_text(raw):
    check_parse(raw)


@settings(max_examples=600, deadline=None)
@given(messages)
def test_parser_any_json_object(obj):
    check_parse(json.dumps(obj))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 200_000), st.sampled_from(["[", "{\"a\":"]))
def test_parser_deep_nesting(depth, opener):
    check_parse(opener * depth)


# --- hostile inputs found by the outside attack (issue 16) -----------------------------------

def _code(raw: str, max_bytes: int | None = None) -> str:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw, max_bytes)
    return caught.value.code


def test_parser_refuses_an_integer_of_more_than_4300_digits_as_bad_json():
    # json.loads raises ValueError ("Exceeds the limit (4300 digits)"), not JSONDecodeError.
    for digits in (4301, 50_000):
        assert _code('{"type": "text", "text": "hi", "n": ' + "7" * digits + "}") == "bad_json"
        assert _code('{"type": "session.start", "user_id": "a", "sample_rate": ' + "1" * digits + "}") == "bad_json"
    assert isinstance(parse_client_message('{"type": "text", "text": "hi", "n": ' + "7" * 4300 + "}"), TextInput)


def test_parser_refuses_lone_surrogates_anywhere():
    for raw in ('{"type": "text", "text": "\\ud800"}', '{"type": "text", "text": "ok \\udfff end"}',
                '{"type": "session.start", "user_id": "a", "token": "\\ud800"}',
                '{"type": "interrupt", "x": [{"\\udbff": 1}]}', '{"type": "text", "text": "a", "deep": ' +
                "[" * 500 + '"\\ud800"' + "]" * 500 + "}"):
        assert _code(raw) == "bad_text", raw
    # A proper surrogate pair is one character (an emoji), and welcome.
    assert parse_client_message('{"type": "text", "text": "\\ud83d\\ude00"}') == TextInput("\U0001F600")


def test_parser_counts_the_limit_in_bytes_before_parsing():
    limit = 1 << 20
    assert _code(json.dumps({"type": "text", "text": "x" * limit}), limit) == "message_too_large"
    wide = json.dumps({"type": "text", "text": "中" * (limit // 3)}, ensure_ascii=False)  # ~1/3 M chars, ~1 MiB
    assert len(wide) < limit < len(wide.encode()) and _code(wide, limit) == "message_too_large"
    assert _code("[" * (limit + 1), limit) == "message_too_large", "refused before the parser sees it"
    fits = json.dumps({"type": "text", "text": "中" * (limit // 3 - 20)}, ensure_ascii=False)
    assert isinstance(parse_client_message(fits, limit), TextInput)


@pytest.mark.parametrize("bad", ["alice\n", "..\n", "a" * 64 + "\n", "alice\r", "\nalice", "al\nice", "alice\x00",
                                 "é", "\ud800"])
def test_user_ids_must_match_in_full(bad):
    with pytest.raises(InvalidIdError):
        validate_user_id(bad)
    assert validate_user_id("alice") == "alice" and validate_user_id("a" * 64) == "a" * 64


def test_token_check_refuses_lone_surrogates_without_raising():
    assert token_matches("secret-token", "\ud800") is False
    assert token_matches("secret-token", "secret-token\ud800") is False
    assert token_matches("secret-token", "secret-token") is True


def test_http_routes_take_odd_request_targets_without_raising():
    # urlsplit("//[") raises ValueError (an unclosed IPv6 host): found by the route fuzz below.
    for target in ("//[", "//[::1", "//[/api/memory?user_id=a", "/ws?token=x#frag", "//host/path"):
        response = asyncio.run(ROUTES.process_request(None, Request(target, Headers())))  # type: ignore[arg-type]
        assert response is None or response.status_code in (401, 404, 426), target


def test_memory_api_refuses_a_user_id_ending_in_a_newline():
    for user in ("alice%0A", "alice%0D%0A", "..%0A"):
        request = Request(f"/api/memory?user_id={user}", Headers({"Authorization": "Bearer secret-token"}))
        response = asyncio.run(ROUTES.process_request(None, request))  # type: ignore[arg-type]
        assert response is not None and response.status_code == 400, user
        assert json.loads(response.body)["error"]["code"] == "invalid_user_id"


class _Memory:
    """Just enough of a memory store for routing: the HTTP layer is what is fuzzed here."""

    def list(self, user_id, limit, offset):
        return []

    def search(self, user_id, query, k):
        return []

    def delete(self, user_id, memory_id):
        raise KeyError(memory_id)

    def stats(self, user_id):
        return {"user_id": user_id, "count": 0}


async def _liveness(authorized: bool) -> Response:
    return json_response(200, {"status": "ok"})


ROUTES = HttpRoutes(_Memory(), "secret-token", {"/healthz": _liveness})
path_chars = st.text(alphabet=string.printable + "é中\x00%", max_size=60)
paths = (path_chars.map(lambda s: "/" + s)
         | st.tuples(st.sampled_from(["/api/memory", "/api/memory/", "/api/memory/stats", "/", "/ws", "/../",
                                      "/%2e%2e/", "/index.html", "/healthz"]), path_chars)
         .map(lambda t: t[0] + t[1]))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paths, st.sampled_from(["", "?user_id=alice", "?user_id=../x", "?user_id=a&limit=x", "?token=secret-token",
                               "?token=secret-token&user_id=alice&q=hi&k=-5", "?token=secret-token&user_id=bob&limit="
                               "99999999999999999999"]),
       st.sampled_from([None, "Bearer secret-token", "Bearer wrong", "Basic x"]),
       st.sampled_from(["GET", "DELETE", "POST", "PUT"]))
def test_http_routes_never_raise_and_never_leak(path, query, auth, method):
    headers = Headers()
    if auth:
        headers["Authorization"] = auth
    request = Request(path + query, headers)
    request.method = method  # websockets only builds GET requests; the router reads this attribute
    response = asyncio.run(ROUTES.process_request(None, request))  # type: ignore[arg-type]
    if response is None:
        assert path.split("?")[0] == "/ws", "only /ws upgrades pass through"
        return
    assert isinstance(response, Response)
    assert response.status_code in (200, 400, 401, 404, 405, 426)
    if path.startswith("/api/") and response.status_code != 401:
        assert auth == "Bearer secret-token" or "token=secret-token" in query, "the API needs the token"
    if response.status_code == 200 and not path.startswith(("/api/", "/healthz")):
        body = response.body
        assert any(body == f.read_bytes() for f in WEB_ROOT.rglob("*") if f.is_file()), "only web/ files"


# --- the WebSocket, with random frames --------------------------------------------------------

def random_frame(rng: random.Random) -> str | bytes:
    kind = rng.random()
    if kind < 0.25:  # random bytes, odd lengths included (treated as audio)
        return rng.randbytes(rng.choice([0, 1, 2, 3, 7, 320, 641, 2048, rng.randrange(0, 8192)]))
    if kind < 0.55:  # a random JSON object with random fields and types
        obj: dict = {}
        for _ in range(rng.randrange(0, 6)):
            key = rng.choice(["type", "user_id", "text", "sample_rate", "token", "audio_output",
                              "x" * rng.randrange(9)])
            obj[key] = rng.choice([None, True, 1, -1, 2**70, 1.5, "", "text", "session.start", "interrupt",
                                   [1, {"a": []}], {"type": "text"}, "\u0000\ud7ff中文", "x" * rng.randrange(300)])
        return json.dumps(obj)
    if kind < 0.62:  # deeply nested JSON
        depth = rng.randrange(10, 30000)
        return rng.choice(["[", "{\"a\":"]) * depth + rng.choice(["", "1" + "]" * depth])
    if kind < 0.67:  # huge strings under the size limit
        return json.dumps({"type": "text", "text": "y" * rng.randrange(1000, MAX_MESSAGE_BYTES - 100)})
    if kind < 0.75:  # not JSON
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(0, 200)))
    if kind < 0.82:  # the outside attack's finds (issue 16)
        return rng.choice([
            '{"type": "text", "text": "hi", "n": ' + "9" * rng.randrange(4301, 20000) + "}",
            json.dumps({"type": "text", "text": rng.choice(["\ud800", "a\udfff", "\udbff\udbff"]) + " pin 4321"}),
            json.dumps({"type": rng.choice(["text", "interrupt"]), "text": "w" * rng.randrange(MAX_MESSAGE_BYTES + 1,
                                                                                        3 * MAX_MESSAGE_BYTES)}),
            json.dumps({"type": "text", "text": "中" * (MAX_MESSAGE_BYTES // 3 + 10)}, ensure_ascii=False),
            json.dumps({"type": "session.start", "user_id": rng.choice(["alice\n", "..\n", "a" * 64 + "\n"])}),
        ])
    # valid messages, interleaved (a real turn now and then: each costs an agent turn and a memory write)
    if rng.random() < 0.1:
        return json.dumps({"type": "text", "text": f"fuzz {rng.randrange(1000)}"})
    return rng.choice([json.dumps({"type": "interrupt"}),
                       json.dumps({"type": "session.start", "user_id": "again"}),
                       json.dumps({"type": "session.end"}),
                       json.dumps({"type": "text", "text": "  "})])


def _ends_session(frame: str | bytes) -> bool:
    """Whether the server will read ``frame`` as session.end (the same parser decides)."""
    if isinstance(frame, bytes):
        return False
    try:
        return isinstance(parse_client_message(frame), SessionEnd)
    except ProtocolError:
        return False


async def _answered(client: VoiceClient, text: str, timeout: float) -> bool:  # noqa: ASYNC109 - a deadline, not a scope
    """Whether a complete reply to ``text`` arrives within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["text"] == f"You said: {text}" and not e["interrupted"] for e in client.events("response.done")):
            return True
        await asyncio.sleep(0.05)
    return False


async def _fuzz_worker(url: str, worker: int, n: int, counts: dict[str, int]) -> None:
    rng = random.Random(FUZZ_SEED + worker)
    client: VoiceClient | None = None
    sent = 0
    while sent < n:
        if client is None or client.ws.close_code is not None:
            if client is not None:
                counts["errors"] += len(client.events("error"))
                counts["closed"] += 1
                await client.close()
            client = await VoiceClient.open(url, f"fuzz-{worker}", audio_output=False)
            assert client.ready["type"] == "session.ready"
            counts["sessions"] += 1
        frame = random_frame(rng)
        try:
            await client.ws.send(frame)
        except ConnectionClosed:
            continue
        sent += 1
        counts["inputs"] += 1
        if _ends_session(frame):  # frames after it would never be read: the server must close this session
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait_for(client.ws.wait_closed(), 60)
            assert client.ws.close_code is not None, "session.end did not close the session"
    assert client is not None
    if client.ws.close_code is not None:
        await client.close()
        client = await VoiceClient.open(url, f"fuzz-{worker}", audio_output=False)
    # Every frame was handled: the session answers a valid turn.
    await client.say_text(f"last one {worker}")
    assert await _answered(client, f"last one {worker}", 120), f"worker {worker}: no answer after the fuzz"
    counts["errors"] += len(client.events("error"))
    await client.close()


@pytest.mark.slow
async def test_websocket_fuzz_no_server_crash_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm, caplog):
    caplog.set_level(logging.WARNING)
    counts = {"inputs": 0, "sessions": 0, "errors": 0, "closed": 0}
    workers = 8
    started = time.monotonic()
    async with running_server(make_config(), embedder, fake_speech_engines, max_message_bytes=MAX_MESSAGE_BYTES,
                              max_turns_per_minute=100000) as srv:
        await asyncio.gather(*(_fuzz_worker(srv.ws_url, w, FUZZ_INPUTS // workers, counts) for w in range(workers)))
        # The server is still up: a new session answers a text turn.
        after = await VoiceClient.open(srv.ws_url, "after-fuzz", audio_output=False)
        await after.say_text("still alive?")
        assert (await after.wait_for("response.done", timeout=60))["text"] == "You said: still alive?"
        await after.close()
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() for r in crashes]
    assert counts["inputs"] == FUZZ_INPUTS // workers * workers
    print(f"\nWebSocket fuzz: {counts['inputs']} inputs, {counts['sessions']} sessions "
          f"({counts['closed']} closed by session.end or the server), {counts['errors']} error events, 0 crashes, "
          f"{time.monotonic() - started:.1f} s")
