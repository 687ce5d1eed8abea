"""Text rules shared by the speech stages: where the script changes, how pieces join.

What counts as a Chinese character is defined once, in :mod:`agent.language`; Latin-script
words join with a space, Chinese (and CJK punctuation) joins without one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from agent.language import CJK, HAN

_LATIN_WORD = re.compile(r"[A-Za-z]")


def join_words(first: str, second: str) -> str:
    """Join two pieces of text: a space between Latin-script words, none next to Chinese."""
    if not first:
        return second
    if not second:
        return first
    return first + second if CJK.match(first[-1]) or CJK.match(second[0]) else f"{first} {second}"


def join_pieces(pieces: Iterable[str]) -> str:
    """Join many pieces with :func:`join_words`, skipping empty ones."""
    out = ""
    for piece in pieces:
        out = join_words(out, piece)
    return out


def split_by_script(text: str, default: str = "en") -> list[tuple[str, str]]:
    """Split text into (language, run) pieces: Han runs are ``zh``, Latin-letter runs ``en``.

    Digits, spaces and punctuation have no script of their own: they join the run
    they sit in (or the next one at the start), so "2024年" stays Chinese and
    "GPT-4," stays English.
    """
    runs: list[tuple[str, str]] = []
    current_lang: str | None = None
    buf: list[str] = []
    for ch in text:
        if HAN.match(ch) or (CJK.match(ch) and current_lang == "zh"):
            lang: str | None = "zh"
        elif _LATIN_WORD.match(ch):
            lang = "en"
        else:
            lang = None
        if lang is not None and current_lang is not None and lang != current_lang:
            runs.append((current_lang, "".join(buf)))
            buf = []
        if lang is not None:
            current_lang = lang
        buf.append(ch)
    if buf:
        runs.append((current_lang or default, "".join(buf)))
    # Merge a run that holds nothing speakable (e.g. only punctuation) into its neighbour.
    merged: list[tuple[str, str]] = []
    for lang, run in runs:
        if merged and (not re.search(r"\w", run) or merged[-1][0] == lang):
            merged[-1] = (merged[-1][0], merged[-1][1] + run)
        else:
            merged.append((lang, run))
    return [(lang, run) for lang, run in merged if run.strip()]
