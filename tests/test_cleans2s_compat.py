"""CleanS2S compatibility (``--cleans2s_compat``): a client that behaves like CleanS2S's web front end.

The client follows the two-socket protocol as the front end implements it: it sends base64
Float32 audio at 16 kHz in 1024-sample messages with ``is_playing`` on one socket, receives
answers on the other, and keeps the same counter (up one per ``return_info`` received and per
``user_input`` sent), dropping every answer whose ``uid`` or ``user_input_count`` is not its
own. Spoken turns use the real VAD, Whisper and TTS, with the fake LLM; the typed-only tests
(pairing, bad input, suggestions) run on the engine fakes (tests/support/engine_fakes.py) and
say so in their names.

:class:`Microphone` adds what CleanS2S's front end does on top (components/ChatSocket.ts,
useMicrophone.ts, Controls.tsx): the microphone sends for the whole call, zeros once muted by the
keyboard icon, with ``is_playing`` from the player; typed input and "new topic" are ``user_input``.
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
from websockets.exceptions import InvalidStatus

from speech.transport.cleans2s.endpoint import PAIR_SETTLE_S
from tests.support.fakes.openai_server import Reply, echo
from tests.support.in_process import RunningServer, running_server
from tests.support.voice_client import VoiceClient, silence

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
    async def open(cls, srv: RunningServer, query: str = "", settle: bool = True) -> Browser:
        """Open both sockets at once, as the front end does; with ``settle``, wait until the server has
        paired them (it pairs only once no other socket came from the same place for PAIR_SETTLE_S)."""
        options = srv.server.options
        send_ws, recv_ws = await asyncio.gather(connect(f"ws://127.0.0.1:{options.recv_port}/{query}", max_size=None),
                                                connect(f"ws://127.0.0.1:{options.send_port}/{query}", max_size=None))
        browser = cls(send_ws, recv_ws, str(uuid.uuid4()))
        loop = asyncio.get_running_loop()
        browser._tasks = [loop.create_task(browser._read_replies()), loop.create_task(browser._read_answers())]
        if settle:
            await asyncio.sleep(PAIR_SETTLE_S + 0.3)
            assert send_ws.close_code is None and recv_ws.close_code is None, "the server refused the pair"
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


@dataclass
class Microphone:
    """CleanS2S's microphone: a ScriptProcessor that sends 1024 samples every 64 ms for as long as the
    call lasts, whatever the user does. Muted (the keyboard icon) it sends zeros; every message says
    whether the front end is playing reply audio (``is_playing``)."""

    browser: Browser
    _speech: asyncio.Queue[np.ndarray] = field(default_factory=asyncio.Queue)
    _spoken: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    playing_frames: int = 0
    """Messages sent with ``is_playing`` true."""

    def start(self) -> Microphone:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def say(self, pcm: np.ndarray) -> None:
        """Speak ``pcm`` into the microphone; returns when its last sample has been sent."""
        self._spoken.clear()
        await self._speech.put(pcm)
        await self._spoken.wait()

    async def _run(self) -> None:
        start, sent, pending = time.perf_counter(), 0, np.zeros(0, dtype=np.int16)
        while True:
            if not pending.size and not self._speech.empty():
                pending = self._speech.get_nowait()
            frame, pending = pending[:CHUNK], pending[CHUNK:]
            if frame.size and not pending.size:
                self._spoken.set()
            frame = np.concatenate([frame, np.zeros(CHUNK - frame.size, dtype=np.int16)])
            floats = (frame.astype(np.float32) / 32768.0).astype("<f4")
            playing = self.browser.playing
            self.playing_frames += playing
            await self.browser.send({"type": "audio_input", "uid": self.browser.uid,
                                     "audio": base64.b64encode(floats.tobytes()).decode(),
                                     "is_playing": "true" if playing else "false"})
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * CHUNK / RATE - time.perf_counter()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


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


async def test_follow_up_suggestions_on_both_protocols_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    fake_llm.default = with_follow_ups
    async with running_server(make_config(), embedder, fake_speech_engines, **compat(suggest_followups=True)) as srv:
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


async def test_bad_input_on_both_sockets_leaves_other_pairs_alone_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    async with running_server(make_config(), embedder, fake_speech_engines, **compat()) as srv:
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
            # Found by the outside attack (issue 16): each closed both sockets, or ran a turn that could not be sent.
            f'{{"type": "user_input", "uid": "{bad.uid}", "text": "hi", "n": {"9" * 5000}}}',
            {"type": "user_input", "uid": bad.uid, "text": "\ud800 lone half of a pair"},
            {"type": "user_input", "uid": bad.uid, "text": "x" * (3 << 19)},  # 1.5 MiB, over --max_message_bytes
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
        assert {"bad_json", "bad_message", "bad_audio", "unknown_type", "invalid_user_id", "uid_mismatch",
                "bad_text", "message_too_large"} <= errors
        assert not any("lone half" in str(r["messages"]) for r in fake_llm.requests), "refused before the agent"
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


# --- the front end's own message sequence (issue 16, defect 7) ----------------------------------

def stories(request: dict) -> Reply:
    last = request["messages"][-1]["content"].lower()
    return Reply(text=LONG_REPLY, token_interval_s=0.02) if "story" in last else echo(request)


def answers_of(browser: Browser, count: int) -> list[dict[str, Any]]:
    return [g.data for g in browser.accepted if g.data["user_input_count"] == count]


async def test_typed_question_just_after_a_spoken_one_gets_its_own_answer(make_config, embedder, speech_engines,
                                                                          spoken, fake_llm):
    # The microphone runs all along, as in the front end. The user asks a long spoken question, then
    # clicks the keyboard icon (muted: zeros keep coming) and sends a typed one while the spoken one
    # is still being transcribed. The typed question supersedes it and gets its own answer.
    async with running_server(make_config(), embedder, speech_engines, **compat()) as srv:
        browser = await Browser.open(srv)
        mic = Microphone(browser).start()
        question = ("What is the capital of France? I would like to know about its history, its people, "
                    "its rivers and its famous buildings.")
        await mic.say(spoken(question, "en"))
        await browser.wait(lambda: browser.counter == 1, 10, "return_info for the spoken question")
        await asyncio.sleep(1.0)  # the end of the turn is confirmed at 0.8 s of silence; ASR is still running
        await browser.user_input("What is your name?")
        assert browser.counter == 2
        typed = await browser.wait_end(2)
        check_answer(typed, 2, browser.uid)
        assert typed[0]["question_text"] == "What is your name?"
        assert answer_text(typed) == "You said: What is your name?"
        await asyncio.sleep(1.5)  # nothing more comes under the typed question's count
        assert answers_of(browser, 2) == typed
        assert any(r["messages"][-1]["content"] == "What is your name?" for r in fake_llm.requests), \
            "the typed question reached the agent"
        await mic.stop()
        await browser.close()


async def test_front_end_sequence_spoken_typed_barge_in_and_new_topic(make_config, embedder, speech_engines,
                                                                      spoken, fake_llm):
    fake_llm.default = stories
    async with running_server(make_config(), embedder, speech_engines, **compat()) as srv:
        browser = await Browser.open(srv)
        mic = Microphone(browser).start()
        # 1. Spoken: a long story starts playing.
        await mic.say(spoken("Please tell me a long story.", "en"))
        await browser.wait(lambda: any(m["answer_audio"] and m["answer_text"] for m in answers_of(browser, 1)), 60,
                           "the spoken story playing")
        assert browser.counter == 1
        # 2. Typed while it plays (mic muted): the story stops, the typed question is answered.
        await browser.user_input("What is your name?")
        typed_at = time.perf_counter()
        typed = await browser.wait_end(2)
        check_answer(typed, 2, browser.uid)
        assert typed[0]["question_text"] == "What is your name?" and "You said: What is your name?" in \
            answer_text(typed)
        story = [g for g in browser.answers if g.data["user_input_count"] == 1]
        assert max(g.at for g in story) - typed_at < 1.0, "the story stopped at once"
        assert not any(g.data["user_input_count"] == 2 and "village" in str(g.data["answer_text"])
                       for g in browser.answers), "none of the story came under the typed question's count"
        # 3. Typed story, then the user speaks over it (barge-in; the front end says is_playing=true).
        await browser.user_input("Now tell me another story")
        await browser.wait(lambda: any(m["answer_audio"] and m["answer_text"] for m in answers_of(browser, 3)), 60,
                           "the typed story playing")
        assert browser.playing
        await mic.say(spoken("Stop, what time is it?", "en"))
        await browser.wait(lambda: browser.counter == 4, 10, "return_info for the barge-in")
        barged = await browser.wait_end(4)
        check_answer(barged, 4, browser.uid)
        assert "time" in barged[0]["question_text"].lower()
        assert mic.playing_frames > 0, "the microphone said is_playing=true while replies played"
        # 4. "new topic" (counted by the front end, never answered), then a typed question with no history.
        await browser.user_input("new topic")
        await browser.user_input("What did I just ask?")
        assert browser.counter == 6
        fresh = await browser.wait_end(6)
        check_answer(fresh, 6, browser.uid)
        request = next(r for r in fake_llm.requests if r["messages"][-1]["content"] == "What did I just ask?")
        assert [m for m in request["messages"] if m["role"] in ("user", "assistant")] == [
            {"role": "user", "content": "What did I just ask?"}], "new topic cleared the history"
        assert not answers_of(browser, 5), "new topic gets no answer"
        await mic.stop()
        await browser.close()


# --- pairing without guessing (issue 16, defect 1) ---------------------------------------------

async def listen(ws: ClientConnection) -> list[Any]:
    """Everything a socket receives until it closes."""
    got: list[Any] = []
    with contextlib.suppress(Exception):
        async for message in ws:
            got.append(message)
    return got


async def closed_with(ws: ClientConnection, timeout: float = 10.0) -> int | None:  # noqa: ASYNC109
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ws.wait_closed(), timeout)
    return ws.close_code


async def test_an_idle_receive_socket_never_gets_another_browsers_answers_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    async with running_server(make_config(), embedder, fake_speech_engines, **compat()) as srv:
        options = srv.server.options
        # An idle receive socket from the same address, opened just before a browser connects.
        idle = await connect(f"ws://127.0.0.1:{options.send_port}", max_size=None)
        idle_heard = asyncio.create_task(listen(idle))
        browser = await Browser.open(srv, settle=False)
        codes = [await closed_with(ws) for ws in (idle, browser.send_ws, browser.recv_ws)]
        assert codes == [4409, 4409, 4409], "three sockets from one place: nobody is paired, nobody guesses"
        await browser.close()
        # The attacker's socket opened between the browser's two sockets: the same.
        send_ws = await connect(f"ws://127.0.0.1:{options.recv_port}", max_size=None)
        wedge = await connect(f"ws://127.0.0.1:{options.send_port}", max_size=None)
        recv_ws = await connect(f"ws://127.0.0.1:{options.send_port}", max_size=None)
        wedge_heard = asyncio.create_task(listen(wedge))
        assert [await closed_with(ws) for ws in (send_ws, wedge, recv_ws)] == [4409, 4409, 4409]
        # A lone receive socket does not wait for the next browser: it is closed within the pairing window.
        lone = await connect(f"ws://127.0.0.1:{options.send_port}", max_size=None)
        opened = time.perf_counter()
        lone_heard = asyncio.create_task(listen(lone))
        assert await closed_with(lone) == 4404
        assert time.perf_counter() - opened < options.cleans2s_pair_window_s + 1.0
        # The browser reconnects (as ReconnectingWebSocket does) and is served; none of the others heard it.
        browser = await Browser.open(srv)
        await browser.user_input("my bank pin is 4321")
        answer = await browser.wait_end(1)
        assert "my bank pin is 4321" in answer_text(answer)
        for heard in (idle_heard, wedge_heard, lone_heard):
            assert await heard == [], "a socket that was never paired received something"
        await browser.close()


async def test_browsers_connecting_at_once_from_one_address_are_refused_or_told_apart_with_fake_engines(
        make_config, embedder, fake_speech_engines, fake_llm):
    async with running_server(make_config(), embedder, fake_speech_engines, **compat()) as srv:
        a, b = await asyncio.gather(Browser.open(srv, settle=False), Browser.open(srv, settle=False))
        codes = [await closed_with(ws) for ws in (a.send_ws, a.recv_ws, b.send_ws, b.recv_ws)]
        # Two browsers at once from one address cannot be told apart: every socket is refused (4409 while
        # ambiguous; one arriving after that finds no partner, 4404), and both browsers reconnect.
        assert set(codes) <= {4404, 4409} and 4409 in codes, codes
        assert not a.answers and not b.answers
        await a.close()
        await b.close()
        # With a per-browser secret in both addresses (?pair=...), they can connect at the very same moment.
        a, b = await asyncio.gather(Browser.open(srv, f"?pair={uuid.uuid4().hex}"),
                                    Browser.open(srv, f"?pair={uuid.uuid4().hex}"))
        await asyncio.gather(a.user_input("I am browser A"), b.user_input("I am browser B"))
        assert "I am browser A" in answer_text(await a.wait_end(1))
        assert "I am browser B" in answer_text(await b.wait_end(1))
        assert not any(g.data["uid"] == b.uid or "browser B" in str(g.data["answer_text"]) for g in a.answers)
        assert not any(g.data["uid"] == a.uid or "browser A" in str(g.data["answer_text"]) for g in b.answers)
        await a.close()
        await b.close()
        with pytest.raises(InvalidStatus) as refused:  # a pair key must look like a secret
            await connect(f"ws://127.0.0.1:{srv.server.options.recv_port}/?pair=short")
        assert refused.value.response.status_code == 400
