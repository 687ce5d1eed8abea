"""agent/flags.py: a settings dataclass becomes flags and comes back, with its variables and secrets."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from agent.flags import add_flags, settings_from_flags


@dataclass
class ExampleSettings:
    """Every kind of field the convention knows."""

    rate: float = field(default=0.5, metadata={"help": "A number."})
    mode: str = field(default="auto", metadata={"help": "A choice.", "choices": ("auto", "on", "off")})
    quiet: bool = field(default=False, metadata={"help": "A switch."})
    token: str | None = field(default=None, metadata={"help": "From a variable too.", "env": "EXAMPLE_TOKEN"})
    url: str = field(default="https://example.org", metadata={"help": "Elsewhere.", "group": "Other"})
    secret: str | None = field(default=None, repr=False, metadata={"env": "EXAMPLE_SECRET"})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="example")
    add_flags(p, ExampleSettings, "Example", "what the example has")
    return p


def test_flags_come_back_as_the_settings_they_were_made_from() -> None:
    args = parser().parse_args(["--rate", "0.25", "--mode", "off", "--quiet", "--url", "http://127.0.0.1:1"])
    settings = settings_from_flags(ExampleSettings, args, environ={})
    assert settings == ExampleSettings(rate=0.25, mode="off", quiet=True, url="http://127.0.0.1:1")
    assert settings_from_flags(ExampleSettings, parser().parse_args([]), environ={}) == ExampleSettings()


def test_a_value_outside_the_choices_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--mode", "sometimes"])
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err


def test_a_variable_fills_in_a_flag_not_given_and_the_flag_wins() -> None:
    env = {"EXAMPLE_TOKEN": "from-env", "EXAMPLE_SECRET": "s3cret"}
    unset = settings_from_flags(ExampleSettings, parser().parse_args([]), environ=env)
    assert (unset.token, unset.secret) == ("from-env", "s3cret")
    given = settings_from_flags(ExampleSettings, parser().parse_args(["--token", "flag"]), environ=env)
    assert given.token == "flag"
    # An empty flag does not switch the variable's token off.
    empty = settings_from_flags(ExampleSettings, parser().parse_args(["--token", ""]), environ=env)
    assert empty.token == "from-env"


def test_help_shows_sections_choices_and_field_defaults_but_no_secret() -> None:
    p = parser()
    p.set_defaults(token="from-env-secret")  # what agent.envflags does with a PARLEY_ variable
    text = p.format_help()
    assert "Example:\n  what the example has" in text and "Other:" in text
    assert "--mode {auto,on,off}" in text and "A number. (default: 0.5)" in text
    assert "A switch.\n" in text  # a switch's help has no default
    assert "(default: None)" in text and "from-env-secret" not in text
    assert "--secret" not in text  # environment only
