"""Facts that change: a question about now finds the newer statement, even when BM25 only matches chance words."""

from __future__ import annotations

import random

import pytest

from agent.embedding import MEMORY_EMBEDDING_MODEL, load_embedder
from agent.memory import MemoryStore
from agent.memory.lexical import LexicalIndex, tokenize

DAY = 86400.0
T0 = 1_767_000_000.0  # late December 2025

# Chit-chat in which "work" means "function": BM25 matches it to "which company do I work for?",
# though none of it answers the question.
CHAT = [
    "The new blender does not work, I have to send it back.", "Did the stain remover work? Not at all.",
    "My sourdough plan did not work, the loaf was flat.", "The printer does not work with my laptop.",
    "That new hair mask seems to work, my hair is softer.", "The heating does not work again, it is freezing.",
    "I had lunch with {name} near the river, the soup was good.", "The weather was awful, rain all afternoon.",
    "{name} sent me a funny video about cats.", "I watched a documentary about the ocean.",
    "Can you recommend a good book for a long flight?", "I tried a new recipe but it came out too salty.",
    "My phone screen cracked, I need to get it repaired.", "The neighbours had a party until late again.",
    "I spent the evening fixing the bike's chain.", "I'm trying to drink less coffee, it's hard.",
    "{name} is thinking of moving house.", "The train was delayed again this morning.",
    "My knee hurts a bit after the weekend.", "{name} and I played cards until midnight.",
]
OLD = "My new employer is Northwind, the shipping firm by the harbour."
NEW = "I changed employers: from today I am a designer at Kestrel Games."


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """40 sessions of 5 turns, four days apart; the job is stated in session 2 and changed in session 30."""
    rng = random.Random(3)
    items = []
    for s in range(40):
        turns = [rng.choice(CHAT).format(name=rng.choice(["Anna", "Tom", "Mia", "Leo"])) for _ in range(5)]
        turns[1] = OLD if s == 2 else NEW if s == 30 else turns[1]
        items += [{"text": t, "session_id": f"s{s}", "created_at": T0 + s * 4 * DAY + 60 * j}
                  for j, t in enumerate(turns)]
    st = MemoryStore(tmp_path_factory.mktemp("mem"), embedder=load_embedder(MEMORY_EMBEDDING_MODEL))
    st.add_many("u", items)
    yield st
    st.close()


@pytest.mark.parametrize("question", ["Which company do I work for now?",
                                      "What kind of company do I work for at the moment?"])
def test_present_state_question_finds_the_newer_statement(store, question):
    texts = [h.text for h in store.search("u", question, k=5, now=T0 + 170 * DAY)]
    assert NEW in texts, texts
    assert OLD not in texts or texts.index(NEW) < texts.index(OLD), texts


def test_coverage_is_low_when_the_query_has_words_the_history_never_uses():
    docs = ["the blender does not work", "the printer does not work", "my cat likes the sofa",
            "which company do I work for", "rain all afternoon"]
    ix = LexicalIndex(list(range(len(docs))), [tokenize(d) for d in docs])
    assert ix.score(tokenize("which company do I work for?")).coverage() > 0.9  # a stored turn says it all
    partial = ix.score(tokenize("what kind of firm employs me, where do I work?")).coverage()
    assert 0 < partial < 0.5  # only "work" is known: the hits are chance
    assert ix.score(tokenize("zebra")).coverage() == 0.0
    assert ix.score([]).coverage() == 0.0
