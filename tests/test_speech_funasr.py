"""FunASR adapter: loads a Paraformer that the test builds (tiny config + random weights) from a local folder.

The real Paraformer weights cannot be downloaded here, so this checks the loading and
calling code, not the recognition quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speech.engines.base import EngineUnavailableError

funasr = pytest.importorskip("funasr", reason="funasr is optional: pip install -r requirements-funasr.txt")

# The smallest Paraformer FunASR builds: the production architecture (SANM encoder,
# SANM decoder, CIF predictor, LFR fbank frontend) with one 32-wide block each.
CONFIG = """
model: Paraformer
model_conf:
  ctc_weight: 0.0
  lsm_weight: 0.1
  length_normalized_loss: true
  predictor_weight: 1.0
  predictor_bias: 1
  sampling_ratio: 0.75
encoder: SANMEncoder
encoder_conf:
  output_size: 32
  attention_heads: 2
  linear_units: 64
  num_blocks: 1
  dropout_rate: 0.1
  positional_dropout_rate: 0.1
  attention_dropout_rate: 0.1
  input_layer: pe
  pos_enc_class: SinusoidalPositionEncoder
  normalize_before: true
  kernel_size: 11
  sanm_shfit: 0
  selfattention_layer_type: sanm
decoder: ParaformerSANMDecoder
decoder_conf:
  attention_heads: 2
  linear_units: 64
  num_blocks: 1
  dropout_rate: 0.1
  positional_dropout_rate: 0.1
  self_attention_dropout_rate: 0.1
  src_attention_dropout_rate: 0.1
  att_layer_num: 1
  kernel_size: 11
  sanm_shfit: 0
predictor: CifPredictorV2
predictor_conf:
  idim: 32
  threshold: 1.0
  l_order: 1
  r_order: 1
  tail_threshold: 0.45
frontend: WavFrontend
frontend_conf:
  fs: 16000
  window: hamming
  n_mels: 80
  frame_length: 25
  frame_shift: 10
  lfr_m: 7
  lfr_n: 6
specaug: null
tokenizer: CharTokenizer
tokenizer_conf:
  unk_symbol: <unk>
input_size: 560
"""
TOKENS = ["<blank>", "<s>", "</s>", *"你好今天气很我们去公园", "<unk>"]


def build_tiny_paraformer(folder: Path) -> Path:
    """config.yaml + tokens.json + model.pt of randomly initialised weights."""
    import torch
    import yaml
    from funasr.register import tables

    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(CONFIG)
    (folder / "tokens.json").write_text(json.dumps(TOKENS, ensure_ascii=False))
    conf = yaml.safe_load(CONFIG)
    model_cls = tables.model_classes[conf["model"]]
    torch.manual_seed(0)
    kwargs = {k: v for k, v in conf.items() if k not in ("model", "model_conf", "frontend", "frontend_conf",
                                                          "tokenizer", "tokenizer_conf")}
    model = model_cls(**kwargs, **conf["model_conf"], vocab_size=len(TOKENS))
    torch.save(model.state_dict(), folder / "model.pt")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_paraformer(tmp_path_factory.mktemp("funasr") / "paraformer-tiny")


@pytest.mark.slow
def test_loads_and_transcribes_from_a_local_folder(model_dir: Path) -> None:
    from speech.engines.asr_funasr import FunASR, FunASRSettings

    asr = FunASR(FunASRSettings(stt_model_name=str(model_dir)))
    assert not asr.has_vad and not asr.has_punc
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    result = asr.transcribe(audio, None)
    assert isinstance(result.text, str)  # random weights: any text, but the whole path ran
    assert set(result.text) <= set("".join(TOKENS[3:-1]) + " ")
    assert result.duration_s == pytest.approx(2.0)
    assert asr.transcribe(np.zeros(100, np.float32)).text == ""


def test_refuses_what_is_not_a_local_folder(tmp_path: Path) -> None:
    from speech.engines.asr_funasr import FunASR, FunASRSettings

    with pytest.raises(EngineUnavailableError, match="not a local FunASR model folder"):
        FunASR(FunASRSettings(stt_model_name="paraformer-zh"))  # a hub name: would download
    with pytest.raises(EngineUnavailableError, match="--stt_model_name"):
        FunASR(FunASRSettings())


def test_sibling_vad_and_punc_folders_are_found(tmp_path: Path) -> None:
    from speech.engines.asr_funasr import _sibling

    for name in ("paraformer", "fsmn-vad", "ct-punc", "empty-vad-folder"):
        (tmp_path / name).mkdir()
    for name in ("paraformer", "fsmn-vad", "ct-punc"):
        (tmp_path / name / "config.yaml").write_text("model: X\n")
    assert _sibling(tmp_path / "paraformer", "vad") == str(tmp_path / "fsmn-vad")
    assert _sibling(tmp_path / "paraformer", "punc") == str(tmp_path / "ct-punc")
