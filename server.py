"""Parley's entry point: ``python server.py [flags]`` starts the voice service.

Open http://127.0.0.1:8765/ for the built-in web client; WebSocket clients connect
to ws://127.0.0.1:8765/ws (docs/protocol.md). Keys come from the environment:
LLM_API_KEY, SERPER_API_KEY (and PARLEY_AUTH_TOKEN for --auth_token).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from typing import TYPE_CHECKING

from agent.config import AgentSettings, add_agent_arguments
from agent.embedded_llm import EmbeddedLLMServer, launch_embedded
from agent.envflags import apply_environment
from agent.flags import settings_from_flags
from agent.logs import configure_logging
from speech.allocator import limit_arenas
from speech.transport.drain import drain

if TYPE_CHECKING:
    from speech.engines.factory import SpeechEngines
    from speech.transport.ws_server import ServerSettings

# speech.transport.ws_server and speech.engines.factory pull in agent.runtime (LangGraph, LangChain, the OpenAI client:
# seconds of imports). They are imported inside the functions below, so that main() can launch
# the embedded LLM's process first and the model loads while Python imports them (bench.startup).

log = logging.getLogger("parley")


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """Log level, format and how user ids appear."""
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--log_format", default="text", choices=("text", "json"),
                        help="text for people; json: one object per line with session_id, turn_id, user_id, "
                             "route and timings (default: text)")
    parser.add_argument("--log_user_id", default="plain", choices=("plain", "hash"),
                        help="How user ids appear in logs: as given, or as a keyed hash (key: env "
                             "PARLEY_LOG_HASH_KEY) that still tells users apart (default: plain)")


def build_parser() -> argparse.ArgumentParser:
    """Every flag of the service, grouped: server, LLM, agent, web search, memory, speech."""
    from speech.engines.factory import add_speech_arguments
    from speech.transport.ws_server import add_server_arguments

    parser = argparse.ArgumentParser(prog="python server.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_log_arguments(parser)
    add_server_arguments(parser)
    add_agent_arguments(parser)
    add_speech_arguments(parser)
    apply_environment(parser)
    return parser


def server_settings(args: argparse.Namespace) -> ServerSettings:
    """Server options from flags, with the token from the environment when not given."""
    from speech.transport.ws_server import ServerSettings

    return settings_from_flags(ServerSettings, args)


def exposure_warning(options: ServerSettings) -> str | None:
    """What to warn about when the port is reachable from other machines without a token."""
    if options.host in ("127.0.0.1", "localhost", "::1") or options.auth_token:
        return None
    return (f"Listening on {options.host} without --auth_token: anyone who can reach this port can talk to Parley "
            "and read memories. Set PARLEY_AUTH_TOKEN or --auth_token.")


def load_engines(args: argparse.Namespace) -> SpeechEngines:
    """Build the speech engines and warm each one up (blocking: run it in a thread)."""
    from speech.engines.factory import build_engines

    engines = build_engines(args)
    engines.warm_up()
    return engines


async def amain(args: argparse.Namespace, started: float | None = None,
                embedded: EmbeddedLLMServer | None = None) -> None:
    """Load everything, warm the engines up, and serve until stopped.

    ``embedded`` is the embedded LLM when :func:`main` launched it already.
    """
    from agent.runtime import Agent
    from speech.transport.ws_server import ParleyServer

    started = time.perf_counter() if started is None else started
    options = server_settings(args)
    warning = exposure_warning(options)
    if warning:
        log.warning("%s", warning)
    # The agent (MiniLM, memory, the embedded LLM in its child process) and the speech engines
    # (load, then one warm-up inference each) do not depend on each other. Loaded one after the
    # other, the warm-up waited for the LLM child to come up; side by side they overlap (bench.startup).
    try:
        agent, engines = await asyncio.gather(
            asyncio.to_thread(Agent.build, AgentSettings.from_args(args), embedded=embedded),
            asyncio.to_thread(load_engines, args))
    except BaseException:
        if embedded is not None:
            embedded.stop()
        raise
    server = ParleyServer(agent, engines, options)
    # Handlers go in before PARLEY_READY: a supervisor may stop us as soon as it reads that line,
    # and a SIGTERM still under the default action killed the process without stopping the
    # embedded LLM's child process (bench.startup left llama.cpp servers behind that way).
    stop = asyncio.Event()
    stopped_by: list[signal.Signals] = []
    loop = asyncio.get_running_loop()

    def stop_on(sig: signal.Signals) -> None:
        stopped_by.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_on, sig)
    ready = asyncio.Event()
    serving = asyncio.create_task(server.serve_forever(ready))
    await ready.wait()
    log.info("ready in %.1f s: open http://%s:%d/", time.perf_counter() - started, options.host, options.port)
    print(f"PARLEY_READY http://{options.host}:{options.port}/", flush=True)
    await stop.wait()
    if stopped_by and stopped_by[0] == signal.SIGTERM:  # a supervisor's stop: finish live turns first
        await drain(server, options.drain_timeout_s)
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    await agent.aclose()


def early_embedded_llm(argv: list[str] | None) -> EmbeddedLLMServer | None:
    """Launch the embedded LLM from the LLM flags alone, before the heavy imports (None: not needed)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        return None
    pre = argparse.ArgumentParser(prog="python server.py", add_help=False)
    add_log_arguments(pre)
    add_agent_arguments(pre)
    apply_environment(pre)  # PARLEY_LM_MODEL_URL and the like decide whether the embedded LLM is needed
    known, _ = pre.parse_known_args(argv)  # a bad value here is the same error the full parse gives
    # In the format asked for from the first line on (imports below log, e.g. faiss.loader); main() calls
    # it again to add the auth token to the redaction.
    configure_logging(known.log_level, fmt=known.log_format, user_ids=known.log_user_id)
    return launch_embedded(AgentSettings.from_args(known))


def main(argv: list[str] | None = None) -> int:
    """Parse flags and run the service."""
    started = time.perf_counter()
    # First of all, the slowest thing to load: the embedded LLM, in its own process.
    embedded = early_embedded_llm(argv)
    args = build_parser().parse_args(argv)  # imports the rest of Parley while the model loads
    if args.malloc_arena_max < 0:
        build_parser().error("--malloc_arena_max must be 0 (glibc's default) or more")
    # Before any engine starts its threads: a thread keeps the arena it was given first.
    arenas_limited = limit_arenas(args.malloc_arena_max)
    configure_logging(args.log_level, extra_secrets=(args.auth_token,), fmt=args.log_format,
                      user_ids=args.log_user_id)
    if not arenas_limited:
        log.info("--malloc_arena_max has no effect here: the C library is not glibc")
    asyncio.run(amain(args, started, embedded))
    return 0


if __name__ == "__main__":
    sys.exit(main())
