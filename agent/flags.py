"""Settings dataclasses as command-line flags: one convention for every flag Parley has.

Each settings field that is a flag carries its text in ``field(metadata=...)``:

* ``help`` (required for a flag): what the setting does; `` (default: ...)`` is appended from the field.
* ``choices`` (optional): the only values accepted.
* ``group`` (optional): the ``--help`` section, when one dataclass spans several (``AgentSettings``).
* ``env`` (optional): a variable read when the flag is not given (``SERPER_URL``, ``PARLEY_AUTH_TOKEN``).
  A field with ``env`` and no ``help`` is not a flag: a secret, from the environment only.

``add_flags`` turns a dataclass into flags, ``settings_from_flags`` turns parsed flags back into
it. A ``bool`` field is an on/off switch (``store_true``). Every flag can also be set as
``PARLEY_<FLAG>`` (:mod:`agent.envflags`), which works on any parser.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import MISSING, Field, fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance  # typeshed's name for "an instance of some dataclass"

SettingsT = TypeVar("SettingsT", bound="DataclassInstance")


def flag(help: str, group: str | None = None, **extra: object) -> dict[str, object]:
    """A flag's metadata: ``field(default=..., metadata=flag("What it does.", "Section", choices=...))``."""
    return {"help": help, **({"group": group} if group is not None else {}), **extra}


def is_flag(f: Field[Any]) -> bool:
    """Whether a settings field is a command-line flag (it has a ``help`` text)."""
    return "help" in f.metadata


def _default(f: Field[Any]) -> Any:
    return None if f.default is MISSING else f.default


def add_flags(parser: argparse.ArgumentParser, settings: type[DataclassInstance], group: str | None = None,
              description: str | None = None) -> None:
    """Add a flag ``--<name>`` for every field of ``settings`` that has a ``help`` text.

    Fields go in the section named by their ``group`` metadata, else in ``group`` (with
    ``description``), else in the parser's own options.
    """
    sections: dict[str | None, argparse._ArgumentGroup] = {}

    def section(title: str | None) -> argparse._ArgumentGroup | argparse.ArgumentParser:
        if title is None:
            return parser
        if title not in sections:
            sections[title] = parser.add_argument_group(title, description if title == group else None)
        return sections[title]

    for f in fields(settings):
        if not is_flag(f):
            continue
        default = _default(f)
        target = section(f.metadata.get("group", group))
        if isinstance(default, bool):
            target.add_argument(f"--{f.name}", action="store_true", default=default, help=f.metadata["help"])
            continue
        # The help shows the field's default, never the value in effect: that may come from the
        # environment and be a secret (PARLEY_AUTH_TOKEN, a PARLEY_MEMORY_DB password).
        shown = str(default).replace("%", "%%")  # argparse %-formats help texts
        target.add_argument(
            f"--{f.name}",
            # No parser default where a variable fills in a flag not given (settings_from_flags).
            default=None if "env" in f.metadata else default,
            type=type(default) if default is not None else str,
            choices=f.metadata.get("choices"),
            help=f"{f.metadata['help']} (default: {shown})",
        )


def settings_from_flags(settings: type[SettingsT], namespace: argparse.Namespace,
                        environ: Mapping[str, str] | None = None) -> SettingsT:
    """Build ``settings`` from parsed flags; other attributes of ``namespace`` are ignored.

    A field the namespace lacks (or holds as None) takes its ``env`` variable when that is set,
    else the field's default. For a field with a variable, an empty value counts as not given, as
    an empty variable does (``--auth_token ""`` must not turn off the token PARLEY_AUTH_TOKEN sets).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(settings):
        given = getattr(namespace, f.name, None)
        variable = f.metadata.get("env")
        if given is not None and not (variable and given == ""):
            values[f.name] = given
        elif variable and env.get(variable):
            values[f.name] = env[variable]
    return settings(**values)
