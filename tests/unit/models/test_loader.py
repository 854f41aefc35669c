"""ModelSet: load once, warm up with timings, run inference on its own pool (never on the caller's thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

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


def test_server_engines_load_nothing_local_and_a_down_stt_server_does_not_stop_the_warm_up(tts) -> None:
    """An STT server down at start is logged and the set warms up (calls then get the apology);
    a TTS server down at start is an error: without speech the bot could not even apologise."""
    from models.base import TtsError
    from models.openai_stt import OpenAiStt, OpenAiSttConfig
    from models.openai_tts import OpenAiTts, OpenAiTtsConfig
    from tests.rig.ports import free_tcp_port
    from tests.rig.speech_server import SpeechServer

    speech = SpeechServer(tts=tts)
    speech.serve_in_thread()
    try:
        cfg = ModelSetConfig(llama=LlamaConfig(model_path=str(resolve_test_llm())), max_workers=1,
                             stt_engine="openai",
                             openai_stt=OpenAiSttConfig(base_url=f"http://127.0.0.1:{free_tcp_port()}/v1"),
                             tts_engine="openai",
                             openai_tts=OpenAiTtsConfig(base_url=f"http://127.0.0.1:{speech.server_port}/v1"))
        with ModelSet.load(cfg) as ms:
            assert isinstance(ms.stt, OpenAiStt) and isinstance(ms.tts, OpenAiTts)
            report = ms.warm_up(SYSTEM_PROMPT)
            stt = next(t for t in report.timings if t.name == "stt")
            assert stt.detail.startswith("failed: cannot connect to STT server")
            assert ms.tts.sample_rate == 22050  # learnt from the server's answer
        down = ModelSetConfig(llama=LlamaConfig(model_path=str(resolve_test_llm())), max_workers=1,
                              tts_engine="openai",
                              openai_tts=OpenAiTtsConfig(base_url=f"http://127.0.0.1:{free_tcp_port()}/v1"))
        with ModelSet.load(down) as ms, pytest.raises(TtsError, match="cannot connect to TTS server"):
            ms.warm_up(SYSTEM_PROMPT)
    finally:
        speech.close()
