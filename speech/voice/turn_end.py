"""When a pause ends the user's turn: from the words said, and optionally the smart-turn model.

The VAD confirms a turn after ``min_silence_ms`` of silence whatever was said. Once the
speculative transcript of the pause is known, the session asks :func:`end_silence_ms`
for this pause's own threshold:

* the sentence plainly ends (a question or exclamation mark, no trailing "and"/"so"/"because"/
  "然后"/"就是"..., and the smart-turn model, when loaded, agrees) -> ``early_silence_ms``;
* it plainly goes on (a trailing conjunction or filler, a trailing comma, or smart-turn
  says incomplete) -> ``late_silence_ms``;
* a full stop that the words make doubtful -> ``doubt_silence_ms``: a question's opening
  ("Can you tell me.", "What is the.") that Whisper did not close with a question mark, or
  a last word that wants what comes after it ("I would like to know.", "告诉我。");
* otherwise ``min_silence_ms`` as before.

Whisper puts a full stop after most fragments ("I would like to know."), so a full stop
only gets the ordinary silence; the trailing-word list catches the common dangling endings in
both languages, and the audio model catches the intonation of an unfinished phrase.
The reply itself stays held back until the turn is confirmed, so a wrong "complete"
costs at most a reply to half a sentence that the user then talks over (merged).
"""

from __future__ import annotations

import re
from collections import deque

# The settings live with the engines, whose factory reads --turn_end to load the smart-turn model
# (speech/engines never imports speech/voice: the import contracts in pyproject.toml).
from speech.engines.smart_turn import TurnEndSettings

SENTENCE_END = tuple(".?!。？！")
# Only these end a turn early. Whisper puts a full stop after fragments too ("I would like to know.",
# "Can you tell me."): answering those at the early silence replied to speakers who had only paused
# (bench.voice_latency: 2 of 10 premature at TTFT 0; tests/test_server_voice.py), so a full stop
# waits the ordinary --min_silence_ms. A question or exclamation mark is much rarer on a fragment.
EARLY_END = tuple("?!？！")
_TRAILING_EN = {
    "and", "so", "because", "but", "or", "then", "um", "uh", "er", "like", "the", "a", "an", "to", "of", "with",
    "for", "in", "on", "at", "is", "are", "was", "my", "your", "if", "that", "which", "when", "about", "from",
    "some", "than", "as", "also", "actually", "basically", "just", "maybe", "our", "their", "his", "her", "into",
}
_TRAILING_ZH = ("然后", "就是", "还有", "因为", "所以", "但是", "而且", "那个", "这个", "如果", "或者", "的话", "嗯",
                "呃", "和", "跟", "是", "的", "在", "想", "要", "我")
_WORD = re.compile(r"[a-zA-Z']+")
# A sentence opened like a question: Whisper closes a whole question with "?", so a full stop after
# one of these openings means it heard the question's first half ("Can you tell me.": bench.voice_latency).
_QUESTION_OPENING = {
    "can", "could", "would", "will", "do", "does", "did", "is", "are", "was", "were", "what", "how", "why",
    "where", "when", "who", "which", "whose", "should", "shall", "may", "have", "has",
}
_COPULA = {"is", "are", "was", "were"}
_WH = {"what", "how", "why", "where", "when", "who", "which", "whose"}
# Last words that want an object or a clause after them ("I would like to know.", "Let me ask.").
_WANTS_MORE_EN = {"know", "wonder", "wondering", "ask", "asking", "explain", "remember", "mean", "say", "want",
                  "wanted", "need"}
_WANTS_MORE_EN2 = {"tell me", "tell you", "tell us", "show me", "find out", "ask you"}
_WANTS_MORE_ZH = ("知道", "告诉我", "想问", "请问", "问一下", "问问", "查一下", "查查", "觉得", "认为", "希望")


