"""glibc malloc arenas: fewer of them, so memory freed by one engine's thread serves the next.

glibc gives threads that allocate at the same time separate arenas, up to eight per core.
Parley's work runs on many threads (the event loop's workers, Whisper's CTranslate2
threads, ONNX Runtime for Silero and Piper, FAISS, SQLite), and a session's buffers are
allocated on whichever thread happens to run it. Memory freed in one arena cannot serve an
allocation in another, so each arena grows to its own peak and the process keeps the sum.
Each kind of load alone stayed flat in ``bench/soak.py``; the mixed load grew until the
arenas were capped (README, "Security and limits").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from functools import cache

M_ARENA_MAX = -8  # from glibc's <malloc.h>


@cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_info``), else None."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_info, libc.malloc_trim  # noqa: B018 - raise AttributeError on musl or macOS
    except (OSError, AttributeError):
        return None
    libc.tmpfile.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    libc.fflush.argtypes = libc.fileno.argtypes = libc.fclose.argtypes = (ctypes.c_void_p,)
    return libc


def limit_arenas(count: int) -> bool:
    """Let malloc make at most ``count`` arenas (0 keeps glibc's default).

    Call it before threads start: a thread that already has an arena keeps it.
    Returns False where the limit could not be set (not glibc).
    """
    if count < 0:
        raise ValueError(f"malloc arena limit must be 0 (default) or more, not {count}")
    if count == 0:
        return True
    libc = _glibc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, count) == 1)


def arena_count() -> int | None:
    """How many arenas malloc has made in this process (from ``malloc_info``); None if not glibc."""
    libc = _glibc()
    if libc is None:
        return None
    stream = libc.tmpfile()
    if not stream:
        return None
    try:
        if libc.malloc_info(0, stream) != 0 or libc.fflush(stream) != 0:
            return None
        fd = libc.fileno(stream)
        chunks, offset = [], 0
        while chunk := os.pread(fd, 1 << 16, offset):
            chunks.append(chunk)
            offset += len(chunk)
    finally:
        libc.fclose(stream)
    return len(re.findall(rb'<heap nr="\d+">', b"".join(chunks)))


def release_free_memory() -> bool:
    """Give the pages malloc holds free, in every arena, back to the system (``malloc_trim(0)``).

    glibc returns memory by itself only from the top of the main heap; pages freed in the
    middle of a heap or in a thread's arena stay resident until trimmed. Takes each arena's
    lock while it walks it, so call it from a worker thread. False where not glibc.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)  # its result only says whether anything was released
    return True
