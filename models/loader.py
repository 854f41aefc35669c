"""``ModelSet``: the process's models (VAD, STT, LLM, TTS), loaded once, warmed up, with their own worker pool.

Loading takes seconds and each model holds hundreds of MB, so the gateway creates one
``ModelSet`` at start-up and shares it between calls (every engine here is safe to call
from several threads; per-call state lives in ``VadStream`` objects and in the caller's
message list).

Why the set owns a ``ThreadPoolExecutor``: the media clock must never wait for a model.
The clock thread runs only the VAD (sub-millisecond). Transcriptions are submitted to
:attr:`ModelSet.executor` (a call transcribes at every pause of the caller, and a burst of
calls should queue there rather than thrash every call's latency); the LLM stream and TTS
run on the call's own reply threads (gateway/conversation/pipeline.py, speak.py), each
engine's work on its pinned thread (:mod:`models.pinned`).

The set also owns the :class:`models.gate.ComputeGate` that its STT, LLM and TTS share: on
2 cores two engines computing at once slow each other down dramatically (llama.cpp fell
from ~33 to under 6 tokens/s next to Piper), so heavy steps take turns instead.

Warm-up: the first inference of each engine is much slower than the next ones (weights are
paged in from mmap, ONNX Runtime and CTranslate2 allocate their buffers, and for the LLM the
system prompt has to be evaluated: ~1.3-2 s for Qwen 0.5B).  :meth:`ModelSet.warm_up` does
all of that before the first call is answered and reports what it cost.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, TextIO

import numpy as np
import structlog

from models.base import Llm, ModelError, Stt, Timing, Tts, Vad
from models.gate import ComputeGate
from models.llama import LlamaConfig, LlamaCppLlm
from models.openai_audio import reachable
from models.openai_compat import OpenAiCompatibleLlm, OpenAiConfig
from models.openai_stt import OpenAiStt, OpenAiSttConfig
from models.openai_tts import OpenAiTts, OpenAiTtsConfig
from models.piper import PiperConfigOptions, PiperTts
from models.silero import SileroVad
from models.whisper import WhisperConfig, WhisperStt

__all__ = ["LoadProgress", "ModelSet", "ModelSetConfig", "WarmUpReport", "load_llm", "load_stt", "load_tts"]

log = structlog.get_logger("models")


@dataclass(frozen=True, slots=True)
class ModelSetConfig:
    """What to load.  Every ``None`` path means the pinned default from :mod:`models.registry`."""

    vad_path: str | None = None
    stt_engine: Literal["whisper", "openai"] = "whisper"
    stt: WhisperConfig = field(default_factory=WhisperConfig)
    openai_stt: OpenAiSttConfig = field(default_factory=OpenAiSttConfig)
    llm_engine: Literal["llama", "openai"] = "llama"
    llama: LlamaConfig = field(default_factory=LlamaConfig)
    openai: OpenAiConfig = field(default_factory=OpenAiConfig)
    tts_engine: Literal["piper", "openai"] = "piper"
    tts: PiperConfigOptions = field(default_factory=PiperConfigOptions)
    openai_tts: OpenAiTtsConfig = field(default_factory=OpenAiTtsConfig)
    max_workers: int = 4
    compute_gate: bool = True  # serialize STT/LLM/TTS steps (see models/gate.py); off only for experiments


@dataclass(slots=True)
class WarmUpReport:
    """Load and first-inference timings, for the start-up log."""

    timings: list[Timing] = field(default_factory=list)

    def add(self, name: str, seconds: float, detail: str = "") -> None:
        self.timings.append(Timing(name, seconds, detail))

    @property
    def total_s(self) -> float:
        return sum(t.seconds for t in self.timings)

    def as_dict(self) -> dict[str, float]:
        return {t.name: round(t.seconds, 4) for t in self.timings}

    def __str__(self) -> str:
        return ", ".join(f"{t.name}={t.seconds * 1000:.0f}ms" for t in self.timings)


class ModelSet:
    """VAD, STT, LLM and TTS for the whole process, plus the inference thread pool."""

    vad: Vad
    stt: Stt
    llm: Llm
    tts: Tts

    def __init__(
        self, vad: Vad, stt: Stt, llm: Llm, tts: Tts, *, max_workers: int = 4, gate: ComputeGate | None = None
    ) -> None:
        self.gate = gate
        self.vad = vad
        self.stt = stt
        self.llm = llm
        self.tts = tts
        self.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="model")
        self.load_report = WarmUpReport()

    @classmethod
    def load(cls, config: ModelSetConfig | None = None) -> ModelSet:
        """Load every model (sequentially: on 2 cores parallel loading only interleaves disk reads)."""
        cfg = config or ModelSetConfig()
        gate = ComputeGate() if cfg.compute_gate else None
        report = WarmUpReport()
        progress = LoadProgress(4)
        t = time.perf_counter()
        progress.step("loading the voice activity detector")
        vad = SileroVad(cfg.vad_path)
        report.add("load_vad", time.perf_counter() - t)
        t = time.perf_counter()
        progress.step("loading the speech recognizer")
        stt = load_stt(cfg, gate)
        report.add("load_stt", time.perf_counter() - t)
        t = time.perf_counter()
        progress.step("loading the language model")
        llm = load_llm(cfg, gate)
        report.add("load_llm", time.perf_counter() - t)
        t = time.perf_counter()
        progress.step("loading the voice")
        tts = load_tts(cfg, gate)
        report.add("load_tts", time.perf_counter() - t)
        progress.done(f"models loaded in {report.total_s:.1f} s")
        ms = cls(vad, stt, llm, tts, max_workers=cfg.max_workers, gate=gate)
        ms.load_report = report
        log.info("models_loaded", **report.as_dict())
        return ms

    def warm_up(self, system_prompt: str) -> WarmUpReport:
        """Run each model once and fill the LLM's KV cache with ``system_prompt``; return the timings.

        Whisper runs on 1 s of low-level noise (it may "hear" something: the text is ignored),
        Piper on a short sentence, the VAD on one frame of silence.  An STT or LLM server that
        is down is logged (``stt_warm_up_failed``, ``llm_warm_up_failed``) and the gateway starts
        anyway; a TTS server that is down raises :class:`models.base.TtsError`: without speech
        the bot could not even apologise, so the gateway refuses to start rather than answer mute.
        """
        report = WarmUpReport()
        progress = LoadProgress(3)
        progress.step("warming up the speech recognizer")
        t = time.perf_counter()
        stream = self.vad.new_stream(8000)
        stream.process(np.zeros(320, dtype=np.int16))
        report.add("vad", time.perf_counter() - t)
        noise = (np.random.default_rng(0).standard_normal(16000) * 0.01).astype(np.float32)
        t = time.perf_counter()
        try:
            self.stt.transcribe(noise)
            report.add("stt", time.perf_counter() - t, "1 s of noise")
        except ModelError as exc:
            # A transcription server that is down at start-up must not keep the gateway from answering
            # (as the LLM's): the greeting plays, each turn gets the apology until it is back.
            log.error("stt_warm_up_failed", error=str(exc))
            report.add("stt", time.perf_counter() - t, f"failed: {exc}")
        progress.step("warming up the language model (the agent's prompt)")
        t = time.perf_counter()
        try:
            self.llm.warm_up(system_prompt)
            report.add("llm", time.perf_counter() - t, "system prompt prefix")
        except ModelError as exc:
            # An LLM server that is down at start-up must not keep the gateway from answering:
            # calls get an apology until it is back (and /readyz says so meanwhile).
            log.error("llm_warm_up_failed", error=str(exc))
            report.add("llm", time.perf_counter() - t, f"failed: {exc}")
        progress.step("warming up the voice")
        t = time.perf_counter()
        for _ in self.tts.synthesize("Hello, how can I help you?"):
            pass
        report.add("tts", time.perf_counter() - t, "one short sentence")
        progress.done(f"models warmed up in {report.total_s:.1f} s")
        log.info("models_warmed_up", **report.as_dict())
        return report

    def unreachable_servers(self) -> dict[str, str]:
        """The engines whose OpenAI-compatible server refuses connections now: ``{"stt": "unreachable: URL"}``.

        For ``/readyz``: a gateway whose STT or LLM server is down still answers (with an apology),
        but a dispatcher in front of several gateways should send new calls to one that can hear
        and think.  Checked at each probe (a TCP connect, at most 1 s each), so it clears by itself
        when the server is back.
        """
        out = {}
        for name, engine in (("stt", self.stt), ("llm", self.llm), ("tts", self.tts)):
            if isinstance(engine, OpenAiStt | OpenAiCompatibleLlm | OpenAiTts):
                url = engine.config.base_url
                if not reachable(url):
                    out[name] = f"unreachable: {url}"
        return out

    def close(self) -> None:
        """Stop the pool (waiting for running inferences) and free the engines that hold native memory."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        for engine in (self.llm, self.stt):
            close = getattr(engine, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> ModelSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_stt(cfg: ModelSetConfig, gate: ComputeGate | None = None) -> Stt:
    """The configured speech recognizer alone (`voicegate dial` transcribes the bot with it)."""
    return WhisperStt(cfg.stt, gate=gate) if cfg.stt_engine == "whisper" else OpenAiStt(cfg.openai_stt)


def load_llm(cfg: ModelSetConfig, gate: ComputeGate | None = None) -> Llm:
    """The configured language model alone (`voicegate chat` needs nothing else)."""
    return LlamaCppLlm(cfg.llama, gate=gate) if cfg.llm_engine == "llama" else OpenAiCompatibleLlm(cfg.openai)


def load_tts(cfg: ModelSetConfig, gate: ComputeGate | None = None) -> Tts:
    """The configured voice alone."""
    return PiperTts(cfg.tts, gate=gate) if cfg.tts_engine == "piper" else OpenAiTts(cfg.openai_tts)


class LoadProgress:
    """One line on a terminal that says which model is loading, rewritten in place.

    Loading and warming up take tens of seconds on 2 cores (the LLM's system prompt alone
    1-2 s) and the JSON log says nothing until the end, so someone who typed `make run` saw a
    frozen terminal. The line goes to stderr only when stderr is a terminal: logs piped to a file
    or a collector never get carriage returns.
    """

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty is not None and isatty())
        self.done_steps = 0
        self.started = time.perf_counter()

    def step(self, what: str) -> None:
        self.done_steps += 1
        self._write(f"\r\033[K[{self.done_steps}/{self.total}] {what}...")

    def done(self, summary: str) -> None:
        self._write(f"\r\033[K{summary}\n")

    def _write(self, text: str) -> None:
        if self.enabled:
            self.stream.write(text)
            self.stream.flush()
