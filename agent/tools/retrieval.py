"""Embedding retrieval over text chunks: split, embed, index in FAISS, take top-k.

Used twice: on the fresh results of each web search, and once at start-up on the
local knowledge folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
from langchain_text_splitters import RecursiveCharacterTextSplitter

from agent.embedding import Embedder
from agent.tools.base import Source

# Chinese sentence ends first, so chunks break between sentences in both languages.
_SEPARATORS = ["\n\n", "\n", "。", "！", "？", ". ", "! ", "? ", "；", "; ", "，", ", ", " ", ""]


@dataclass(frozen=True)
class Chunk:
    """A piece of a document and the document it came from."""

    text: str
    source: Source


@dataclass(frozen=True)
class ScoredChunk:
    """A retrieved chunk with its cosine similarity to the query."""

    chunk: Chunk
    score: float


def split_document(text: str, source: Source, chunk_chars: int = 400, overlap: int = 60) -> list[Chunk]:
    """Split one document into overlapping chunks of at most ``chunk_chars`` characters."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_chars, chunk_overlap=overlap, separators=_SEPARATORS, keep_separator="end"
    )
    return [Chunk(piece.strip(), source) for piece in splitter.split_text(text) if piece.strip()]


class ChunkIndex:
    """A FAISS inner-product index over unit-length chunk embeddings."""

    def __init__(self, embedder: Embedder, chunks: list[Chunk]) -> None:
        self._chunks = chunks
        self._index = faiss.IndexFlatIP(embedder.dim)
        self._embedder = embedder
        if chunks:
            self._index.add(embedder.encode([c.text for c in chunks]))

    def __len__(self) -> int:
        return len(self._chunks)

    def search(self, query: str, k: int, query_vector: np.ndarray | None = None) -> list[ScoredChunk]:
        """The ``k`` chunks closest to ``query``, best first."""
        if not self._chunks or k <= 0:
            return []
        vector = self._embedder.encode([query]) if query_vector is None else query_vector.reshape(1, -1)
        scores, ids = self._index.search(vector, min(k, len(self._chunks)))
        return [ScoredChunk(self._chunks[i], float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]


def format_reference(hits: list[ScoredChunk]) -> tuple[str, list[Source]]:
    """Number the hits for the prompt and return the distinct sources in citation order."""
    sources: list[Source] = []
    lines: list[str] = []
    for hit in hits:
        if hit.chunk.source not in sources:
            sources.append(hit.chunk.source)
        number = sources.index(hit.chunk.source) + 1
        lines.append(f"[{number}] {hit.chunk.source.title}: {hit.chunk.text}")
    return "\n".join(lines), sources
