"""Whisper's failure modes caught after decoding: loops, invented subtitles, Traditional characters."""

from __future__ import annotations

import re
import zlib

from agent.language import HAN
from speech.text import join_pieces

# Whisper's usual inventions on silence/noise (from subtitle training data): dropped when they are the whole output.
_HALLUCINATIONS = {
    "thank you.", "thanks for watching!", "thank you for watching.", "thank you for watching!", "you",
    "bye.", "subtitles by the amara.org community", "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "字幕由amara.org社区提供", "谢谢观看", "谢谢观看!", "谢谢大家", "優優獨播劇場——youyoutv", "(字幕:j chong)",
}


def is_degenerate(text: str) -> bool:
    """True for Whisper's failure modes: a short unit looped many times, or a known hallucination."""
    t = text.strip()
    if not t:
        return False
    if t.lower() in _HALLUCINATIONS:
        return True
    compact = re.sub(r"\s+", "", t)
    if len(compact) >= 24 and len(zlib.compress(compact.encode())) / len(compact.encode()) < 0.25:
        return True  # very compressible: a loop
    return bool(re.search(r"(.{1,12}?)\1{5,}", compact))


def strip_repeats(text: str) -> str:
    r"""Collapse a phrase repeated 4+ times in a row to one occurrence (the tail of a loop).

    Atomic groups keep the patterns linear: a nested ``(\S+\s*)+`` backtracks
    exponentially on long unspaced Chinese text.
    """
    if HAN.search(text):
        return re.sub(r"(.{2,12}?)\1{3,}", r"\1", text).strip()
    return re.sub(r"((?>\S+)(?:\s+(?>\S+)){0,5}?)(?:\s+\1){3,}", r"\1", text).strip()


def to_simplified(text: str) -> str:
    """Traditional → Simplified characters (PyPI ``zhconv``): the prompt alone does not always hold."""
    try:
        import zhconv
    except ImportError:  # optional: without it the prompt still mostly works
        return text
    return zhconv.convert(text, "zh-cn")


def join_segments(parts: list[str]) -> str:
    """Join segment texts: no spaces next to Chinese, one space otherwise."""
    return join_pieces(part.strip() for part in parts)
