"""Which language a piece of text is in, as far as Parley cares: Chinese or English."""

from __future__ import annotations

import re

HAN_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
"""Han ideographs (CJK unified, extension A, compatibility): the one definition of a Chinese character."""
CJK_PUNCT_RANGES = "\u3000-\u303f\uff00-\uffef"
"""CJK symbols and punctuation, full-width forms: written without spaces around them, like Han."""
HAN = re.compile(f"[{HAN_RANGES}]")
CJK = re.compile(f"[{HAN_RANGES}{CJK_PUNCT_RANGES}]")
"""A Han character or CJK punctuation: text that joins without spaces."""
_LATIN_WORD = re.compile(r"[A-Za-z]+")


def has_han(text: str) -> bool:
    """True when the text contains a Chinese character."""
    return bool(HAN.search(text))


def detect_language(text: str) -> str:
    """``zh`` if Chinese characters make up a fair share of the text, else ``en``."""
    cjk = len(HAN.findall(text))
    words = len(_LATIN_WORD.findall(text))
    # One Chinese character carries about as much as one English word.
    return "zh" if cjk and cjk >= words * 0.5 else "en"
