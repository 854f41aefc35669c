"""ModelSet: load once, warm up with timings, run inference on its own pool (never on the caller's thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from models.base import ChatMessage
from models.llama import LlamaConfig
from models.loader import ModelSet, ModelSetConfig
from models.registry import resolve_test_llm
from tests.unit.models.conftest import SYSTEM_PROMPT, to_16k_float


def test_load_warm_up_and_pool(espeak_8k: Callable[[str], npt.NDArray[np.int16]]) -> None:
    cfg = ModelSetConfig(llama=LlamaConfig(model_path=str(resolve_test_llm())), max_workers=2)
    with ModelSet.load(cfg) as ms:
        assert set(ms.load_report.as_dict()) == {"load_vad", "load_stt", "load_llm", "load_tts"}
        # One ComputeGate shared by the heavy engines (not the VAD: it runs on the media clock).
        assert ms.gate is not None
        assert ms.stt.gate is ms.llm.gate is ms.tts.gate is ms.gate  # type: ignore[attr-defined]
        report = ms.warm_up(SYSTEM_PROMPT)
        assert set(report.as_dict()) == {"vad", "stt", "llm", "tts"}
        assert all(t.seconds > 0 for t in report.timings) and report.total_s < 30
        assert "llm=" in str(report)

        caller = threading.get_ident()
        audio = to_16k_float(espeak_8k("Please call me back tomorrow."))

        def transcribe() -> tuple[str, int]:
            return ms.stt.transcribe(audio).text, threading.get_ident()

        def answer() -> str:
            return "".join(ms.llm.stream_chat([ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", "Hi")],
                                              max_tokens=8, temperature=0.0))  # fmt: skip

        stt_future = ms.executor.submit(transcribe)
        llm_future = ms.executor.submit(answer)
        text, worker = stt_future.result(timeout=30)
        assert "tomorrow" in text.lower() and worker != caller
        assert llm_future.result(timeout=30)
        assert ms.gate.stats.steps > 0
    assert ms.executor._shutdown  # closed by the context manager
