"""One voice session: a client, its VAD state, transcription, and replies.

The session reaches its client only through a :class:`~speech.voice.link.ClientLink`.

Turn-taking: at a short pause the session transcribes and starts the reply
speculatively (held back); when the silence lasts long enough to confirm the end
of the turn, the held reply is released at once. If the user goes on speaking,
the speculative reply is dropped without a trace. Speech during a confirmed reply
interrupts it (barge-in).

The audio of a reply stops at the first probable onset of speech (before the VAD has
confirmed it) and goes on if the sound was only a click or a cough. The silence that
confirms a turn depends on what was said (speech/voice/turn_end.py), and the decode at a
pause the user went on from is kept (speech/voice/utterance.py), so that the end of speech
leaves only the last stretch to decode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from agent.conversation import Conversation
from agent.runtime import Agent, InputError
from speech.audio import PcmResampler
from speech.engines.factory import SpeechEngines
from speech.engines.vad import SpeechEnd, SpeechPause, SpeechResume, SpeechStart
from speech.protocol import (
    AudioOutput,
    Interrupt,
    ProtocolError,
    ServerEvent,
    SessionEnd,
    SessionStart,
    Suggestions,
    TextInput,
    TranscriptFinal,
    TranscriptPartial,
    Truncate,
    TurnDetection,
    VadEnd,
    VadStart,
    error_event,
)
from speech.text import join_words
from speech.voice import trace
from speech.voice.link import AudioIn, ClientLink, LinkClosed
from speech.voice.reply import Reply, ReplyTiming
from speech.voice.turn import AudioClock, Speculation, TurnRate
from speech.voice.turn_end import PauseHistory, end_silence_ms
from speech.voice.utterance import UtteranceDecoder

log = logging.getLogger(__name__)

ASR_RATE = 16000
CLOSE_IDLE = 4408


@dataclass(frozen=True)
class SessionSettings:
    """Per-server settings every session follows."""

    interruption: bool = True
    """Barge-in on; off means half duplex (audio is ignored while Parley speaks)."""
    speculative: bool = True
    """Start transcription and the reply at a short pause, release it once the turn is confirmed."""
    idle_timeout_s: float = 300.0
    """A session that sends nothing for this long is closed."""
    max_turns_per_minute: int = 30
    """Turns beyond this rate are refused with a ``rate_limited`` error."""
    suggest_followups: bool = False
    """After each reply, send three follow-up questions (a ``suggestions`` event)."""


class VoiceSession:
    """Everything about one connected client. Nothing here is shared with other sessions."""

    def __init__(self, link: ClientLink, agent: Agent, engines: SpeechEngines, start: SessionStart,
                 conv: Conversation, options: SessionSettings) -> None:
        self.link = link
        self.agent = agent
        self.engines = engines
        self.start = start
        self.conv = conv
        self.options = options
        self.vad = engines.new_vad_stream()
        self._resampler = PcmResampler(start.sample_rate, ASR_RATE) if start.sample_rate != ASR_RATE else None
        self.reply: Reply | None = None
        """The reply being produced or played (confirmed or speculative)."""
        self._clock = AudioClock(ASR_RATE)
        self._speculation: Speculation | None = None
        self._pending: Speculation | None = None
        """The confirmed turn whose answer the user has not heard yet."""
        self._prefix = ""
        """Words of a turn the user went on from before hearing its answer: they start the next turn."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._turn_rate = TurnRate(options.max_turns_per_minute)
        self._decoder = UtteranceDecoder(engines, self._spawn, self._show_partial)
        self._held_for_onset: Reply | None = None
        """The reply whose audio is paused because speech may be starting."""
        self.false_stops = 0
        """Replies paused at a probable onset that turned out not to be speech."""
        self._pauses = PauseHistory(prior_ms=engines.args.pause_habit_prior_ms)
        """The pauses this user went on from: a turn end waits longer than their habit."""

    @property
    def busy(self) -> bool:
        """A confirmed turn is being transcribed or answered (what a graceful shutdown waits for)."""
        reply, pending = self.reply, self._pending
        if reply is not None and reply.confirmed and not reply.done:
            return True
        return pending is not None and pending.task is not None and not pending.task.done()

    async def send(self, event: ServerEvent) -> None:
        """Send an event to the client (a client that has gone is noticed by the receive loop)."""
        await self.link.send_event(event)

    async def run(self) -> None:
        """The receive loop: until the client leaves or ends the session."""
        try:
            while True:
                try:
                    msg = await asyncio.wait_for(self.link.receive(), self.options.idle_timeout_s)
                except TimeoutError:
                    await self.send(error_event("idle_timeout", "closing an idle session"))
                    await self.link.close(CLOSE_IDLE, "idle timeout")
                    break
                except LinkClosed:
                    break
                except ProtocolError as exc:
                    await self.send(error_event(exc.code, exc.message))
                    continue
                if isinstance(msg, AudioIn):
                    await self._on_audio(msg.pcm)
                    continue
                if isinstance(msg, TextInput):
                    await self._on_text(msg.text)
                elif isinstance(msg, Interrupt):  # stop everything in flight (CleanS2S: also "new topic")
                    await self._drop_speculation()
                    self._drop_unanswered_voice_turn()
                    await self._interrupt()
                elif isinstance(msg, AudioOutput):  # from the next reply on: off means no synthesis at all
                    self.start = replace(self.start, audio_output=msg.enabled)
                elif isinstance(msg, TurnDetection):  # validated by the link; the turn-end rule adapts around it
                    self.vad.retune(msg.threshold, msg.silence_ms, msg.prefix_ms)
                elif isinstance(msg, Truncate) and self.reply is not None and self.reply.turn_id == msg.turn_id:
                    self.reply.truncate(msg.played_ms / 1000)  # after a cancel, which this loop has awaited
                elif isinstance(msg, SessionEnd):
                    break
                elif isinstance(msg, SessionStart):
                    await self.send(error_event("already_started", "the session has already started"))
        finally:
            await self.close()

    async def close(self) -> None:
        """Cancel what is running; a reply in progress is recorded with what was heard."""
        try:
            await self._drop_speculation()
            await self._interrupt()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self.vad.close()  # its model goes back to the pool for the next session

    # --- typed input -------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        try:
            text = self.agent.check_text(text)
        except InputError as exc:
            await self.send(error_event("empty_input" if "empty" in str(exc) else "input_too_long", str(exc)))
            return
        await self._drop_speculation()
        self._drop_unanswered_voice_turn()
        await self._interrupt()
        if not await self._rate_limited():
            await self._start_reply(text, ReplyTiming(), confirmed=True)

    def _drop_unanswered_voice_turn(self) -> None:
        """Typed input or an interrupt supersedes a spoken turn still being transcribed (issue 16, defect 7).

        Otherwise its reply starts when transcription ends, and interrupts the typed one before
        it says a word (CleanS2S's front end then shows an empty answer that never ends).
        """
        pending, self._pending = self._pending, None
        if pending is not None and pending.reply is None:
            pending.dropped = True
        if self.vad.paused:  # an utterance still waiting out its end silence would be confirmed after this
            self.vad.reset()
        self._prefix = ""

    # --- audio -------------------------------------------------------------------

    async def _on_audio(self, frame: bytes) -> None:
        if len(frame) % 2:
            await self.send(error_event("bad_audio", "16-bit PCM needs an even number of bytes"))
            return
        if not self.options.interruption and self.reply is not None and self.reply.confirmed and not self.reply.done:
            return  # half duplex: ignore the user while Parley speaks
        pcm = np.frombuffer(frame, dtype="<i2")
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        self._clock.received(len(pcm), time.perf_counter())
        for vad_event in self.vad.process(pcm):
            await self._on_vad(vad_event)
        await self._follow_onset()
        self._decoder.maybe_partial(self.vad)

    async def _show_partial(self, text: str) -> None:
        await self.send(TranscriptPartial(join_words(self._prefix, text)))

    async def _follow_onset(self) -> None:
        """Pause the sounding reply at a probable onset of speech; resume it if that was not speech."""
        held = self._held_for_onset
        if self.vad.onset and held is None:
            reply = self.reply
            if reply is not None and reply.confirmed and not reply.done and self.options.interruption:
                self._held_for_onset = reply
                reply.pause_audio()
        elif held is not None and not self.vad.onset:
            self._held_for_onset = None
            if not self.vad.in_speech:  # the candidate was dropped: a click, a cough, noise
                self.false_stops += 1
                held.resume_audio()
            # else SpeechStart came: _interrupt() has stopped it for good

    async def _on_vad(self, vad_event: Any) -> None:
        if isinstance(vad_event, SpeechStart):
            await self.send(VadStart())  # first, so the client can stop playing at once
            self._decoder.restart()
            await self._drop_speculation()
            unheard = self._pending
            await self._merge_unheard_turn()
            if unheard is not None and unheard.merged:  # a pause the turn end took for the end
                self._pauses.went_on_after(vad_event.t_ms - unheard.speech_end_ms)
            self._pauses.new_utterance()
            await self._interrupt()
        elif isinstance(vad_event, SpeechResume):
            if self._speculation is not None:
                self._pauses.went_on_after(vad_event.t_ms - self._speculation.speech_end_ms)
            await self._drop_speculation()  # the user went on after a short pause
        elif isinstance(vad_event, SpeechPause) and self.options.speculative:
            await self._drop_speculation()
            timing = ReplyTiming(speech_end=self._clock.wall_time(vad_event.speech_end_ms))
            spec = self._speculation = Speculation(vad_event.speech_end_ms, timing, self._decoder.so_far.utterance)
            trace.mark("speech_end", timing.speech_end, spec=spec.id)
            trace.mark("pause", spec=spec.id)
            spec.task = self._spawn(self._transcribe_then_reply(vad_event.audio, timing, spec))
        elif isinstance(vad_event, SpeechEnd):
            await self.send(VadEnd())
            await self._end_of_turn(vad_event)

    async def _end_of_turn(self, end: SpeechEnd) -> None:
        now = time.perf_counter()
        speech_end = self._clock.wall_time(end.speech_end_ms)
        spec = self._speculation
        if spec is not None and abs(spec.speech_end_ms - end.speech_end_ms) < 1.0:
            # Nothing was said since the pause: the speculative work is this turn's.
            spec.confirmed = True
            self._speculation = None
            trace.mark("turn_end", now, spec=spec.id, speculated=True)
            self._pending = spec
            spec.timing.vad_end_ms = (now - speech_end) * 1000
            if spec.reply is not None:
                self._prefix = ""  # the reply was built with it
                await self._send_transcript(spec.reply)
                await spec.reply.confirm()
            elif spec.asr_failed:
                await self.send(error_event("asr_failed", "speech recognition failed on this utterance"))
            # else: transcription is still running and will start the reply confirmed.
            return
        await self._drop_speculation()
        timing = ReplyTiming(speech_end=speech_end, vad_end_ms=(now - speech_end) * 1000)
        spec = self._pending = Speculation(end.speech_end_ms, timing, self._decoder.so_far.utterance, confirmed=True)
        trace.mark("speech_end", speech_end, spec=spec.id)
        trace.mark("turn_end", now, spec=spec.id, speculated=False)
        spec.task = self._spawn(self._transcribe_then_reply(end.audio, timing, spec))

    async def _merge_unheard_turn(self) -> None:
        """The user speaks again before hearing the answer: their words so far open the next turn.

        This is what stops a pause longer than the end-of-turn window from producing a reply
        to half a sentence: the half is kept, and the answer goes to the whole.
        """
        pending, self._pending = self._pending, None
        if pending is None or (pending.reply is not None and pending.reply.heard_anything):
            return
        pending.merged = True
        if pending.reply is not None:
            self._prefix = pending.reply.user_text
            await pending.reply.cancel(interrupted=True, merged=True)
            if self.reply is pending.reply:
                self.reply = None

    async def _transcribe_then_reply(self, audio: np.ndarray, timing: ReplyTiming, spec: Speculation | None) -> None:
        started = time.perf_counter()
        spec_id = spec.id if spec is not None else 0
        try:
            heard = await self._decoder.decode(audio, spec.utterance if spec is not None else None, spec_id)
        except Exception as exc:
            log.warning("ASR failed: %s", type(exc).__name__)
            if spec is None or spec.confirmed:
                await self.send(error_event("asr_failed", "speech recognition failed on this utterance"))
            else:
                spec.asr_failed = True  # told at the end of the turn, if the pause ends it
            return
        timing.asr_ms = (time.perf_counter() - started) * 1000
        trace.mark("decode_back", spec=spec_id)
        text = heard.text.strip()
        if spec is not None and not spec.confirmed:
            spec.heard = (audio.size, text, heard.language)
            if spec.dropped:  # the user went on after this pause: keep what it heard
                await self._keep_partial(spec)
            elif not spec.merged:  # still pausing: how long this pause must last to end the turn
                silence_ms = end_silence_ms(text, self.vad.args.min_silence_ms, self.engines.args,
                                            heard.complete_prob, self._pauses.longest_ms)
                self.vad.set_end_silence(silence_ms)
                trace.mark("end_silence", spec=spec_id, ms=silence_ms)
        if spec is not None and spec.merged:
            self._prefix = join_words(self._prefix, text)  # the user went on: these words open the next turn
            return
        if not text or (spec is not None and spec.dropped):
            return  # noise, or the user went on speaking
        text = join_words(self._prefix, text)
        confirmed = spec is None or spec.confirmed
        if confirmed and await self._rate_limited():
            return
        await self._interrupt()
        reply = await self._start_reply(text, timing, confirmed=confirmed)
        trace.mark("reply_start", spec=spec_id, turn=reply.turn_id, confirmed=confirmed)
        if spec is not None:
            spec.reply = reply

    async def _send_transcript(self, reply: Reply) -> None:
        await self.send(TranscriptFinal(reply.user_text, reply.turn_id))

    async def _rate_limited(self) -> bool:
        """True (and the user told) when this session starts turns faster than allowed."""
        if self._turn_rate.allow(time.monotonic()):
            return False
        await self.send(error_event("rate_limited", "too many turns in a minute; wait a moment"))
        return True

    async def _start_reply(self, text: str, timing: ReplyTiming, confirmed: bool) -> Reply:
        """Start a reply; a confirmed one is announced with its transcript first."""
        if confirmed:
            self._prefix = ""
        tts = self.engines.tts if self.start.audio_output else None
        reply = self.reply = Reply(self.agent, self.conv, text, tts, self.link, self.engines.output_sample_rate,
                                   timing=timing, suggest=self._suggest if self.options.suggest_followups else None)
        if confirmed:
            await self._send_transcript(reply)
        return reply.start(confirmed)

    def _suggest(self, reply: Reply) -> None:
        """After a reply: follow-up questions, made in the background (the reply is not delayed)."""
        self._spawn(self._send_suggestions(reply))

    async def _send_suggestions(self, reply: Reply) -> None:
        answer = reply.result.text if reply.result is not None else ""
        items = await self.agent.suggest_followups(reply.user_text, answer)
        if items:
            await self.send(Suggestions(reply.turn_id, items))

    async def _keep_partial(self, spec: Speculation) -> None:
        """The user went on after a pause already transcribed: commit it and show it (transcript.partial)."""
        if spec.heard is not None and self._decoder.so_far.commit(spec.utterance, *spec.heard):
            await self._show_partial(spec.heard[1])

    async def _drop_speculation(self) -> None:
        """The user went on: forget the speculative reply silently (its transcript is kept as a partial)."""
        spec, self._speculation = self._speculation, None
        if spec is None:
            return
        spec.dropped = True
        await self._keep_partial(spec)
        if spec.reply is not None:
            await spec.reply.cancel(interrupted=False)
            if self.reply is spec.reply:
                self.reply = None

    async def _interrupt(self) -> None:
        """Barge-in: stop the current confirmed reply and record what the user heard."""
        reply = self.reply
        if reply is not None and reply.confirmed and not reply.done:
            await reply.cancel(interrupted=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
