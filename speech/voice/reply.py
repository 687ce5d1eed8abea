"""One spoken reply: agent events -> text deltas -> sentence pieces -> TTS -> paced audio.

A reply may start speculatively, before the user's turn is confirmed. Until
:meth:`Reply.confirm` is called, everything it would tell the client is held
back, and nothing is recorded; :meth:`Reply.cancel` then drops it without a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from agent.conversation import Conversation
from agent.events import RouteChosen, SourcesFound, TextDelta, TurnDone, TurnResult
from agent.language import detect_language
from agent.runtime import Agent
from speech.engines.base import TTS
from speech.protocol import ResponseDone, ResponseTextDelta, Route, ServerEvent, Sources, error_event
from speech.voice import trace
from speech.voice.chunker import SentenceChunker
from speech.voice.link import ClientLink
from speech.voice.playout import Playout

log = logging.getLogger(__name__)

FILLER_AFTER_S = 0.7
FILLERS = {"en": "Let me look that up.", "zh": "我查一下。"}


@dataclass
class ReplyTiming:
    """Wall-clock marks (perf_counter seconds) used for the turn's metrics."""

    speech_end: float | None = None
    """When the user stopped speaking (None for typed input)."""
    confirmed: float | None = None
    asr_ms: float | None = None
    vad_end_ms: float | None = None
    tts_requested: float | None = None
    tts_first_audio: float | None = None


class AgentCommit(asyncio.Event):
    """The reply's commit as the agent sees it: set with it, and it tells the reply when the agent waits on it.

    The agent waits for the commit only to record the turn, once its answer is complete
    (``Agent.stream_turn``: the graph's ``remember`` step), so the answer's text is all there
    then. A speculative reply uses that to synthesize its last piece at once: without it, the
    piece the chunker holds until the text ends (often the whole of a one-sentence answer) was
    only spoken after the turn was confirmed, which put synthesis after the end-of-turn silence.
    """

    def __init__(self, on_wait: Callable[[], None]) -> None:
        super().__init__()
        self._on_wait: Callable[[], None] | None = on_wait

    async def wait(self) -> Literal[True]:
        """Wait until the turn is confirmed; the first wait on a speculative turn calls ``on_wait`` first."""
        on_wait, self._on_wait = self._on_wait, None
        if on_wait is not None and not self.is_set():
            on_wait()
        return await super().wait()


