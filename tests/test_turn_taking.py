"""Turn-taking parts without models: the turn-end rule, the VAD's per-pause end silence and
onset flag, the shared recognizer queue's order, and pausing a reply's audio."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from speech.audio import float_to_pcm16
from speech.engines.asr_queue import PARTIAL, RecognizerQueue
from speech.engines.smart_turn import TurnEndSettings
from speech.engines.vad import SpeechEnd, SpeechStart, VADSettings, VADStream
from speech.voice.playout import Playout
from speech.voice.turn_end import PauseHistory, end_silence_ms, ending_of
from tests.support.engine_fakes import energy_scorer
from tests.support.recording_link import RecordingLink

SR = 16000


def tone(seconds: float) -> np.ndarray:
    return float_to_pcm16((0.3 * np.sin(2 * np.pi * 200 * np.arange(int(seconds * SR)) / SR)).astype(np.float32))


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.int16)


@pytest.mark.parametrize(("text", "ending"), [
    ("What is the capital of France?", "complete"),
    # A full stop alone is not enough: Whisper writes one after fragments too (speech/voice/turn_end.py).
    ("Please explain why the sky looks blue.", "unclear"),
    ("Tell me something interesting about whales.", "unclear"),
    # A full stop the words make doubtful: the first half of a question, a verb that wants more.
    ("I would like to know.", "doubtful"),
    ("Can you tell me.", "doubtful"),
    ("Can you tell me?", "doubtful"),  # Whisper writes the question mark after the fragment too
    ("Can you tell me a fun fact about octopuses?", "complete"),
    ("How far away.", "doubtful"),
    ("It is late. Could you", "doubtful"),
    ("I wanted to ask you.", "doubtful"),
    ("我想知道。", "doubtful"),
    ("你能不能帮我查一下?", "doubtful"),  # a look-up that names nothing yet: bench.turn_end, more came after 0.77 s
    ("你能帮我查一下。", "doubtful"),  # not complete either way; like "I would like to know." it wants more
    ("Is it going to rain today!", "complete"),
    ("今天天气怎么样？", "complete"),
    ("I went to the market and", "incomplete"),
    ("I went to the market, and...", "incomplete"),
    ("so I bought the", "incomplete"),
    ("My favourite fruit is.", "incomplete"),  # Whisper's full stop after a dangling "is"
    ("The problem is?", "incomplete"),
    ("What I mean is.", "incomplete"),
    # A copula that closes a wh-question ends it (bench.turn_end: this waited --late_silence_ms at its end).
    ("Can you tell me? How far away the moon is?", "complete"),
    ("Do you know what time it is?", "complete"),
    ("I would like to book a table,", "incomplete"),
    ("我昨天去了市场，然后", "incomplete"),
    ("我想问一下就是", "incomplete"),
    ("Because", "incomplete"),
    ("well I think", "unclear"),
    ("", "unclear"),
])
def test_ending_of_the_transcript(text: str, ending: str) -> None:
    assert ending_of(text) == ending


def test_end_silence_follows_the_ending_and_the_model() -> None:
    args = TurnEndSettings(early_silence_ms=450, late_silence_ms=1600)
    assert end_silence_ms("Where is the station?", 800, args) == 450
    assert end_silence_ms("I want to go to the station and", 800, args) == 1600
    assert end_silence_ms("well I think", 800, args) == 800
    assert end_silence_ms("Can you tell me.", 800, args) == 1300


def test_a_speaker_who_pauses_long_gets_longer_turn_ends() -> None:
    args = TurnEndSettings(early_silence_ms=450, late_silence_ms=1600, pause_margin_ms=300)
    history = PauseHistory(utterances=3)
    assert history.longest_ms == 0
    assert end_silence_ms("I went to the market.", 800, args, longest_pause_ms=history.longest_ms) == 800
    history.went_on_after(950.0)  # they paused 950 ms after a full stop and went on
    history.went_on_after(600.0)
    assert end_silence_ms("I went to the market.", 800, args, longest_pause_ms=history.longest_ms) == 1250
    # A question mark still ends early, a dangling word still waits the late silence, and the
    # habit never stretches a turn end past --pause_habit_max_ms (1,300 ms: a silence that long ends it).
    assert end_silence_ms("Where is the station?", 800, args, longest_pause_ms=950) == 450
    assert end_silence_ms("I went to the market and", 800, args, longest_pause_ms=950) == 1600
    assert end_silence_ms("I went to the market.", 800, args, longest_pause_ms=1500) == 1300
    assert end_silence_ms("I went to the market.", 800, TurnEndSettings(pause_margin_ms=300, pause_habit_max_ms=1500),
                          longest_pause_ms=1400) == 1500
    assert end_silence_ms("I went to the market.", 800, TurnEndSettings(pause_margin_ms=-1),
                          longest_pause_ms=950) == 800
    for _ in range(3):  # forgotten after three utterances without such a pause
        history.new_utterance()
    assert history.longest_ms == 0
    # The audio model can veto an early end, or ask for a late one.
    assert end_silence_ms("Where is the station?", 800, args, complete_prob=0.3) == 800
    assert end_silence_ms("well I think", 800, args, complete_prob=0.1) == 1600
    assert end_silence_ms("Where is the station?", 800, args, complete_prob=0.9) == 450
    assert end_silence_ms("Where is the station?", 800, TurnEndSettings(turn_end="fixed")) == 800


def test_a_new_speaker_is_assumed_to_pause_until_their_own_pauses_are_known() -> None:
    # bench.turn_end --alone zh: a first utterance paused 1.06 s after "我昨天去了车站旁边的市场。" and went on;
    # with no habit known yet the full stop ended the turn at 800 ms.
    args = TurnEndSettings()
    assert args.pause_habit_prior_ms == 800
    history = PauseHistory(prior_ms=args.pause_habit_prior_ms)
    history.new_utterance()
    wait = end_silence_ms("我昨天去了车站旁边的市场。", 800, args, longest_pause_ms=history.longest_ms)
    assert wait == 1200 and wait > 1056
    assert end_silence_ms("今天天气怎么样？", 800, args, longest_pause_ms=history.longest_ms) == 450
    history.new_utterance()
    history.new_utterance()  # the speaker's own last 3 utterances: the prior is forgotten
    assert history.longest_ms == 0
    assert end_silence_ms("我昨天去了车站旁边的市场。", 800, args, longest_pause_ms=history.longest_ms) == 800


def test_the_vad_ends_a_pause_at_the_silence_it_is_told() -> None:
    stream = VADStream(energy_scorer(), VADSettings(min_silence_ms=800, speculative_silence_ms=300))
    events = stream.process(tone(1.0)) + stream.process(quiet(0.35))
    assert [type(e) for e in events] == [SpeechStart, type(events[1])] and not stream.process(quiet(0.0))
    stream.set_end_silence(450)  # a plainly finished sentence
    events = stream.process(quiet(0.05))
    assert not any(isinstance(e, SpeechEnd) for e in events)
    events = stream.process(quiet(0.15))
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert ends and 420 <= ends[0].t_ms - ends[0].speech_end_ms <= 500

    # Told to wait longer (a trailing "and"): no end at 800 ms; the override lasts until speech resumes.
    stream.process(tone(1.0))
    stream.process(quiet(0.35))
    stream.set_end_silence(1600)
    assert not any(isinstance(e, SpeechEnd) for e in stream.process(quiet(1.0)))
    ends = [e for e in stream.process(quiet(0.4)) if isinstance(e, SpeechEnd)]
    assert ends and ends[0].t_ms - ends[0].speech_end_ms == pytest.approx(1600, abs=40)

    stream.process(tone(1.0))
    stream.process(quiet(0.35))
    stream.set_end_silence(1600)
    stream.process(tone(0.3))  # the user went on: back to the default for the next pause
    ends = [e for e in stream.process(quiet(0.9)) if isinstance(e, SpeechEnd)]
    assert ends and ends[0].t_ms - ends[0].speech_end_ms == pytest.approx(800, abs=40)


def test_a_murmur_in_a_pause_neither_moves_the_turn_end_nor_resets_its_silence() -> None:
    # A frame that scores between the hysteresis floor and the threshold (a breath, a chair, room noise on a
    # real microphone): inside speech it counts as speech, but in a pause it must count as silence.
    # Before, it moved the last-speech mark without a SpeechResume and reset the chosen end silence, so the
    # turn ended later than chosen, with other audio than the pause's speculative decode had (decoded again).
    def scorer(frame: np.ndarray) -> float:
        rms = float(np.sqrt(np.mean(np.asarray(frame, dtype=np.float64) ** 2)))
        return 1.0 if rms > 0.1 else 0.42 if rms > 0.005 else 0.0  # 0.42: under 0.5, over 0.5 - 0.15

    stream = VADStream(scorer, VADSettings(min_silence_ms=800, speculative_silence_ms=300))
    events = stream.process(tone(1.0)) + stream.process(quiet(0.35))
    pause = events[-1]
    assert type(pause).__name__ == "SpeechPause"
    stream.set_end_silence(450)
    murmur = (tone(0.04).astype(np.float32) * 0.05).astype(np.int16)
    events = stream.process(murmur) + stream.process(quiet(0.3))
    assert not any(type(e).__name__ == "SpeechResume" for e in events)
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert ends, "the murmur reset the end silence"
    assert ends[0].speech_end_ms == pause.speech_end_ms
    assert 420 <= ends[0].t_ms - ends[0].speech_end_ms <= 500


def test_the_onset_flag_rises_at_once_and_falls_for_a_click() -> None:
    stream = VADStream(energy_scorer(), VADSettings(min_speech_ms=250))
    assert not stream.onset
    assert stream.process(tone(0.07)) == [] and stream.onset  # 2 frames: probable speech, not yet confirmed
    assert stream.process(quiet(0.3)) == [] and not stream.onset  # it was a click
    events = stream.process(tone(0.5))
    assert isinstance(events[0], SpeechStart) and not stream.onset and stream.in_speech


async def test_queue_runs_final_decodes_first_and_skips_withdrawn_ones() -> None:
    queue = RecognizerQueue("test")
    gate = threading.Event()
    order: list[str] = []

    def job(name: str, wait: bool = False):
        def run() -> str:
            if wait:
                gate.wait(5)
            order.append(name)
            return name
        return run

    first = asyncio.ensure_future(queue.run(job("running", wait=True)))
    await asyncio.sleep(0.05)
    assert queue.busy
    assert await queue.try_partial(job("refused")) == (False, None)
    partial = asyncio.ensure_future(queue.run(job("partial"), PARTIAL))
    stale = asyncio.ensure_future(queue.run(job("stale")))
    final = asyncio.ensure_future(queue.run(job("final")))
    await asyncio.sleep(0.05)
    stale.cancel()  # the user went on: withdrawn before it started
    gate.set()
    assert await asyncio.gather(first, final, partial) == ["running", "final", "partial"]
    assert order == ["running", "final", "partial"]
    assert queue.stats.skipped_stale == 1 and queue.stats.refused_partials == 1

    def boom() -> None:
        raise ValueError("bad audio")

    with pytest.raises(ValueError, match="bad audio"):
        await queue.run(boom)
    assert await queue.try_partial(job("free")) == (True, "free")


async def test_a_paused_reply_sends_nothing_and_resumes_in_pace() -> None:
    link = RecordingLink()
    sent = link.audio  # (time sent, frame), appended as frames go out

    playout = Playout("t1", 16000, link, lead_s=0.0)
    playout.add_piece("hello there")
    playout.feed(0, np.zeros(16000, dtype=np.int16))  # 1 s = 25 frames of 40 ms
    playout.finish()
    task = asyncio.ensure_future(playout.run())
    await asyncio.sleep(0.2)
    playout.pause()
    paused_at = time.perf_counter()
    count = len(sent)
    await asyncio.sleep(0.3)
    assert len(sent) <= count + 1, "at most the frame in flight after a pause"
    assert playout.heard_seconds() <= 0.3
    playout.resume()
    await asyncio.wait_for(task, 5)
    assert len(sent) == 25
    after = [t for t, _ in sent if t > paused_at + 0.25]
    assert after and after[0] - paused_at >= 0.29
    # Paced as if the pause had not happened: the rest takes its own length, not a burst.
    assert sent[-1][0] - after[0] >= 0.5
