"""Marks along a spoken turn (pause, decode, turn end, first token, first audio): where its last second goes.

Off unless the ``speech.voice.trace`` logger is enabled for DEBUG (``bench.voice_latency --trace``
turns it on); then each mark is a log record whose ``trace`` attribute is a dict with the mark's
``name``, its wall time ``at`` (``time.perf_counter`` seconds) and the ids that tie it to a turn:
``spec`` (one pause's speculative work, or a turn confirmed without one) and ``turn`` (a reply).
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("speech.voice.trace")


def enabled() -> bool:
    """Whether marks are recorded (cheap: checked before building one)."""
    return log.isEnabledFor(logging.DEBUG)


def mark(name: str, at: float | None = None, **ids: object) -> None:
    """Record that ``name`` happened at ``at`` (default: now)."""
    if log.isEnabledFor(logging.DEBUG):
        when = time.perf_counter() if at is None else at
        log.debug(name, extra={"trace": {"name": name, "at": when, **ids}})