async def iterate_in_thread(make: Callable[[], Iterator[np.ndarray]], stop: threading.Event
                            ) -> Any:
    """Run a blocking generator in a worker thread; yield its items on the event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def pump() -> None:
        try:
            for item in make():
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
            loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
        except Exception as exc:  # handed to the event loop side
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

    worker = loop.run_in_executor(None, pump)
    try:
        while True:
            kind, value = await queue.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                break
    finally:
        # The worker stops after its current chunk; waiting for it would delay a barge-in.
        stop.set()
        worker.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)


@dataclass
class Reply:
    """A reply being produced for one user turn."""

    agent: Agent
    conv: Conversation
    user_text: str
    tts: TTS | None
    """The TTS engine, or None for a text-only session."""
    link: ClientLink
    output_sample_rate: int
    timing: ReplyTiming = field(default_factory=ReplyTiming)
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    commit: asyncio.Event = field(default_factory=asyncio.Event)
    result: TurnResult | None = None
    interrupted: bool = False
    suggest: Callable[[Reply], None] | None = None
    """Called once the reply has ended normally (after ``response.done``), e.g. to offer follow-ups."""
    _held: list[ServerEvent] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _playout: Playout | None = None
    _streamed: list[str] = field(default_factory=list)
    _agent_commit: AgentCommit | None = None

    @property
    def confirmed(self) -> bool:
        """Whether the turn is confirmed, so the reply's output may go out."""
        return self.commit.is_set()

    @property
    def done(self) -> bool:
        """Whether the reply has finished producing (or failed, or was cancelled)."""
        return self._task is not None and self._task.done()

    def start(self, confirmed: bool) -> Reply:
        """Start producing; a speculative reply (``confirmed=False``) holds all output back."""
        if confirmed:
            self.timing.confirmed = time.perf_counter()
            self.commit.set()
            trace.mark("confirm", self.timing.confirmed, turn=self.turn_id)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"reply-{self.turn_id}")
        return self

    async def confirm(self) -> None:
        """The user's turn is over: release what was held and let the rest flow."""
        if self.confirmed:
            return
        self.timing.confirmed = time.perf_counter()
        self.commit.set()
        if self._agent_commit is not None:
            self._agent_commit.set()
        trace.mark("confirm", self.timing.confirmed, turn=self.turn_id)
        held, self._held = self._held, []
        for ev in held:
            await self.link.send_event(ev)

    async def emit(self, ev: ServerEvent) -> None:
        """Send an event now, or hold it while the reply is speculative."""
        if self.confirmed:
            await self.link.send_event(ev)
        else:
            self._held.append(ev)

    @property
    def heard_anything(self) -> bool:
        """Whether the user can have heard (or, without audio, read) any of the answer."""
        if self._playout is not None:
            return self._playout.started_at is not None
        return bool(self._streamed) and self.confirmed

    def pause_audio(self) -> None:
        """Stop sending audio for now (the user may be starting to speak)."""
        if self._playout is not None:
            self._playout.pause()

    def resume_audio(self) -> None:
        """It was not speech: go on sending the audio where it stopped."""
        if self._playout is not None:
            self._playout.resume()

    async def cancel(self, interrupted: bool, merged: bool = False) -> None:
        """Stop everything. A confirmed reply is recorded with what the user heard.

        ``merged``: the user went on speaking before hearing anything, so this turn becomes
        the start of the next one; it leaves no trace in history or memory.
        """
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if not self.confirmed:
            return  # speculative: no trace
        if merged:
            if self.result is not None:  # the agent had finished and recorded it: take it back
                self.agent.forget_turn(self.conv, self.user_text, self.turn_id)
            await self.link.send_event(ResponseDone(self.turn_id, "", interrupted=True, metrics={}, merged=True))
            return
        self.interrupted = interrupted
        heard = self._playout.heard_text() if self._playout is not None else "".join(self._streamed).strip()
        self.agent.record_interrupted(self.conv, self.user_text, heard, turn_id=self.turn_id,
                                      completed=self.result is not None)
        await self.link.send_event(ResponseDone(self.turn_id, heard, interrupted=True, metrics=self._metrics({})))

    def truncate(self, played_s: float) -> None:
        """The client played only ``played_s`` of this finished reply: history and memory keep only that."""
        if self._playout is None or not self.confirmed or not self.done:
            return
        heard = self._playout.heard_text(played_s)
        if heard != self._playout.heard_text():
            self.agent.record_interrupted(self.conv, self.user_text, heard, turn_id=self.turn_id, completed=True)

    async def wait(self) -> None:
        """Wait until the reply has finished (or was cancelled)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def _run(self) -> None:
        language = detect_language(self.user_text)
        playout: Playout | None = None
        speaker: asyncio.Task[None] | None = None
        pieces: asyncio.Queue[tuple[str, bool] | None] = asyncio.Queue()
        if self.tts is not None:
            playout = self._playout = Playout(self.turn_id, self.output_sample_rate, self.link)
            speaker = asyncio.get_running_loop().create_task(self._speak(self.tts, playout, pieces, language))
        chunker = SentenceChunker()
        filler: asyncio.TimerHandle | None = None

        def text_complete() -> None:  # the agent waits to record the turn: no more text before confirmation
            for piece in chunker.flush():
                pieces.put_nowait((piece, False))

        commit = self._agent_commit = AgentCommit(text_complete)
        if self.confirmed:
            commit.set()
        try:
            async for ev in self.agent.stream_turn(self.conv, self.user_text, commit=commit, turn_id=self.turn_id):
                if isinstance(ev, RouteChosen):
                    await self.emit(Route(self.turn_id, ev.route, ev.reason))
                    if ev.route == "web_search" and playout is not None:
                        filler = asyncio.get_running_loop().call_later(
                            FILLER_AFTER_S, self._say_filler, pieces, language)
                elif isinstance(ev, SourcesFound):
                    items = [s.as_dict() for s in ev.sources]
                    await self.emit(Sources(self.turn_id, items))
                elif isinstance(ev, TextDelta):
                    if filler is not None:
                        filler.cancel()
                    if not self._streamed:
                        trace.mark("llm_first_delta", turn=self.turn_id)
                    self._streamed.append(ev.delta)
                    await self.emit(ResponseTextDelta(self.turn_id, ev.delta))
                    for piece in chunker.push(ev.delta):
                        pieces.put_nowait((piece, False))
                elif isinstance(ev, TurnDone):
                    self.result = ev.result
            for piece in chunker.flush():
                pieces.put_nowait((piece, False))
        finally:
            if filler is not None:
                filler.cancel()
            pieces.put_nowait(None)
            task = asyncio.current_task()  # this coroutine's own task: never None here
            if speaker is not None and task is not None and task.cancelling():
                speaker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await speaker
        if speaker is not None:
            await speaker  # the rest of the audio plays; a cancellation here propagates
        result = self.result
        assert result is not None
        if result.error:
            await self.emit(error_event("llm_failed", "the language model failed; the reply was cut short"))
        await self.emit(ResponseDone(self.turn_id, result.text, interrupted=False,
                                     metrics=self._metrics(result.metrics)))
        if self.suggest is not None and not result.error and result.text:
            await self.commit.wait()  # a speculative reply only once confirmed (a dropped one is cancelled)
            self.suggest(self)

    def _say_filler(self, pieces: asyncio.Queue[tuple[str, bool] | None], language: str) -> None:
        if not self._streamed:
            pieces.put_nowait((FILLERS.get(language, FILLERS["en"]), True))

    async def _speak(self, tts: TTS, playout: Playout, pieces: asyncio.Queue[tuple[str, bool] | None],
                     language: str) -> None:
        sender = asyncio.get_running_loop().create_task(self._play_when_confirmed(playout))
        try:
            while (item := await pieces.get()) is not None:
                text, is_filler = item
                index = playout.add_piece(text, filler=is_filler)
                if self.timing.tts_requested is None:
                    self.timing.tts_requested = time.perf_counter()
                    trace.mark("tts_requested", self.timing.tts_requested, turn=self.turn_id)
                stop = threading.Event()
                try:
                    async for pcm in iterate_in_thread(functools.partial(tts.synthesize, text, language), stop):
                        if self.timing.tts_first_audio is None:
                            self.timing.tts_first_audio = time.perf_counter()
                            trace.mark("tts_first_audio", self.timing.tts_first_audio, turn=self.turn_id)
                        playout.feed(index, pcm)
                except Exception as exc:  # one bad sentence must not end the session
                    log.warning("TTS failed on a piece: %s", type(exc).__name__)
                    await self.emit(error_event("tts_failed", "speech synthesis failed on part of the reply"))
            playout.finish()
            await sender
        finally:
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender

    async def _play_when_confirmed(self, playout: Playout) -> None:
        await self.commit.wait()
        await playout.run()

    def _metrics(self, agent_metrics: dict[str, float]) -> dict[str, float]:
        t = self.timing
        metrics = {k: v for k, v in agent_metrics.items() if k in ("route", "retrieval", "llm_ttft", "memory")}
        if t.vad_end_ms is not None:
            metrics["vad_end"] = round(t.vad_end_ms, 1)
        if t.asr_ms is not None:
            metrics["asr"] = round(t.asr_ms, 1)
        if t.tts_requested is not None and t.tts_first_audio is not None:
            metrics["tts_first_audio"] = round((t.tts_first_audio - t.tts_requested) * 1000, 1)
        start = t.speech_end if t.speech_end is not None else t.confirmed
        if self._playout is not None and self._playout.started_at is not None and start is not None:
            metrics["e2e"] = round((self._playout.started_at - start) * 1000, 1)
        return metrics
