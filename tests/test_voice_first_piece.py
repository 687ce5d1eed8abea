"""The first piece of a spoken reply goes to TTS at its first sentence end, however short (pure, fast).

A one-word opening ("Sure.", "好的。") used to be merged with the next sentence, so the reply's first
audio waited for a whole second sentence of tokens (bench.voice_latency --trace: ~250 ms at 50 tokens/s).
"""

from __future__ import annotations

from speech.voice.chunker import SentenceChunker


def pushed(text: str) -> tuple[list[str], list[str]]:
    """The pieces ready while ``text`` streams in character by character, and those left for the flush."""
    chunker = SentenceChunker()
    ready = [piece for ch in text for piece in chunker.push(ch)]
    return ready, chunker.flush()


def test_a_short_first_sentence_is_spoken_before_the_next_one_ends() -> None:
    assert pushed("Sure. Here is a short answer to your question.") == (
        ["Sure."], ["Here is a short answer to your question."])
    assert pushed("好的。我们明天下午去公园散步吧。") == (["好的。", "我们明天下午去公园散步吧。"], [])


def test_later_tiny_sentences_are_still_merged_and_numbers_are_not_sentences() -> None:
    ready, rest = pushed("Yes. It is. It really is true, and that is final.")
    assert ready[0] == "Yes." and "It is. It really is true," in " ".join(ready + rest)
    assert pushed("1. Buy milk and eggs on the way home.")[0] == []
