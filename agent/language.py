"""Which language a piece of text is in, as far as Parley cares: Chinese or English."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")


def detect_language(text: str) -> str:
    """``zh`` if Chinese characters make up a fair share of the text, else ``en``."""
    cjk = len(_CJK.findall(text))
    words = len(_LATIN_WORD.findall(text))
    # One Chinese character carries about as much as one English word.
    return "zh" if cjk and cjk >= words * 0.5 else "en"
