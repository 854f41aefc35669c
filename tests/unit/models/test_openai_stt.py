"""The openai STT engine against a real faster-whisper-server (PyPI) serving our tiny.en weights.

Faults are real too: a port nothing listens on (down), a socket that accepts and never answers
(slow), the server killed between two utterances (dead mid-call).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from structlog.testing import capture_logs

from models.base import SttError
from models.openai_stt import OpenAiStt, OpenAiSttConfig
from tests.rig.ports import free_tcp_port
from tests.rig.stt_server import SttServer
from tests.unit.models.conftest import to_16k_float

SENTENCE = "Hello, I would like to book an appointment for next Tuesday morning please."


def words(text: str) -> set[str]:
    return {w.strip(".,!?;:'\"").lower() for w in text.split()}


@pytest.fixture(scope="module")
def stt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SttServer]:
    with SttServer(tmp_path_factory.mktemp("stt-server")) as server:
        yield server


@pytest.fixture(scope="module")
def question(espeak_8k: Callable[[str], npt.NDArray[np.int16]]) -> npt.NDArray[np.float32]:
    return to_16k_float(espeak_8k(SENTENCE))


def test_transcribes_with_whispers_confidence(stt_server: SttServer, question: npt.NDArray[np.float32]) -> None:
    stt = OpenAiStt(OpenAiSttConfig(base_url=stt_server.base_url))
    t = stt.transcribe(question, prompt="Greenfield Dental")
    assert {"appointment", "tuesday", "morning"} <= words(t.text), t.text
    assert t.duration_s == len(question) / 16000
    assert t.segments and t.segments[0].text
    assert 0 <= t.no_speech_prob < 0.5  # from verbose_json's segments
    assert -2.0 < t.avg_logprob < 0.0
    assert stt._format == "verbose_json"


def test_a_server_that_refuses_the_format_is_asked_for_plain_json(stt_server: SttServer,
                                                                  question: npt.NDArray[np.float32]) -> None:
    # faster-whisper-server answers 400 to formats it does not have (here "srt"), as others do to verbose_json
    stt = OpenAiStt(OpenAiSttConfig(base_url=stt_server.base_url, response_format="srt"))
    t = stt.transcribe(question)
    assert "appointment" in words(t.text), t.text
    assert stt._format == "json"  # remembered: the next utterance costs one request
    assert t.avg_logprob == 0.0 and not t.segments  # plain json carries no confidence


def test_too_short_audio_is_empty_without_asking_the_server() -> None:
    stt = OpenAiStt(OpenAiSttConfig(base_url=f"http://127.0.0.1:{free_tcp_port()}/v1"))  # nothing listens
    t = stt.transcribe(np.zeros(800, dtype=np.float32))
    assert t.text == "" and t.no_speech_prob == 1.0


def test_a_server_that_is_down_is_one_clear_error(question: npt.NDArray[np.float32]) -> None:
    url = f"http://127.0.0.1:{free_tcp_port()}/v1"
    with pytest.raises(SttError, match=f"cannot connect to STT server {url}"):
        OpenAiStt(OpenAiSttConfig(base_url=url)).transcribe(question)


def test_a_slow_server_times_out_after_timeout_s(question: npt.NDArray[np.float32]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts (backlog), never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        start = time.monotonic()
        with pytest.raises(SttError, match="sent no transcript within 1 s"):
            OpenAiStt(OpenAiSttConfig(base_url=url, timeout_s=1.0)).transcribe(question)
        assert time.monotonic() - start < 10  # generous: the bound is timeout_s, not a hang


def test_a_server_killed_between_utterances_fails_the_next_one_only(tmp_path: Path,
                                                                    question: npt.NDArray[np.float32]) -> None:
    server = SttServer(tmp_path).start()
    try:
        stt = OpenAiStt(OpenAiSttConfig(base_url=server.base_url))
        assert "appointment" in words(stt.transcribe(question).text)
        server.kill()
        with capture_logs() as logs:
            for _ in range(3):  # a call transcribes at every pause: the operator gets one line, not three
                with pytest.raises(SttError, match=server.base_url):
                    stt.transcribe(question)
        down = [e for e in logs if e["event"] == "stt_server_down"]
        assert len(down) == 1 and down[0]["log_level"] == "error" and down[0]["url"] == server.base_url, logs
    finally:
        server.stop()
    with SttServer(tmp_path / "again", port=server.port) as again, capture_logs() as logs:
        assert again.base_url == server.base_url
        assert "appointment" in words(stt.transcribe(question).text)  # back: the same engine works again
    assert [e["event"] for e in logs if e["event"].startswith("stt_server")] == ["stt_server_back"]
