"""Text chat with Parley, for people and scripts.

    python -m agent.chat --user alice                 # interactive, streams tokens
    python -m agent.chat --user alice --once "hi"     # one answer on stdout, then exit 0

Route and sources go to stderr, so ``--once`` prints only the answer on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from agent.config import AgentSettings, add_agent_arguments
from agent.envflags import apply_environment
from agent.events import RouteChosen, SourcesFound, TextDelta, TurnDone
from agent.ids import InvalidIdError, validate_user_id
from agent.logs import configure_logging
from agent.runtime import Agent, InputError


def build_parser() -> argparse.ArgumentParser:
    """The chat's flags: the agent's own, plus who is talking."""
    parser = argparse.ArgumentParser(prog="python -m agent.chat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", required=True, help="User id (memories are kept per user).")
    parser.add_argument("--once", metavar="TEXT", help="Answer TEXT, print the answer, and exit.")
    parser.add_argument("--verbose", action="store_true", help="Log what the agent does.")
    add_agent_arguments(parser)
    apply_environment(parser)  # the same PARLEY_<FLAG> variables as server.py
    return parser


async def _turn(agent: Agent, conv, text: str, stream_to_stdout: bool) -> int:
    async for event in agent.stream_turn(conv, text):
        if isinstance(event, RouteChosen):
            print(f"[route: {event.route} - {event.reason}]", file=sys.stderr, flush=True)
        elif isinstance(event, SourcesFound):
            for i, source in enumerate(event.sources, 1):
                print(f"[{i}] {source.title} <{source.url}>", file=sys.stderr, flush=True)
        elif isinstance(event, TextDelta) and stream_to_stdout:
            print(event.delta, end="", flush=True)
        elif isinstance(event, TurnDone):
            result = event.result
            print(result.text if not stream_to_stdout else "", flush=True)
            print(f"[metrics ms: {result.metrics}]", file=sys.stderr, flush=True)
            return 1 if result.error else 0
    return 1


async def amain(args: argparse.Namespace) -> int:
    """Run the chat; returns the exit code."""
    config = AgentSettings.from_args(args)
    agent = await asyncio.to_thread(Agent.build, config)
    try:
        conv = agent.new_conversation(args.user)
        if args.once is not None:
            return await _turn(agent, conv, args.once, stream_to_stdout=False)
        print("Parley text chat. Empty line or Ctrl-D quits; /new starts a new topic.", file=sys.stderr)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line.strip():
                return 0
            if line.strip() == "/new":
                conv.clear()
                continue
            try:
                await _turn(agent, conv, line, stream_to_stdout=True)
            except InputError as exc:
                print(f"error: {exc}", file=sys.stderr)
    finally:
        await agent.aclose()  # saves the turn's memory before exit


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m agent.chat``."""
    args = build_parser().parse_args(argv)
    configure_logging(logging.INFO if args.verbose else logging.WARNING)
    try:
        validate_user_id(args.user)
        return asyncio.run(amain(args))
    except (InvalidIdError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
