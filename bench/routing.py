"""Routing accuracy per language and embedder, on the labelled set of ``bench/routing_data.py``.

    .venv/bin/python -m bench.routing [--json]

For each way of scoring (MiniLM, USE multilingual, their mean, or one per language) the local
router's similarities are computed once per turn with the real embedders and the real tools'
examples and cues; ``threshold`` and ``margin`` are then chosen on the tuning half (even items)
by the rule the router itself applies (``agent.graph.router.choose_route``), and accuracy is
reported on the held-out half (odd items), per language and per route. Offline (embedded
model) the local decision is final, so accuracy counts ``decision.route`` whether or not the
router was sure; "unsure" is the share a tool-calling remote model would be asked about.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent.config import AgentSettings
from agent.embedding import Embedder, load_embedder
from agent.graph.router import DIRECT_EXAMPLES, LocalRouter, RouteDecision, choose_route
from agent.language import has_han
from agent.memory import MemoryStore
from agent.tools import ToolDeps, ToolRegistry, build_registry
from bench.common import emit, load_average, machine, print_table, summary_ms
from bench.routing_data import FRESH_SET, ROUTING_SET, split_halves
from tests.support.paths import ROOT

Item = tuple[str, str, str]
EVERYDAY = ROOT / "bench" / "data" / "everyday_questions.json"
EVERYDAY_CLOCK = {"今天是星期几？", "What day of the week is it today?"}


def everyday_items() -> list[Item]:
    """bench.embedded_llm's 60 everyday questions, written for another purpose: all plain conversation but two."""
    data = json.loads(EVERYDAY.read_text())
    return [(q["q"], lang, "clock" if q["q"] in EVERYDAY_CLOCK else "direct") for lang in ("zh", "en")
            for q in data[lang]]
THRESHOLDS = [round(x, 2) for x in np.arange(0.10, 0.86, 0.01)]


@dataclass
class Scored:
    """One labelled turn with its route similarities and the tools whose cues match it."""

    text: str
    language: str
    route: str
    scores: dict[str, float]
    cued: list[str]


def build_registry_for(embedder: Embedder, memory_dir: str) -> ToolRegistry:
    """The built-in tools, as the agent builds them (web search with a key, so no knowledge folder is indexed)."""
    config = AgentSettings(memory_dir=memory_dir, serper_api_key="bench-makes-no-calls")
    return build_registry(ToolDeps(config, embedder, MemoryStore(memory_dir, embedder=embedder)))


def score_all(router: LocalRouter, registry: ToolRegistry, items: list[Item]) -> tuple[list[Scored], list[float]]:
    """Similarities and cues for every item, and the time of each ``scores`` call (ms).

    Each timed call embeds the text with a trailing space (the same tokens, the same vector) so that
    it misses the embedders' cache of recent texts: their parts are shared between the scorings.
    """
    out, times = [], []
    for text, language, route in items:
        cued = [tool.name for tool in registry if tool.cue_matches(text)]
        start = time.perf_counter()
        router.scores(text + " ")
        times.append((time.perf_counter() - start) * 1000)
        out.append(Scored(text, language, route, router.scores(text), cued))
    return out, times


def per_language(a: list[Scored], b: list[Scored]) -> list[Scored]:
    """USE's scores for a turn with Han characters, MiniLM's otherwise (``a`` is MiniLM, ``b`` USE)."""
    return [y if has_han(x.text) else x for x, y in zip(a, b, strict=True)]


def decide(item: Scored, threshold: float, margin: float, cues: bool = True) -> RouteDecision:
    return choose_route(item.scores, item.cued if cues else [], threshold, margin)


def accuracy(items: list[Scored], threshold: float, margin: float, cues: bool = True) -> float:
    return float(np.mean([decide(i, threshold, margin, cues).route == i.route for i in items])) if items else 0.0


def balanced(items: list[Scored], threshold: float, margin: float, cues: bool = True) -> float:
    """Mean of the English and the Chinese accuracy, so neither language outweighs the other."""
    return float(np.mean([accuracy([i for i in items if i.language == lang], threshold, margin, cues)
                          for lang in ("en", "zh")]))


def tune(items: list[Scored], cues: bool = True) -> tuple[float, float]:
    """The threshold with the best balanced accuracy on ``items`` (among ties, the highest), and the margin.

    The route itself does not depend on the margin (an unsure decision keeps the best route when it
    clears the threshold, as a sure one does); the margin only decides which turns a tool-calling
    remote model is asked about, so it stays at its default and "unsure" reports what it gives.
    Ties are common (a plateau of equally good thresholds); the highest sends the fewest turns to a tool,
    and a needless tool costs more (a tool call, a longer prompt) than a missed one (the model answers).
    """
    margin = AgentSettings().router_margin
    grid = [(balanced(items, t, margin, cues), t) for t in THRESHOLDS]
    best = max(g[0] for g in grid)
    ties = sorted(t for acc, t in grid if acc >= best - 1e-9)
    return ties[-1], margin


