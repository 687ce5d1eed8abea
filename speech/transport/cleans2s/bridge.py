"""CleanS2S compatibility: CleanS2S's web front end talks to Parley unchanged (``--cleans2s_compat``).

CleanS2S uses two WebSockets per browser: the browser sends JSON on one (``--recv_port``,
9001) and receives JSON on the other (``--send_port``, 9002); see docs/cleans2s.md and the
end of docs/protocol.md. Nothing here runs a pipeline: :class:`CleanS2SBridge` is the
:class:`~speech.voice.link.ClientLink` of a :class:`~speech.voice.session.VoiceSession` (the same
session class as ``/ws``: VAD, ASR, agent graph, memory, TTS, barge-in) and translates both ways:

* 9001 ``audio_input`` (base64 Float32 at 16 kHz) -> int16 PCM for the session;
  ``user_input`` -> typed input (``"new topic"`` -> interrupt, then the short-term
  conversation is cleared). Every 9001 message gets one JSON reply, as CleanS2S does:
  ``{"return_info": "VAD detected"}`` when it started a user utterance (the session's
  ``vad.start``), else ``{"placeholder": ""}`` (with an ``error`` code if it was unusable).
* typed session events -> 9002 ``{"question_text", "answer_text", "answer_audio", "end_flag",
  "user_input_count", "uid"}`` with the reply audio resampled to 16 kHz int16.

The counter: the browser drops every 9002 message whose ``user_input_count`` is not its own
counter, which goes up on each ``return_info`` it receives and each ``user_input`` it sends.
The bridge counts the same events, and stamps every message of a reply with the count of the
turn that asked for it; so once the user barges in, what is left of the old reply is dropped
by the browser as well as stopped here.

Pairing the two sockets of a browser, and the sockets themselves, are in
:mod:`speech.transport.cleans2s.endpoint` and :mod:`speech.transport.cleans2s.pairing`. A pair lives and dies together.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agent.conversation import Conversation
from agent.text_safety import replace_lone_surrogates
from speech.audio import PcmResampler
from speech.protocol import (
    ErrorEvent,
    Interrupt,
    ResponseAudioEnd,
    ResponseAudioStart,
    ResponseDone,
    ResponseTextDelta,
    ServerEvent,
    Suggestions,
    TextInput,
    TranscriptFinal,
    VadStart,
)
from speech.text import join_pieces
from speech.transport.cleans2s.messages import RATE, CompatError, Inbound, encode_pcm16, parse_inbound, quietest_cut
from speech.voice.chunker import SentenceChunker, speech_units
from speech.voice.link import AudioIn, ClientInput, LinkClosed

log = logging.getLogger(__name__)

VAD_DETECTED = {"return_info": "VAD detected"}
NEW_TOPIC = "new topic"
END_WAIT_S = 4.0
"""With follow-up suggestions on, the ``end_flag`` message waits this long for them: the
front end shows suggestions only if they arrive before the end message is played."""
END_SILENCE = np.zeros(RATE // 100, dtype=np.int16)
"""The audio of the ``end_flag`` message: 10 ms of silence (an empty ``answer_audio`` would make
the front end read the message as suggestions; the reply's own audio is never held back for it)."""
CLIP_MAX = RATE // 4
CLIP_MIN = RATE // 8
"""Reply audio goes out in clips of 1/8 to 1/4 s, cut at the quietest 10 ms. The front end plays
each message as a separate clip, with a small gap between clips: 40 ms frames would stutter.
Clips stay under the 0.3 s that reply audio is sent ahead of real time, so the front end's
queue never runs dry."""
SECONDS_PER_UNIT = 0.3
"""Estimated speaking time of one word (0.6 of it per Han character), a little quicker than
the TTS voices speak, for pacing ``answer_text`` (see :meth:`CleanS2SBridge._send_answer`)."""
MAX_TURNS_KEPT = 16
RESUME_FOR_S = 600.0
"""A browser that reconnects with the same uid within this time keeps its count and conversation."""


@dataclass
class _Turn:
    """What the bridge tracks for one reply on its way to the browser."""

    count: int
    question: str = ""
    question_sent: bool = False
    chunker: SentenceChunker = field(default_factory=SentenceChunker)
    pieces: list[str] = field(default_factory=list)
    """Sentences written but not yet shown."""
    sent_samples: int = 0
    text_due: int = 0
    """Audio (samples sent) after which the next sentence may be shown."""
    resampler: PcmResampler | None = None
    buffer: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    """Reply audio (16 kHz) not yet sent."""
    done: bool = False
    end_sent: bool = False
    end_timer: asyncio.Task[None] | None = None


class CleanS2SBridge:
    """A 9001 + 9002 pair as one session's :class:`~speech.voice.link.ClientLink`."""

    def __init__(self, recv_ws: ServerConnection, send_ws: ServerConnection, uid: str, count: int = 0,
                 wait_for_suggestions: bool = False, max_bytes: int | None = None) -> None:
        self.recv_ws = recv_ws
        self.send_ws = send_ws
        self.uid = uid
        self.count = count
        """The browser's ``user_input_count``, kept in step with it."""
        self.conv: Conversation | None = None
        """The session's conversation (cleared on "new topic")."""
        self.browser_playing = False
        """What the browser last said about its playback (informational: the session knows when it speaks)."""
        self.wait_for_suggestions = wait_for_suggestions
        self.max_bytes = max_bytes
        """Largest 9001 frame accepted (``--max_message_bytes``); larger ones get ``message_too_large``."""
        self._first: str | bytes | None = None
        self._queue: deque[ClientInput] = deque()
        self._answered = True
        self._clear_topic = False
        self._turns: OrderedDict[str, _Turn] = OrderedDict()
        self._audio_turn: _Turn | None = None
        self._closed = False

    # --- browser -> session --------------------------------------------------------

    def feed_first(self, raw: str | bytes) -> None:
        """The message that started the session (already read), handled as the first one."""
        self._first = raw

    async def receive(self) -> ClientInput:
        """The next input for the session: int16 PCM, typed text, or an interrupt."""
        while True:
            if not self._answered:  # the session is done with the last message: reply to it
                self._answered = True
                await self._reply({"placeholder": ""})
            if self._clear_topic:  # after the interrupt sent for "new topic" has been handled
                self._clear_topic = False
                if self.conv is not None:
                    self.conv.clear()
            if self._queue:
                return self._queue.popleft()
            if self._first is not None:
                raw, self._first = self._first, None
            else:
                try:
                    raw = await self.recv_ws.recv()
                except ConnectionClosed:
                    raise LinkClosed from None
            self._answered = False
            try:
                message = parse_inbound(raw, self.max_bytes)
            except CompatError as exc:
                self._answered = True
                await self._reply({"placeholder": "", "error": exc.code})
                continue
            if message.uid != self.uid:
                self._answered = True
                await self._reply({"placeholder": "", "error": "uid_mismatch"})
                continue
            self._queue.extend(await self._translate(message))

    async def _translate(self, message: Inbound) -> list[ClientInput]:
        if message.kind == "audio":
            if message.is_playing is not None:
                self.browser_playing = message.is_playing
            assert message.audio is not None
            return [AudioIn(message.audio.tobytes())] if message.audio.size else []
        self.count += 1  # the browser counts every user_input it sends
        await self._flush_ends()
        text = message.text
        if text == NEW_TOPIC:
            self._clear_topic = True
            return [Interrupt()]
        if not text.strip():
            return [Interrupt()]  # the browser moved on; nothing to answer
        return [TextInput(text)]

    async def _reply(self, obj: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.recv_ws.send(json.dumps(obj))

    # --- session -> browser --------------------------------------------------------

    async def send_audio(self, pcm: bytes) -> None:
        """Reply audio from the session, resampled to 16 kHz and sent in clips."""
        await self._on_audio(pcm)

    async def send_event(self, ev: ServerEvent) -> None:
        """An event from the session, translated for the browser (kinds CleanS2S has no use for are dropped)."""
        if isinstance(ev, VadStart):
            self.count += 1
            self._answered = True  # this audio message is answered with return_info
            await self._reply(VAD_DETECTED)
            await self._flush_ends()
        elif isinstance(ev, TranscriptFinal):
            turn = self._turn(ev.turn_id, create=True)
            assert turn is not None
            turn.question = ev.text
        elif isinstance(ev, ResponseTextDelta):
            if (turn := self._turn(ev.turn_id)) is not None:
                turn.pieces.extend(turn.chunker.push(ev.delta))
        elif isinstance(ev, ResponseAudioStart):
            self._audio_turn = self._turn(ev.turn_id)
            if self._audio_turn is not None:
                self._audio_turn.resampler = PcmResampler(ev.sample_rate, RATE)
        elif isinstance(ev, ResponseAudioEnd):
            turn = self._turn(ev.turn_id)
            if turn is not None and turn.resampler is not None:
                flushed = turn.resampler.process(np.zeros(0, dtype=np.int16), last=True)
                turn.resampler = None
                await self._send_clips(turn, flushed, final=True)
            self._audio_turn = None
        elif isinstance(ev, ResponseDone):
            await self._on_done(ev)
        elif isinstance(ev, Suggestions):
            await self._on_suggestions(ev)
        elif isinstance(ev, ErrorEvent):
            log.debug("session error for uid %s: %s", self.uid, ev.code)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close both sockets (the session asks on idle timeout)."""
        self._closed = True
        for ws in (self.recv_ws, self.send_ws):
            with contextlib.suppress(Exception):
                await ws.close(code, reason)

    def shutdown(self) -> None:
        """Stop the timers (the session has ended)."""
        self._closed = True
        for turn in self._turns.values():
            if turn.end_timer is not None:
                turn.end_timer.cancel()

    def _turn(self, turn_id: str, create: bool = False) -> _Turn | None:
        turn = self._turns.get(turn_id)
        if turn is None and create:
            turn = self._turns[turn_id] = _Turn(self.count)
            while len(self._turns) > MAX_TURNS_KEPT:
                _, old = self._turns.popitem(last=False)
                if old.end_timer is not None:
                    old.end_timer.cancel()
        return turn

    async def _on_audio(self, frame: bytes) -> None:
        turn = self._audio_turn
        if turn is None or turn.resampler is None or turn.end_sent:
            return
        await self._send_clips(turn, turn.resampler.process(frame))

    async def _send_clips(self, turn: _Turn, pcm: np.ndarray, final: bool = False) -> None:
        """Buffer reply audio and send it in clips (all of it when ``final``)."""
        turn.buffer = np.concatenate([turn.buffer, pcm])
        while turn.buffer.size >= CLIP_MAX and not turn.end_sent:
            cut = quietest_cut(turn.buffer, CLIP_MIN, CLIP_MAX)
            clip, turn.buffer = turn.buffer[:cut], turn.buffer[cut:]
            await self._send_answer(turn, clip, end=False)
        if final and turn.buffer.size and not turn.end_sent:
            clip, turn.buffer = turn.buffer, turn.buffer[:0]
            await self._send_answer(turn, clip, end=False)

    async def _on_done(self, ev: ResponseDone) -> None:
        turn = self._turn(ev.turn_id)
        if turn is None or turn.done:
            return
        turn.done = True
        turn.pieces.extend(turn.chunker.flush())
        if ev.interrupted:
            turn.pieces.clear()  # not heard: not shown
            turn.resampler, turn.buffer = None, turn.buffer[:0]
        if self._audio_turn is turn:
            self._audio_turn = None
        if not turn.question_sent and not turn.pieces and ev.text and not ev.interrupted:
            turn.pieces.append(ev.text)  # nothing was spoken (e.g. synthesis failed): show the text
        if self.wait_for_suggestions and not ev.interrupted and ev.text and turn.count == self.count:
            turn.end_timer = asyncio.get_running_loop().create_task(self._end_later(turn))
        else:
            await self._send_end(turn)

    async def _end_later(self, turn: _Turn) -> None:
        await asyncio.sleep(END_WAIT_S)
        await self._send_end(turn)

    async def _on_suggestions(self, ev: Suggestions) -> None:
        turn = self._turn(ev.turn_id)
        items = ev.items
        if turn is None or turn.end_sent or not items:
            return  # too late: the front end would show them after the next reply
        questions = {f"q{i + 1}": str(q) for i, q in enumerate(items[:3])}
        await self._send_json({"question_text": "", "answer_text": questions, "answer_audio": "",
                               "end_flag": False, "user_input_count": turn.count, "uid": self.uid})
        await self._send_end(turn)

    async def _flush_ends(self) -> None:
        """The browser moved on: end messages still waiting for suggestions go now."""
        for turn in list(self._turns.values()):
            if turn.done and not turn.end_sent:
                await self._send_end(turn)

    async def _send_end(self, turn: _Turn) -> None:
        if turn.end_sent:
            return
        turn.end_sent = True
        if turn.end_timer is not None and turn.end_timer is not asyncio.current_task():
            turn.end_timer.cancel()
        await self._send_answer(turn, END_SILENCE, end=True)

    async def _send_answer(self, turn: _Turn, pcm: np.ndarray, end: bool) -> None:
        """One 9002 message.

        The front end shows ``answer_text`` when it starts playing the message's audio, so sentences
        are paced like speech: the audio stream does not say where a sentence starts, so a sentence
        is attached to the first audio message after the previous sentence's estimated speaking
        time has been sent (never before its text exists; all that is left goes with the end message).
        """
        question = ""
        if not turn.question_sent:
            turn.question_sent = True
            question = turn.question
        text = ""
        if end:
            text, turn.pieces = join_pieces(turn.pieces), []
        elif turn.pieces and turn.sent_samples >= turn.text_due:
            text = turn.pieces.pop(0)
            turn.text_due = turn.sent_samples + int(speech_units(text) * SECONDS_PER_UNIT * RATE)
        turn.sent_samples += len(pcm)
        await self._send_json({"question_text": question, "answer_text": text, "answer_audio": encode_pcm16(pcm),
                               "end_flag": end, "user_input_count": turn.count, "uid": self.uid})

    async def _send_json(self, obj: dict[str, Any]) -> None:
        if self._closed:
            return
        with contextlib.suppress(ConnectionClosed):
            await self.send_ws.send(replace_lone_surrogates(json.dumps(obj, ensure_ascii=False)))
