"""Every command-line flag from the environment: ``--max_sessions 32`` is also ``PARLEY_MAX_SESSIONS=32``.

A deployment (a container, a systemd unit) can then be configured without a command line.
The environment only changes defaults, so a flag given on the command line still wins. A
value that does not parse is refused with the variable's name, as a bad flag would be; an
on/off flag takes 1/true/yes/on or 0/false/no/off; an empty variable counts as unset.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

PREFIX = "PARLEY_"
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def env_name(dest: str) -> str:
    """The variable for a flag's destination: ``max_sessions`` -> ``PARLEY_MAX_SESSIONS``."""
    return PREFIX + dest.upper()


def _flag_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions  # argparse has no public list of a parser's actions
            if a.option_strings and a.dest != "help" and not isinstance(a, argparse._HelpAction)]


def _parse(parser: argparse.ArgumentParser, action: argparse.Action, name: str, raw: str) -> object:
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        word = raw.strip().lower()
        if word not in TRUE + FALSE:
            parser.error(f"{name}={raw!r}: expected one of {', '.join(TRUE + FALSE)}")
        on = word in TRUE
        return on if isinstance(action, argparse._StoreTrueAction) else not on
    try:
        value = action.type(raw) if callable(action.type) else raw
    except (TypeError, ValueError):
        parser.error(f"{name}={raw!r}: not a valid value for {action.option_strings[0]}")
    if action.choices is not None and value not in action.choices:
        parser.error(f"{name}={raw!r}: choose from {', '.join(map(str, action.choices))}")
    return value


def apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    """Name each flag's variable in ``--help``; take defaults from the variables that are set.

    Call it after every flag is added and before ``parse_args``.
    """
    env = os.environ if environ is None else environ
    for action in _flag_actions(parser):
        name = env_name(action.dest)
        if action.help is not argparse.SUPPRESS and name not in (action.help or ""):
            action.help = f"{action.help or ''} [env {name}]".strip()
        if env.get(name, "") != "":  # set but empty (as compose files often leave them) counts as unset
            parser.set_defaults(**{action.dest: _parse(parser, action, name, env[name])})