def report(name: str, sets: dict[str, list[Scored]], fixed: tuple[float, float] | None,
           times: list[float]) -> dict[str, object]:
    tune_items, held = sets["tune"], sets["held"]
    threshold, margin = fixed or tune(tune_items)
    emb_t, emb_m = fixed or tune(tune_items, cues=False)
    row: dict[str, object] = {"scoring": name, "threshold": threshold, "margin": margin}
    row["tune"] = round(balanced(tune_items, threshold, margin), 3)
    for lang in ("en", "zh"):
        part = [i for i in held if i.language == lang]
        row[f"held {lang}"] = round(accuracy(part, threshold, margin), 3)
        row[f"held {lang}, no cues"] = round(accuracy(part, emb_t, emb_m, cues=False), 3)
    for set_name in ("everyday", "fresh"):
        for lang in ("en", "zh"):
            row[f"{set_name} {lang}"] = round(accuracy([i for i in sets[set_name] if i.language == lang],
                                                       threshold, margin), 3)
    row["everyday to web_search"] = sum(decide(i, threshold, margin).route == "web_search" for i in sets["everyday"])
    decisions = [decide(i, threshold, margin) for i in held]
    row["unsure"] = round(float(np.mean([not d.confident for d in decisions])), 3)
    row["route ms p50"] = summary_ms(times)["p50"] if times else ""
    routes = sorted({i.route for i in held})
    row["per route (held)"] = {
        f"{lang}/{r}": round(accuracy([i for i in held if i.language == lang and i.route == r], threshold, margin), 2)
        for lang in ("en", "zh") for r in routes
    }
    row["errors (held)"] = [f"{i.text} -> {d.route} ({i.route})" for i, d in zip(held, decisions, strict=True)
                            if d.route != i.route]
    for set_name in ("tune", "fresh", "everyday"):
        row[f"errors ({set_name})"] = [f"{i.text} -> {d.route} ({i.route}) {d.reason}" for i in sets[set_name]
                                       if (d := decide(i, threshold, margin)).route != i.route]
    return row


def check_no_leak(registry: ToolRegistry) -> None:
    """The labelled set must not contain the router's own examples, or accuracy would be flattered."""
    examples = set(DIRECT_EXAMPLES) | {ex for tool in registry for ex in tool.examples}
    leaked = [text for text, _, _ in (*ROUTING_SET, *FRESH_SET, *everyday_items()) if text in examples]
    if leaked:
        raise SystemExit(f"labelled turns that are router examples: {leaked}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--errors", choices=("held", "tune", "fresh", "everyday"), default="held",
                        help="Which half's misrouted turns to list (tune: while editing examples and cues).")
    args = parser.parse_args()
    load_start = load_average()
    tune_raw, held_raw = split_halves()
    everyday = everyday_items()
    # The everyday questions are mostly plain conversation, as real turns are: half of them join the tuning
    # half, so that the threshold is not chosen on a set where only a quarter of the turns need no tool.
    raw = {"tune": tune_raw + everyday[0::2], "held": held_raw, "everyday": everyday[1::2], "fresh": list(FRESH_SET)}
    scored: dict[str, tuple[dict[str, list[Scored]], list[float]]] = {}
    loaders: dict[str, Callable[[], Embedder]] = {
        "minilm": lambda: load_embedder("minilm"),
        "use-multilingual": lambda: load_embedder("use-multilingual"),
        "minilm+use (mean)": lambda: load_embedder("minilm+use"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, load in loaders.items():
            embedder = load()
            registry = build_registry_for(embedder, f"{tmp}/{len(scored)}")
            check_no_leak(registry)
            router = LocalRouter(registry, embedder, 0.5, 0.05)
            router.scores("warm up")
            sets, times = {}, []
            for set_name, items in raw.items():
                sets[set_name], took = score_all(router, registry, items)
                times += took
            scored[name] = (sets, times)
    mini, use = scored["minilm"][0], scored["use-multilingual"][0]
    scored["per language (zh: USE, en: MiniLM)"] = ({k: per_language(mini[k], use[k]) for k in raw}, [])
    defaults = AgentSettings()
    rows = [report("minilm, 0.55 (before)", mini, (0.55, 0.08), scored["minilm"][1])]
    rows += [report(name, sets, None, times) for name, (sets, times) in scored.items()]
    print(f"Defaults: --router_embedding_model_name {defaults.router_embedding_model_name} "
          f"--router_threshold {defaults.router_threshold} --router_margin {defaults.router_margin}")
    table = [{k: v for k, v in r.items() if not isinstance(v, list | dict)} for r in rows]
    print_table(f"Routing: {len(raw['tune'])} tuning / {len(held_raw)} held-out / {len(raw['everyday'])} everyday "
                f"held-out / {len(FRESH_SET)} fresh turns (load {load_start[0]})", table)
    for row in rows:
        print(f"\n{row['scoring']}: {row['per route (held)']}")
        for err in row[f"errors ({args.errors})"]:  # type: ignore[attr-defined]
            print(f"  {err}")
    emit({"machine": machine(), "load_average_end": load_average(), "turns": {k: len(v) for k, v in raw.items()},
          "results": rows}, args.json)


if __name__ == "__main__":
    main()
