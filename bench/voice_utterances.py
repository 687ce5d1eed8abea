"""Utterances for the voice benches, spoken by the embedded TTS (nothing downloaded).

* ``short``: single questions of about 3 s;
* ``long``: about 10 s, one long sentence in English or Mandarin whose commas were spoken
  as pauses and then stretched to 0.5-1.1 s: the voice keeps the unfinished intonation of
  a phrase that goes on, as a person pausing mid-sentence does (a fragment synthesized on
  its own would sound finished);
* ``paused``: short sentences (English and Mandarin) with one 0.5-1.1 s pause inside, joined
  from two fragments (the premature-reply set: the hardest case, since each fragment sounds finished).

Each comes with the time of its last word (the end of the last loud 10 ms frame), which
is where final-answer latency is measured from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tests.support.speech import loud_frames, trim

SHORT = [
    "What is the capital of France and how big is it?",
    "Can you tell me a fun fact about octopuses?",
    "How long does it take to boil an egg?",
    "Which planet in our solar system is the largest?",
    "Please explain why the sky looks blue.",
    "What should I cook for dinner tonight?",
    "How many people live in Tokyo today?",
    "Tell me something interesting about whales.",
]
LONG = [
    ("en", "Yesterday I went to the market near the station, because I wanted to buy some fresh vegetables, "
           "but the prices were much higher than they were last week."),
    ("en", "I would like to know how tall the highest mountain in Europe is, and whether people are allowed "
           "to climb it in the middle of winter."),
    ("zh", "我昨天去了车站旁边的市场，因为我想买一些新鲜的蔬菜，但是价格比上个星期高了很多。"),
    ("en", "My favourite fruit is mango, and I eat one almost every day in the summer, "
           "but my brother prefers apples and pears."),
    ("zh", "我想知道明天从北京去上海的火车，大概需要几个小时，还有票价是多少。"),
]
PAUSED = [  # (language, first fragment, second fragment, pause in s)
    ("en", "I would like to know", "the height of Mount Everest", 0.5),
    ("en", "Can you tell me", "how far away the moon is", 0.75),
    ("zh", "我想知道", "明天北京的天气怎么样", 1.0),
    ("en", "My favourite fruit is", "mango and I eat it every day", 1.1),
    ("zh", "你能不能帮我查一下", "去火车站的路怎么走", 0.8),
]
PAUSES_S = (0.5, 0.8, 1.1, 0.65, 0.95)


@dataclass(frozen=True)
class Utterance:
    kind: str
    text: str
    pcm: np.ndarray
    """int16, 16 kHz."""
    last_word_s: float
    """Where the last word ends, from the start of ``pcm``."""


def stretch_pauses(pcm: np.ndarray, count: int, pauses_s: tuple[float, ...]) -> np.ndarray:
    """Replace the ``count`` longest inner quiet runs (the spoken commas) with silences of ``pauses_s``."""
    loud = loud_frames(pcm)
    runs, i = [], 0
    while i < loud.size:
        if not loud[i]:
            j = i
            while j < loud.size and not loud[j]:
                j += 1
            if i > 0 and j < loud.size:
                runs.append((j - i, i, j))
            i = j
        else:
            i += 1
    chosen = sorted(sorted(runs, reverse=True)[:count], key=lambda r: r[1])
    out, at = [], 0
    for k, (_, a, b) in enumerate(chosen):
        out += [pcm[at:a * 160], np.zeros(int(pauses_s[k % len(pauses_s)] * 16000), np.int16)]
        at = b * 160
    out.append(pcm[at:])
    return np.concatenate(out)


def make_utterances(tts, sample_rate: int, quick: bool = False) -> dict[str, list[Utterance]]:
    """The three sets, spoken by ``tts`` (a MultilingualTTS) and resampled to 16 kHz."""
    from speech.audio import resample_pcm16

    def speak(text: str, lang: str) -> np.ndarray:
        pcm = np.concatenate(list(tts.synthesize(text, lang)))
        return trim(resample_pcm16(pcm, sample_rate, 16000))

    def utterance(kind: str, text: str, pcm: np.ndarray) -> Utterance:
        loud = np.flatnonzero(loud_frames(pcm))
        return Utterance(kind, text, pcm, (loud[-1] + 1) * 0.01)

    short = [utterance("short", t, speak(t, "en")) for t in SHORT[: 5 if quick else None]]
    long = []
    for i, (lang, text) in enumerate(LONG[: 3 if quick else None]):
        commas = text.count(",") + text.count("，")
        pauses = PAUSES_S[i % len(PAUSES_S):] + PAUSES_S[: i % len(PAUSES_S)]
        long.append(utterance("long", text, stretch_pauses(speak(text, lang), commas, pauses)))
    paused = []
    for lang, a, b, pause_s in PAUSED[: 3 if quick else None]:
        gap = np.zeros(int(pause_s * 16000), np.int16)
        text = f"{a} {b}" if lang == "en" else a + b
        paused.append(utterance("paused", text, np.concatenate([speak(a, lang), gap, speak(b, lang)])))
    return {"short": short, "long": long, "paused": paused}