def ending_of(text: str) -> str:
    """'complete', 'incomplete', 'doubtful' or 'unclear' from the transcript's last words."""
    t = text.strip().rstrip("\"'”’)")
    if not t:
        return "unclear"
    if t[-1] in ",，、;；:：-—…" or t.endswith("..."):
        return "incomplete"
    core = t.rstrip("".join(SENTENCE_END) + " ")
    words = _WORD.findall(core[-40:].lower())
    dangling = words and core[-1:].isascii() and words[-1] in _TRAILING_EN and not _closes_wh_question(t, core)
    if dangling or core.endswith(_TRAILING_ZH):
        return "incomplete"
    if _wants_more(core, words):  # even with a question mark: "Can you tell me?" (bench.turn_end)
        return "doubtful"
    if t[-1] in EARLY_END:
        return "complete"
    return "doubtful" if _question_opening(core) else "unclear"


def _wants_more(core: str, words: list[str]) -> bool:
    """The last word wants an object or a clause after it."""
    if core.endswith(_WANTS_MORE_ZH):
        return True
    return bool(words) and core[-1:].isascii() and (words[-1] in _WANTS_MORE_EN
                                                    or " ".join(words[-2:]) in _WANTS_MORE_EN2)


def _last_sentence(core: str) -> str:
    return re.split(r"[.!?。！？]\s*", core)[-1]


def _closes_wh_question(t: str, core: str) -> bool:
    """A question mark after a copula that closes a wh-clause: "How far away the moon is?", "what time it is?".

    The copula is on the trailing-word list because "The problem is" goes on; after a wh-word and with
    Whisper's question mark it ends the question instead (bench.turn_end: "Can you tell me? How far away
    the moon is?" waited --late_silence_ms at its real end).
    """
    if t[-1] not in "?？":
        return False
    last = _WORD.findall(_last_sentence(core).lower())
    return len(last) > 2 and last[-1] in _COPULA and any(w in _WH for w in last[:-2])


def _question_opening(core: str) -> bool:
    """The last sentence opens like a question (and Whisper did not close it with a question mark)."""
    last = _last_sentence(core)
    opening = _WORD.findall(last[:30].lower())
    return bool(opening) and opening[0] in _QUESTION_OPENING and last.isascii()


def end_silence_ms(text: str, default_ms: int, args: TurnEndSettings, complete_prob: float | None = None,
                   longest_pause_ms: float = 0.0) -> int:
    """The silence that should end this turn, given its transcript (and the model's probability, if any).

    ``longest_pause_ms`` is the longest pause this speaker recently went on from
    (:class:`PauseHistory`): a turn that does not plainly end waits that long and
    ``pause_margin_ms`` more, up to ``pause_habit_max_ms``.
    """
    if args.turn_end == "fixed":
        return default_ms
    ending = ending_of(text)
    if ending == "incomplete" or (complete_prob is not None and complete_prob < 0.2):
        return max(default_ms, args.late_silence_ms)
    if ending == "complete" and (complete_prob is None or complete_prob >= 0.5):
        return min(default_ms, args.early_silence_ms)
    wait = default_ms
    if ending == "doubtful" and (complete_prob is None or complete_prob < 0.8):
        wait = max(default_ms, args.doubt_silence_ms)
    if args.pause_margin_ms >= 0 and longest_pause_ms > 0:
        wait = max(wait, min(args.pause_habit_max_ms, round(longest_pause_ms) + args.pause_margin_ms))
    return wait


class PauseHistory:
    """The pauses a speaker went on from, over their last few utterances.

    Whisper writes a full stop at most pauses inside a sentence (bench.turn_end: 8 of the 11
    pauses of 0.45-1.06 s), so the words cannot tell such a pause from the end of a turn;
    the speaker's own habit can: someone who has paused 1 s and gone on gets more than 1 s.
    """

    def __init__(self, utterances: int = 3, prior_ms: float = 0.0) -> None:
        # The prior stands for what came before this speaker's first utterance; it is forgotten
        # like any older utterance once ``utterances`` more have begun.
        self._per_utterance: deque[float] = deque([prior_ms], maxlen=utterances)

    def new_utterance(self) -> None:
        """A new utterance starts (the oldest is forgotten)."""
        self._per_utterance.append(0.0)

    def went_on_after(self, pause_ms: float) -> None:
        """The speaker went on after a pause of ``pause_ms`` (silence from the last speech frame)."""
        self._per_utterance[-1] = max(self._per_utterance[-1], pause_ms)

    @property
    def longest_ms(self) -> float:
        """The longest pause gone on from in the remembered utterances (0: none)."""
        return max(self._per_utterance)
