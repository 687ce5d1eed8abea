"""Which way imports go: the contracts in pyproject.toml ([tool.importlinter]), checked by import-linter.

The first test checks Parley's own tree. The second runs the same contracts over a throwaway tree
of packages named like Parley's, in which every contract is broken once, to show the check fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = (
    "Turn-taking and engines know no transport",
    "Engines know no turn-taking",
    "The agent knows no speech",
    "Tests do not import the benchmarks",
)


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter with the contracts of ``cwd/pyproject.toml`` over the packages found in ``cwd``."""
    # PYTHONPATH is the tree under check only, so the throwaway tree's "speech" is not Parley's.
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_parley_keeps_every_import_contract() -> None:
    result = lint_imports(ROOT)
    for name in CONTRACTS:  # every contract was checked (a renamed one would silently drop out)
        assert f"{name} " in result.stdout, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def _module(root: Path, dotted: str, source: str = "") -> None:
    """Write module ``dotted`` under ``root``, with an ``__init__.py`` in each package on the way."""
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        init = root.joinpath(*parts[:i], "__init__.py")
        init.parent.mkdir(parents=True, exist_ok=True)
        init.touch()
    root.joinpath(*parts[:-1], f"{parts[-1]}.py").write_text(source, encoding="utf-8")


def test_each_contract_fails_when_its_rule_is_broken(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    _module(tmp_path, "speech.transport.server")
    _module(tmp_path, "speech.voice.session", "import speech.transport.server\n")  # turn-taking -> transport
    _module(tmp_path, "speech.engines.factory", "from speech.voice import session\n")  # engines -> turn-taking
    _module(tmp_path, "agent.runtime", "import speech.voice.session\n")  # agent -> speech
    _module(tmp_path, "bench.soak")
    (tmp_path / "tests").mkdir()  # a namespace package, as Parley's tests/ is
    (tmp_path / "tests" / "test_soak.py").write_text("from bench import soak\n", encoding="utf-8")

    result = lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    for name in CONTRACTS:
        assert f"{name} BROKEN" in result.stdout, result.stdout
    for line in ("speech.voice.session -> speech.transport.server", "speech.engines.factory -> speech.voice",
                 "agent.runtime -> speech.voice.session", "tests.test_soak -> bench"):
        assert line in result.stdout, result.stdout
