r"""Text that can always be encoded, even after a lone UTF-16 surrogate came in.

JSON's ``"\ud800"`` escapes can carry lone surrogates into a Python string, and they make UTF-8
encoding fail (a dropped WebSocket, an unsaved memory).
"""

from __future__ import annotations

import re

LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
"""Any surrogate code point: in a decoded Python string, a proper pair is already one character."""
REPLACEMENT = "\ufffd"


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` cannot be encoded as UTF-8."""
    return LONE_SURROGATE.search(text) is not None


def replace_lone_surrogates(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (unchanged, and cheap, when there is none)."""
    return LONE_SURROGATE.sub(REPLACEMENT, text) if has_lone_surrogate(text) else text
