"""CleanS2S compatibility (``--cleans2s_compat``): a client that behaves like CleanS2S's web front end.

The client follows the two-socket protocol as the front end implements it: it sends base64
Float32 audio at 16 kHz in 1024-sample messages with ``is_playing`` on one socket, receives
answers on the other, and keeps the same counter (up one per ``return_info`` received and per
``user_input`` sent), dropping every answer whose ``uid`` or ``user_input_count`` is not its
own. Real VAD, Whisper and TTS; the fake LLM is the only stand-in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.fakes.openai_server import Reply, echo
from tests.server_harness import RunningServer, running_server
from tests.voice_client import VoiceClient, silence

pytestmark = pytest.mark.slow

CHUNK = 1024
RATE = 16000
LONG_REPLY = ("Well, that is a long story. It started many years ago in a small village by the sea. "
              "Every morning the fishermen went out before dawn, and every evening they came back with stories. "
              "Some of those stories were true, and some were not, but all of them were told with great care.")
FOLLOW_UPS = ["How tall is it?", "Who built it?", "Can I go up to the top?"]


@dataclass
class Got:
    """A message and when it arrived."""

    at: float
    data: dict[str, Any]


@dataclass
class Browser:
    """CleanS2S's ChatSocket, as far as the protocol goes."""

    send_ws: ClientConnection
    """The socket the browser sends on (the server's 9001)."""
    recv_ws: ClientConnection
    """The socket the browser receives on (the server's 9002)."""
    uid: str
    counter: int = 0
    replies: list[Got] = field(default_factory=list)
    """Everything received on the send socket."""
    answers: list[Got] = field(default_factory=list)
    """Everything received on the receive socket."""
    accepted: list[Got] = field(default_factory=list)
    """What the front end would act on (uid and counter match)."""
    sent: int = 0
    playing_until: float = 0.0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def open(cls, srv: RunningServer) -> Browser:
        options = srv.server.options
        send_ws = await connect(f"ws://127.0.0.1:{options.recv_port}", max_size=None)
        recv_ws = await connect(f"ws://127.0.0.1:{options.send_port}", max_size=None)
        browser = cls(send_ws, recv_ws, str(uuid.uuid4()))
        loop = asyncio.get_running_loop()
        browser._tasks = [loop.create_task(browser._read_replies()), loop.create_task(browser._read_answers())]
        return browser

    @property
    def playing(self) -> bool:
        return time.perf_counter() < self.playing_until

    async def _read_replies(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.send_ws:
                data = json.loads(message)  # the front end parses every reply as JSON
                self.replies.append(Got(time.perf_counter(), data))
                if data.get("return_info"):
                    self.counter += 1
                    self.playing_until = 0.0  # playback stops
                self._changed.set()

    async def _read_answers(self) -> None:
        with contextlib.suppress(Exception):
            async for message in self.recv_ws:
                now = time.perf_counter()
                data = json.loads(message)
                self.answers.append(Got(now, data))
                if data.get("uid") == self.uid and int(data["user_input_count"]) == self.counter:
                    self.accepted.append(Got(now, data))
                    if data["answer_audio"]:
                        seconds = len(pcm_of(data)) / RATE
                        self.playing_until = max(self.playing_until, now) + seconds
                self._changed.set()

    async def send(self, obj: Any) -> None:
        await self.send_ws.send(obj if isinstance(obj, str | bytes) else json.dumps(obj))
        self.sent += 1

    async def user_input(self, text: str) -> None:
        await self.send({"type": "user_input", "uid": self.uid, "text": text})
        self.counter += 1

    async def stream(self, pcm: np.ndarray, speed: float = 1.0) -> float:
        """Send int16 audio as the microphone would: 1024 Float32 samples per message, paced."""
        start = time.perf_counter()
        for i, offset in enumerate(range(0, len(pcm), CHUNK)):
            delay = start + i * CHUNK / RATE / speed - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            floats = (pcm[offset: offset + CHUNK].astype(np.float32) / 32768.0).astype("<f4")
            await self.send({"type": "audio_input", "uid": self.uid,
                             "audio": base64.b64encode(floats.tobytes()).decode(),
                             "is_playing": "true" if self.playing else "false"})
        return time.perf_counter()

    def vad_detected(self) -> list[Got]:
        return [r for r in self.replies if r.data.get("return_info")]

    async def wait(self, predicate: Any, timeout: float = 60.0, what: str = "") -> Any:  # noqa: ASYNC109
        deadline = time.perf_counter() + timeout
        while not (found := predicate()):
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{what or predicate} within {timeout} s; accepted: "
                                   f"{[summary(g.data) for g in self.accepted]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return found

    async def wait_end(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait for the accepted end_flag message of answer ``count``; return that answer's messages."""
        await self.wait(lambda: any(g.data["end_flag"] and g.data["user_input_count"] == count
                                    for g in self.accepted), timeout, f"end of answer {count}")
        return [g.data for g in self.accepted if g.data["user_input_count"] == count]

    async def close(self) -> None:
        for ws in (self.send_ws, self.recv_ws):
            with contextlib.suppress(Exception):
                await ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def pcm_of(data: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(data["answer_audio"], validate=True)
    assert len(raw) % 2 == 0
    return np.frombuffer(raw, dtype="<i2")


def summary(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "answer_audio": len(data["answer_audio"])}


def answer_text(messages: list[dict[str, Any]]) -> str:
    return " ".join(m["answer_text"] for m in messages if isinstance(m["answer_text"], str) and m["answer_text"])


def check_answer(messages: list[dict[str, Any]], count: int, uid: str) -> None:
    """One answer as the front end sees it: question first, audio throughout, end_flag last."""
    audio = [m for m in messages if m["answer_audio"]]
    assert audio and all(m["user_input_count"] == count and m["uid"] == uid for m in messages)
    assert audio[0]["question_text"], "the transcript comes with the first message"
    assert not any(m["question_text"] for m in audio[1:])
    assert [m["end_flag"] for m in audio].count(True) == 1 and audio[-1]["end_flag"] is True
    clips = [len(pcm_of(m)) for m in audio[:-1]]  # the last one is the end_flag's 10 ms
    assert max(clips) <= RATE // 4 and min(clips[:-1] or [RATE]) >= RATE // 8, "clips of 1/8 to 1/4 s"
    samples = sum(len(pcm_of(m)) for m in audio)
    assert samples > RATE // 2, "at least half a second of 16 kHz reply audio"
    assert np.abs(np.concatenate([pcm_of(m) for m in audio])).max() > 1000, "real sound, not silence"


def with_silence(speech: np.ndarray, before: float = 0.3, after: float = 1.5) -> np.ndarray:
    return np.concatenate([silence(before), speech, silence(after)])


def compat(**options: object) -> dict[str, object]:
    return {"cleans2s_compat": True, "recv_port": 0, "send_port": 0, **options}


async def test_spoken_and_typed_turns_and_new_topic(make_config, embedder, speech_engines, spoken, fake_llm):
    async with running_server(make_config(), embedder, speech_engines, **compat()) as srv:
        browser = await Browser.open(srv)
        await browser.stream(with_silence(spoken("What is the capital of France?", "en")))
        first = await browser.wait_end(1)
        assert len(browser.vad_detected()) == 1 and browser.counter == 1
        check_answer(first, 1, browser.uid)
        assert "france" in first[0]["question_text"].lower()
        assert answer_text(first).startswith("You said:") and "France" in answer_text(first)
        # Every 9001 message gets one JSON reply: return_info once, placeholders otherwise.
        await browser.wait(lambda: len(browser.replies) >= browser.sent - 1, 10, "a reply per message")
        assert all(r.data == {"placeholder": ""} for r in browser.replies if not r.data.get("return_info"))

        await browser.user_input("Tell me about Paris")
        second = await browser.wait_end(2)
        check_answer(second, 2, browser.uid)
        assert second[0]["question_text"] == "Tell me about Paris"
        assert "You said: Tell me about Paris" in answer_text(second)

        await browser.user_input("new topic")  # the front end counts it too
        await browser.user_input("What did I just ask?")
        assert browser.counter == 4
        fourth = await browser.wait_end(4)
        check_answer(fourth, 4, browser.uid)
        request = next(r for r in fake_llm.requests if r["messages"][-1]["content"] == "What did I just ask?")
        dialogue = [m for m in request["messages"] if m["role"] in ("user", "assistant")]
        assert dialogue == [{"role": "user", "content": "What did I just ask?"}], "new topic clears the history"
        before = next(r for r in fake_llm.requests if r["messages"][-1]["content"] == "Tell me about Paris")
        assert any("France" in m["content"] for m in before["messages"] if m["role"] == "user"), \
            "history was kept before the new topic"
        assert srv.server.health()["sessions"] == 1
        await browser.close()


def long_story(request: dict) -> Reply:
    last = request["messages"][-1]["content"].lower()
    return Reply(text=LONG_REPLY, token_interval_s=0.02) if "story" in last else echo(request)


async def test_barge_in_while_playing(make_config, embedder, speech_engines, spoken, fake_llm):
    fake_llm.default = long_story
    async with running_server(make_config(), embedder, speech_engines, **compat()) as srv:
        browser = await Browser.open(srv)
        await browser.user_input("Tell me a long story")
        await browser.wait(lambda: any(g.data["answer_audio"] for g in browser.accepted), 60, "story audio")
        await browser.stream(silence(1.5))  # the microphone keeps sending while the story plays
        assert browser.playing
        await browser.stream(with_silence(spoken("Stop, what time is it?", "en"), before=0.0))
        assert len(browser.vad_detected()) == 1 and browser.counter == 2
        barge_at = browser.vad_detected()[0].at
        # The interrupted reply still ends with its end_flag message (with its own count: the browser drops it).
        story = [g for g in browser.answers if g.data["user_input_count"] == 1]
        ends = [g for g in story if g.data["end_flag"]]
        assert len(ends) == 1
        assert ends[0].at - barge_at < 1.0
        last_audio = max(g.at for g in story)
        assert last_audio - barge_at < 0.5, "the story stops at once"
        heard = answer_text([g.data for g in browser.accepted if g.data["user_input_count"] == 1])
        assert heard and len(heard) < len(LONG_REPLY)
        second = await browser.wait_end(2)
        check_answer(second, 2, browser.uid)
        assert "time" in second[0]["question_text"].lower()
        history = next(r["messages"] for r in fake_llm.requests
                       if r["messages"][-1]["role"] == "user" and "time" in r["messages"][-1]["content"].lower())
        kept = [m["content"] for m in history if m["role"] == "assistant"]
        assert kept and len(kept[-1]) < len(LONG_REPLY) * 0.8, "history keeps what was heard"
        await browser.close()


def with_follow_ups(request: dict) -> Reply:
    system = " ".join(m["content"] for m in request["messages"] if m["role"] == "system")
    if "follow-ups" in system:
        return Reply(text="1. " + FOLLOW_UPS[0] + "\n2. " + FOLLOW_UPS[1] + "\n3. " + FOLLOW_UPS[2])
    return echo(request)


async def test_follow_up_suggestions_on_both_protocols(make_config, embedder, speech_engines, fake_llm):
    fake_llm.default = with_follow_ups
    async with running_server(make_config(), embedder, speech_engines, **compat(suggest_followups=True)) as srv:
        browser = await Browser.open(srv)
        await browser.user_input("Tell me about the Eiffel Tower")
        messages = await browser.wait_end(1)
        kinds = ["suggestions" if m["answer_audio"] == "" else "end" if m["end_flag"] else "audio" for m in messages]
        assert kinds.count("suggestions") == 1 and kinds[-1] == "end"
        assert kinds.index("suggestions") > kinds.index("audio"), "suggestions come after the spoken reply"
        suggestion = next(m for m in messages if m["answer_audio"] == "")
        assert suggestion["answer_text"] == {"q1": FOLLOW_UPS[0], "q2": FOLLOW_UPS[1], "q3": FOLLOW_UPS[2]}
        check_answer([m for m in messages if m["answer_audio"]], 1, browser.uid)
        await browser.close()

        client = await VoiceClient.open(srv.ws_url, "suggested", audio_output=False)
        await client.say_text("Tell me about the Eiffel Tower")
        done = await client.wait_for("response.done")
        event = await client.wait_for("suggestions", timeout=20)
        assert event["turn_id"] == done["turn_id"] and event["items"] == FOLLOW_UPS
        await client.close()


async def test_bad_input_on_both_sockets_leaves_other_pairs_alone(make_config, embedder, speech_engines, fake_llm):
    async with running_server(make_config(), embedder, speech_engines, **compat()) as srv:
        bad = await Browser.open(srv)
        good = await Browser.open(srv)
        garbage: list[Any] = [
            "not json", "[1, 2]", "null", "[" * 5000, b"\x00\x01\x02",
            {"type": "audio_input", "audio": ""},  # no uid
            {"type": "audio_input", "uid": bad.uid, "audio": 123},
            {"type": "audio_input", "uid": bad.uid, "audio": "!!not base64!!"},
            {"type": "audio_input", "uid": bad.uid, "audio": base64.b64encode(b"\x01\x02\x03\x04\x05").decode()},
            {"type": "audio_input", "uid": bad.uid, "audio": base64.b64encode(
                np.array([np.nan, np.inf, -np.inf, 7.0], dtype="<f4").tobytes()).decode(), "is_playing": 3},
            {"type": "user_input", "uid": bad.uid, "text": 5},
            {"type": "user_input", "uid": ["x"], "text": "hi"},
            {"type": "session_settings", "uid": bad.uid},
            {"type": "mystery"},
        ]
        await bad.send({"type": "user_input", "uid": "bad uid with spaces", "text": "hi"})  # not a usable user id
        for item in garbage:  # before the session has started
            await bad.send(item)
        await bad.user_input("Hello there")  # the session started with the first usable message
        for item in garbage:  # and while it runs
            await bad.send(item)
        await bad.send({"type": "user_input", "uid": str(uuid.uuid4()), "text": "someone else"})
        for junk in ("junk", b"\xff" * 7, json.dumps({"type": "user_input", "uid": bad.uid, "text": "x"})):
            await bad.recv_ws.send(junk)  # browsers never send on 9002: ignored
        await good.user_input("What is two plus two?")
        answer = await good.wait_end(1)
        check_answer(answer, 1, good.uid)
        assert "two plus two" in answer_text(answer)
        first = await bad.wait_end(1)
        assert "Hello there" in answer_text(first)
        await bad.wait(lambda: len(bad.replies) >= 2 * len(garbage) + 3, 10, "a reply to every message")
        assert all(r.data.get("placeholder") == "" for r in bad.replies), "only harmless JSON replies"
        errors = {r.data.get("error") for r in bad.replies}
        assert {"bad_json", "bad_message", "bad_audio", "unknown_type", "invalid_user_id", "uid_mismatch"} <= errors
        assert not any(g.data["uid"] == bad.uid for g in good.answers)
        assert not any(g.data["uid"] == good.uid for g in bad.answers)
        # Both sessions are still alive and answer again.
        await bad.user_input("Still there?")
        await good.user_input("And now?")
        assert "Still there?" in answer_text(await bad.wait_end(2))
        assert "And now?" in answer_text(await good.wait_end(2))
        assert srv.server.health()["sessions"] == 2
        await bad.close()
        await good.close()
        await asyncio.sleep(0.3)
        assert srv.server.health()["sessions"] == 0
