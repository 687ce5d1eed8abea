"""The offline LLMs on this machine: time to first token, tokens/s, memory, and answer quality.

Each model runs the way Parley runs it (agent/embedded_llm.py: llama.cpp from the xllamacpp
wheel in a child process, Parley's spoken-style system prompt in the user's language) and
answers a fixed set of everyday questions (bench/data/everyday_questions.json, 30 Chinese and
30 English), one at a time. Judged per answer, by script:

- language: a Chinese question gets Chinese characters and no English sentence;
  an English question gets no Chinese characters;
- on topic: the answer contains one of the question's topic words (a crude judge, so the
  answers are recorded in bench/results/embedded_llm_<model>.json for a person to read).

    .venv/bin/python -m bench.embedded_llm [--models qwen2.5-0.5b,smollm2-135m] [--gguf NAME=PATH]
                                           [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import time
import urllib.request
from datetime import date
from pathlib import Path

import psutil

from agent.embedded_llm import EmbeddedLLMServer
from agent.embedded_models import EMBEDDED_MODELS, EmbeddedModel
from agent.graph.prompts import system_prompt
from agent.language import HAN
from bench.common import emit, load_average, machine, print_table, summary_ms
from tests.support.paths import ROOT

QUESTIONS = ROOT / "bench" / "data" / "everyday_questions.json"
RESULTS = ROOT / "bench" / "results"
# An English sentence: three Latin-letter words in a row.
_ENGLISH_SENTENCE = re.compile(r"[A-Za-z']+(?:[ ,]+[A-Za-z']+){2,}")


def answers_in_language(answer: str, language: str) -> bool:
    """Chinese: Chinese characters and no English sentence. English: no Chinese characters."""
    if language == "zh":
        return bool(HAN.search(answer)) and not _ENGLISH_SENTENCE.search(answer)
    return bool(re.search(r"[A-Za-z]", answer)) and not HAN.search(answer)


def on_topic(answer: str, topic: list[str]) -> bool:
    """The answer names one of the topic words (whole words for English)."""
    low = answer.lower()
    return any(re.search(rf"\b{re.escape(w)}\b", low) if w.isascii() else w in answer for w in topic)


def ask(base_url: str, model: str, question: str, language: str, max_tokens: int,
        api_key: str = "") -> dict[str, object]:
    """One streamed chat completion: the answer, time to first token, and llama.cpp's own timings."""
    body = {"model": model, "stream": True, "max_tokens": max_tokens, "temperature": 0.7,
            "messages": [{"role": "system", "content": system_prompt(language, date.today().isoformat())},
                         {"role": "user", "content": question}]}
    request = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {api_key}"})
    start = time.perf_counter()
    ttft = None
    pieces: list[str] = []
    timings: dict[str, float] = {}
    with urllib.request.urlopen(request, timeout=300) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            timings = chunk.get("timings") or timings
            for choice in chunk.get("choices", []):
                text = (choice.get("delta") or {}).get("content")
                if text:
                    ttft = ttft if ttft is not None else (time.perf_counter() - start) * 1000
                    pieces.append(text)
    return {"answer": "".join(pieces).strip(), "ttft_ms": round(ttft or 0.0, 1),
            "tokens": timings.get("predicted_n", 0), "tokens_per_s": round(timings.get("predicted_per_second", 0.0), 1)}


def bench_model(model: EmbeddedModel, path: Path | None, per_language: int, max_tokens: int) -> dict[str, object]:
    """Start the model, ask every question, judge the answers, record them."""
    questions = json.loads(QUESTIONS.read_text())
    started = time.perf_counter()
    server = EmbeddedLLMServer(model, model_path=path).start()
    load_s = time.perf_counter() - started
    try:
        proc = psutil.Process(server.pid)
        records = []
        for language in ("zh", "en"):
            for item in questions[language][:per_language]:
                reply = ask(server.base_url, server.model_name, item["q"], language, max_tokens, server.api_key)
                reply.update(language=language, question=item["q"],
                             in_language=answers_in_language(str(reply["answer"]), language),
                             on_topic=on_topic(str(reply["answer"]), item["topic"]))
                records.append(reply)
        rss_mb = proc.memory_info().rss / 1e6
    finally:
        server.stop()
    row: dict[str, object] = {"model": model.key, "load_s": round(load_s, 1), "rss_mb": round(rss_mb)}
    ttft = summary_ms([float(r["ttft_ms"]) for r in records])  # type: ignore[arg-type]
    row.update(ttft_median_ms=ttft["p50"], ttft_p95_ms=ttft["p95"])
    rates = sorted(float(r["tokens_per_s"]) for r in records if r["tokens"])  # type: ignore[arg-type]
    row["tokens_per_s_median"] = rates[len(rates) // 2] if rates else 0.0
    for language in ("zh", "en"):
        mine = [r for r in records if r["language"] == language]
        row[f"{language}_in_language"] = f"{sum(bool(r['in_language']) for r in mine)}/{len(mine)}"
        row[f"{language}_on_topic"] = f"{sum(bool(r['on_topic']) for r in mine)}/{len(mine)}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"embedded_llm_{model.key}.json").write_text(
        json.dumps({"summary": row, "answers": records}, ensure_ascii=False, indent=1) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(EMBEDDED_MODELS), help="Catalogue keys, comma-separated.")
    parser.add_argument("--gguf", action="append", default=[], metavar="NAME=PATH",
                        help="Also measure a GGUF file outside the catalogue (e.g. a candidate model).")
    parser.add_argument("--quick", action="store_true", help="10 questions per language instead of 30.")
    parser.add_argument("--max_tokens", type=int, default=80, help="Longest answer, in tokens.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object.")
    args = parser.parse_args()
    result: dict[str, object] = {"machine": machine()}
    targets: list[tuple[EmbeddedModel, Path | None]] = [
        (EMBEDDED_MODELS[k], None) for k in args.models.split(",") if k]
    for spec in args.gguf:
        name, _, path = spec.partition("=")
        targets.append((EmbeddedModel(name, name, name, (), "see its package", lambda p=Path(path): p), Path(path)))
    rows = [bench_model(model, path, 10 if args.quick else 30, args.max_tokens) for model, path in targets]
    result["models"] = rows
    result["load_average_after"] = load_average()
    if not args.json:
        print(f"load average before: {result['machine']['load_average']}, after: {result['load_average_after']}")
        print_table("Embedded LLMs (llama.cpp via xllamacpp, 2 threads)", rows)
    emit(result, args.json)


if __name__ == "__main__":
    main()
