"""The local knowledge folder: plain text and markdown files indexed at start-up."""

from __future__ import annotations

import logging
from pathlib import Path

from agent.embedding import Embedder
from agent.tools.base import Source
from agent.tools.retrieval import Chunk, ChunkIndex, ScoredChunk, split_document

log = logging.getLogger(__name__)

_SUFFIXES = {".txt", ".md", ".markdown"}
_MAX_FILE_BYTES = 2_000_000


class KnowledgeBase:
    """Chunks of every ``.txt``/``.md`` file under a folder, searchable by meaning."""

    def __init__(self, folder: Path, embedder: Embedder) -> None:
        self.folder = folder
        chunks: list[Chunk] = []
        files = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in _SUFFIXES and p.name != "README.md"
        ) if folder.is_dir() else []
        for path in files:
            if path.stat().st_size > _MAX_FILE_BYTES:
                log.warning("knowledge: skipping %s (over %d bytes)", path, _MAX_FILE_BYTES)
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            title = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.strip()), path.stem)
            source = Source(title=title, url=path.relative_to(folder).as_posix(), snippet=text[:160].strip())
            chunks.extend(split_document(text, source))
        self.files = len(files)
        self._index = ChunkIndex(embedder, chunks)
        log.info("knowledge: %d chunks from %d files in %s", len(chunks), len(files), folder)

    def __len__(self) -> int:
        return len(self._index)

    def search(self, query: str, k: int) -> list[ScoredChunk]:
        """The ``k`` chunks closest to ``query``."""
        return self._index.search(query, k)
