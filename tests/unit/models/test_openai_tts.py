"""The openai TTS engine against a real speech server (tests/rig/speech_server.py: real HTTP, our piper voice)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from models.base import TtsError
from models.openai_tts import OpenAiTts, OpenAiTtsConfig
from models.piper import PiperTts
from tests.rig.ports import free_tcp_port
from tests.rig.speech_server import SpeechServer

TEXT = "Thank you for calling Greenfield Dental. We are open Monday to Friday from eight to six."


@pytest.fixture(scope="module")
def server(tts: PiperTts) -> Iterator[SpeechServer]:
    s = SpeechServer(tts=tts)
    s.serve_in_thread()
    yield s
    s.close()


def url(server: SpeechServer) -> str:
    return f"http://127.0.0.1:{server.server_port}/v1"


def test_wav_streams_in_pieces_at_the_servers_rate(server: SpeechServer, tts: PiperTts) -> None:
    engine = OpenAiTts(OpenAiTtsConfig(base_url=url(server), voice="joe", chunk_ms=200))
    chunks = list(engine.synthesize(TEXT))
    assert engine.sample_rate == tts.sample_rate == 22050
    assert all(c.sample_rate == 22050 for c in chunks)
    assert len(chunks) > 3 and all(len(c.pcm) <= 22050 * 200 // 1000 for c in chunks)
    heard = np.concatenate([c.pcm for c in chunks])
    local = np.concatenate([c.pcm for c in tts.synthesize(TEXT)])
    # the same speech (piper's durations vary a little from run to run: its noise_w)
    assert abs(len(heard) - len(local)) < 0.1 * len(local) and np.abs(heard).max() > 3000
    assert server.requests[-1] == {"model": "tts-1", "input": TEXT, "voice": "joe", "response_format": "wav",
                                   "speed": 1.0}


def test_the_first_piece_comes_before_the_whole_answer(server: SpeechServer) -> None:
    engine = OpenAiTts(OpenAiTtsConfig(base_url=url(server)))
    start = time.perf_counter()
    stream = engine.synthesize(TEXT)
    next(stream)
    first = time.perf_counter() - start
    for _ in stream:
        pass
    assert first < time.perf_counter() - start  # streamed: sentence one arrived while sentence two was made


def test_raw_pcm_at_the_configured_rate(server: SpeechServer) -> None:
    engine = OpenAiTts(OpenAiTtsConfig(base_url=url(server), response_format="pcm", sample_rate=22050))
    chunks = list(engine.synthesize("Hello there."))
    assert chunks and all(c.sample_rate == 22050 for c in chunks)
    assert sum(len(c.pcm) for c in chunks) > 22050 * 0.3


def test_cancel_stops_the_stream(server: SpeechServer) -> None:
    engine = OpenAiTts(OpenAiTtsConfig(base_url=url(server), chunk_ms=50))
    cancel = threading.Event()
    got = []
    for chunk in engine.synthesize(TEXT * 3, cancel=cancel):
        got.append(chunk)
        cancel.set()
    assert len(got) == 1


def test_an_http_error_carries_the_servers_message(server: SpeechServer) -> None:
    engine = OpenAiTts(OpenAiTtsConfig(base_url=f"http://127.0.0.1:{server.server_port}/v2"))
    with pytest.raises(TtsError, match="HTTP 404.*no route /v2/audio/speech"):
        list(engine.synthesize("Hello."))


def test_a_server_that_is_down_is_one_clear_error() -> None:
    base = f"http://127.0.0.1:{free_tcp_port()}/v1"
    with pytest.raises(TtsError, match=f"cannot connect to TTS server {base}"):
        list(OpenAiTts(OpenAiTtsConfig(base_url=base)).synthesize("Hello."))


def test_a_slow_server_times_out_after_timeout_s(tts: PiperTts) -> None:
    slow = SpeechServer(tts=tts, delay_s=30)
    slow.serve_in_thread()
    try:
        start = time.monotonic()
        with pytest.raises(TtsError, match="sent no audio within 1 s"):
            list(OpenAiTts(OpenAiTtsConfig(base_url=url(slow), timeout_s=1.0)).synthesize("Hello."))
        assert time.monotonic() - start < 10
    finally:
        slow.close()


def test_not_wav_is_an_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: 12\r\n\r\n"
                             b"ID3\x04mp3data!")

        threading.Thread(target=answer, daemon=True).start()
        with pytest.raises(TtsError, match="sent no WAV audio"):
            list(OpenAiTts(OpenAiTtsConfig(base_url=f"http://127.0.0.1:{port}/v1")).synthesize("Hello."))
