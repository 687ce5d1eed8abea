"""Sentence chunker: unit cases and a property test (pure, fast)."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from speech.voice.chunker import SentenceChunker, speech_units, strip_markdown


def chunk(text: str, step: int = 1, **kwargs: float) -> list[str]:
    c = SentenceChunker(**kwargs)
    pieces: list[str] = []
    for i in range(0, len(text), step):
        pieces += c.push(text[i:i + step])
    return pieces + c.flush()


def test_first_piece_at_a_comma_then_sentences() -> None:
    # "We go." is tiny (under min_units): merged with the next sentence.
    text = "Sure thing, my friend, here is the plan for today. We go. Then we eat at home."
    assert chunk(text) == ["Sure thing, my friend,", "here is the plan for today.", "We go. Then we eat at home."]


def test_chinese_clause_then_sentence_ends_and_punctuation_kept() -> None:
    text = "好的，我们今天下午去公园散步吧。天气很好！你想去哪里？我觉得颐和园不错，人也不多。"
    pieces = chunk(text, step=2)
    assert pieces[0] == "好的，我们今天下午去公园散步吧。"
    assert pieces[1:] == ["天气很好！你想去哪里？", "我觉得颐和园不错，人也不多。"]
    assert "".join(pieces) == text


def test_first_piece_at_chinese_comma_once_long_enough() -> None:
    assert chunk("今天北京的天气非常好，适合出去走走。")[0] == "今天北京的天气非常好，"


def test_decimal_numbers_urls_and_abbreviations_do_not_split() -> None:
    pieces = chunk("It costs 3.5 dollars at shop.example.com today. Dr. Smith agrees, e.g. he paid.")
    assert pieces == ["It costs 3.5 dollars at shop.example.com today.", "Dr. Smith agrees, e.g. he paid."]


def test_markdown_and_emoji_are_not_read() -> None:
    text = ("## Plan\n**First**, read the [guide](https://x.org/a.b?c=1). 😀 Use `pip` now!\n"
            "- buy *milk*\n- buy eggs 🥚\n1. done\n---\n> quoted text here.")
    pieces = chunk(text, step=3)
    assert pieces == ["Plan", "First, read the guide.", "Use pip now!", "buy milk", "buy eggs", "done",
                      "quoted text here."]
    assert not any(re.search(r"[*#`\[\]()]|http|😀|🥚", p) for p in pieces)


def test_tiny_sentences_are_merged_and_long_ones_cut() -> None:
    assert chunk("Hello there friend. Hi. Ok. That is all for now.") == [
        "Hello there friend.", "Hi. Ok. That is all for now."]
    long = ", ".join(["one two three four five"] * 12) + "."
    pieces = chunk(long, max_units=20)
    assert len(pieces) > 2 and all(speech_units(p) <= 26 for p in pieces)


def test_no_text_no_pieces() -> None:
    assert chunk("") == []
    assert chunk("**  ** 😀\n\n") == []
    assert chunk("Hello") == ["Hello"]


def test_strip_markdown_keeps_words_inside_lines() -> None:
    assert strip_markdown("C# and 2 - 1 = 1") == "C# and 2 - 1 = 1"
    assert strip_markdown("![img](a.png) see __this__") == "see this"
    assert strip_markdown("- not a bullet", at_line_start=False) == "- not a bullet"


FRAGMENTS = st.sampled_from([
    "hello", "world", "the", "3.5", "Dr.", " ", " ", "\n", "\n\n", ",", ", ", ".", ". ", "!", "? ", "**", "*",
    "`", "# ", "- ", "1. ", "[link](http://a.b/c)", "😀", "你好", "我们", "，", "。", "！", "？", "、", "(", ")",
    "e.g.", "_", "~~",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(FRAGMENTS, max_size=60), st.integers(min_value=1, max_value=7))
@example(['3.5', '3.5', ', ', '**', '_'], 1)  # found by this test: a piece starting "**_" was taken for a rule
def test_property_pieces_cover_the_cleaned_text(parts: list[str], step: int) -> None:
    text = "".join(parts)
    pieces = chunk(text, step=step)
    assert all(p.strip() for p in pieces), "no empty pieces"
    assert all(p == p.strip() for p in pieces)
    squash = lambda s: re.sub(r"\s+", "", s)  # noqa: E731
    assert squash("".join(pieces)) == squash(strip_markdown(text))
