"""Turns a streamed LLM reply into speakable pieces for TTS.

* The first piece goes out at the first sentence end, however short, or at the first
  clause boundary (``，`` or ``, ``) once it holds a few words, so the first audio starts
  quickly; later pieces end at sentence ends, and tiny sentences are merged with the next one.
* Chinese and English punctuation are both understood and kept in the text (they
  shape the prosody); an ASCII ``.`` only ends a sentence when whitespace (or a Han
  character) follows, so "3.5" and "example.com" are not split.
* Markdown and emoji are stripped so they are not read aloud.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.language import HAN, HAN_RANGES

_CLOSERS = r"[”’\"')）\]*`]*"  # "_" and "~" stay out: as closers they could split a "__"/"~~" pair
_BOUNDARY = re.compile(
    rf"(?P<sent_cjk>[。！？…]+{_CLOSERS})"
    rf"|(?P<sent>[.!?]+{_CLOSERS}(?=\s|[{HAN_RANGES}]))"
    r"|(?P<newline>\n+)"
    rf"|(?P<clause_cjk>[，；：、]+{_CLOSERS})"
    rf"|(?P<clause>[,;:]+{_CLOSERS}(?=\s))"
)
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "no", "prof", "jr", "sr", "u.s"}
_INCOMPLETE_LINK = re.compile(r"!?\[[^\]\n]*(?:\](?:\([^)\n]*)?)?$")
_INCOMPLETE_URL = re.compile(r"https?://\S*$")

_IMAGE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")
_LINK = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_URL = re.compile(r"https?://[^\s)\]]+")
_LINE_MARK = re.compile(r"^[ \t]*(?:#{1,6}[ \t]+|>[ \t]?|(?:[-*+•]|\d{1,3}[.)])[ \t]+)", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*(?:[-*_][ \t]*){3,}$", re.MULTILINE)
_EMPHASIS = re.compile(r"\*+|__+|~~+|`+|(?<!\w)_(?=\w)|(?<=\w)_(?!\w)")
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff\U00002b00-\U00002bff"
    "\ufe0f\u200d\u20e3]"
)
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z0-9\u00c0-\u024f']+")
_LETTER = re.compile(r"[^\W\d_]")


def strip_markdown(text: str, at_line_start: bool = True) -> str:
    """Remove markdown markup, URLs and emoji; keep the words and punctuation.

    ``at_line_start=False`` means ``text`` continues a line, so a leading "- " or "#"
    is not a list bullet or header.
    """
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    if at_line_start:
        text = _LINE_MARK.sub("", _RULE.sub("", text))
    else:  # the first line continues one begun earlier: "**_" there is emphasis, not a rule or a bullet
        first, nl, rest = text.partition("\n")
        text = first + nl + _LINE_MARK.sub("", _RULE.sub("", rest))
    text = _EMPHASIS.sub("", text)
    text = _EMOJI.sub("", text)
    return _SPACES.sub(" ", text).strip()


def speech_units(text: str) -> float:
    """Rough speaking length: one per English word, 0.6 per Han character (~1.7 chars per word's time)."""
    return len(_WORD.findall(text)) + 0.6 * len(HAN.findall(text))


@dataclass
class SentenceChunker:
    """Stateful: ``push`` each text delta, then ``flush`` at the end of the reply.

    Each call returns the pieces that became ready (possibly none). Pieces are never empty.
    """

    first_min_units: float = field(default=3.0, metadata={
        "help": "The first piece may end at a clause boundary once it holds this many words (Han char = 0.6)."})
    min_units: float = field(default=4.0, metadata={
        "help": "A later sentence shorter than this is merged with the next one."})
    max_units: float = field(default=40.0, metadata={
        "help": "A sentence longer than this is cut at a clause boundary."})
    _raw: str = field(default="", init=False, repr=False)
    _emitted: int = field(default=0, init=False, repr=False)
    _line_start: bool = field(default=True, init=False, repr=False)

    def push(self, delta: str) -> list[str]:
        """Add streamed text; return the pieces now complete."""
        self._raw += delta
        pieces: list[str] = []
        while (cut := self._next_cut()) is not None:
            piece = self._take(cut)
            if piece:
                pieces.append(piece)
        return pieces

    def flush(self) -> list[str]:
        """The reply is complete: return whatever is left."""
        piece = self._take(len(self._raw))
        return [piece] if piece else []

    def reset(self) -> None:
        """Start a new reply."""
        self._raw, self._emitted, self._line_start = "", 0, True

    # --- internals -------------------------------------------------------------------

    def _take(self, cut: int) -> str:
        segment, self._raw = self._raw[:cut], self._raw[cut:]
        piece = strip_markdown(segment, at_line_start=self._line_start)
        if segment:
            self._line_start = segment.endswith("\n")
        if piece:
            self._emitted += 1
        return piece

    def _next_cut(self) -> int | None:
        raw = self._raw
        limit = len(raw)
        # Never cut inside a link or URL still being streamed: its text is not known yet.
        for pattern in (_INCOMPLETE_LINK, _INCOMPLETE_URL):
            m = pattern.search(raw)
            if m:
                limit = min(limit, m.start())
        last_clause: int | None = None
        for m in _BOUNDARY.finditer(raw, 0, limit):
            kind = m.lastgroup
            end = m.end()
            if kind == "sent" and self._abbreviation(raw, m.start()):
                continue
            units = speech_units(strip_markdown(raw[:end], self._line_start))
            if kind in ("clause", "clause_cjk"):
                if self._emitted == 0 and units >= self.first_min_units:
                    return end
                if units >= self.max_units and last_clause is not None:
                    return last_clause
                last_clause = end
                continue
            # Sentence end or newline.
            if units >= (self.first_min_units if self._emitted == 0 else self.min_units):
                return end
            if kind in ("sent", "sent_cjk") and self._emitted == 0 and _LETTER.search(raw[:end]):
                # A whole first sentence goes at once however short ("Sure.", "好的。"): waiting for the
                # next one to merge it with delayed the first audio by a sentence of tokens.
                return end
            if kind == "newline" and units > 0:
                return end  # a line (list item, heading) is read as its own piece, however short
        return None

    @staticmethod
    def _abbreviation(raw: str, dot: int) -> bool:
        """``Dr.``, ``e.g.``, ``U.S.`` and the like do not end a sentence."""
        m = re.search(r"([A-Za-z.]+)$", raw[:dot])
        return m is not None and m.group(1).lower().rstrip(".") in _ABBREVIATIONS and raw[dot] == "."
