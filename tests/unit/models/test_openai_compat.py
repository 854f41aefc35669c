"""OpenAI-compatible streaming client against a canned SSE server (and a real llama_cpp.server if installed)."""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from models.base import ChatMessage, LlmError
from models.openai_compat import OpenAiCompatibleLlm, OpenAiConfig
from models.registry import resolve_test_llm

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]


def sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def delta(text: str) -> bytes:
    return sse({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


@dataclass
class Canned:
    """What the fake server does for the next request; records what it received."""

    status: int = 200
    content_type: str = "text/event-stream"
    events: list[bytes | float] = field(default_factory=list)  # bytes to send, or seconds to sleep
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server() -> Iterator[tuple[str, Canned]]:
    canned = Canned()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            canned.requests.append(json.loads(body))
            canned.headers.append(dict(self.headers))
            self.send_response(canned.status)
            self.send_header("Content-Type", canned.content_type)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for ev in canned.events:
                    if isinstance(ev, float):
                        time.sleep(ev)
                    else:
                        self.wfile.write(ev)
                        self.wfile.flush()
            except OSError:
                canned.disconnected.set()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", canned
    httpd.shutdown()
    httpd.server_close()


def test_streams_deltas_and_sends_openai_request(server: tuple[str, Canned]) -> None:
    url, canned = server
    canned.events = [
        sse({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
        delta("Hello"),
        b": keep-alive comment\n\n",
        delta(", how"),
        delta(" can I help?"),
        sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        b"data: [DONE]\n\n",
    ]
    llm = OpenAiCompatibleLlm(OpenAiConfig(base_url=url, model="qwen", api_key="k3y"))
    pieces = list(llm.stream_chat(MESSAGES, max_tokens=33, temperature=0.2, stop=["\n\n"]))
    assert pieces == ["Hello", ", how", " can I help?"]
    req = canned.requests[0]
    assert req["stream"] is True and req["model"] == "qwen" and req["max_tokens"] == 33
    assert req["messages"] == [m.as_dict() for m in MESSAGES] and req["stop"] == ["\n\n"]
    assert canned.headers[0]["Authorization"] == "Bearer k3y"


def test_cancel_closes_connection_while_server_is_silent(server: tuple[str, Canned]) -> None:
    url, canned = server
    canned.events = [delta("One"), 1.0, delta("Two"), 0.05, delta("Three"), b"data: [DONE]\n\n"]
    llm = OpenAiCompatibleLlm(base_url=url)
    cancel = threading.Event()
    got = []
    t0 = time.perf_counter()
    for piece in llm.stream_chat(MESSAGES, cancel=cancel):
        got.append(piece)
        threading.Timer(0.1, cancel.set).start()  # barge-in while the server thinks
    elapsed = time.perf_counter() - t0
    assert got == ["One"]
    assert elapsed < 0.6, elapsed  # not the server's 1 s of silence
    assert canned.disconnected.wait(3.0)  # the server's next writes fail: the connection is gone


def test_http_error_is_a_clear_exception(server: tuple[str, Canned]) -> None:
    url, canned = server
    canned.status = 503
    canned.content_type = "application/json"
    canned.events = [json.dumps({"error": {"message": "model is loading", "type": "unavailable"}}).encode()]
    with pytest.raises(LlmError, match=r"HTTP 503.*model is loading"):
        list(OpenAiCompatibleLlm(base_url=url).stream_chat(MESSAGES))


def test_error_event_and_truncated_stream_raise(server: tuple[str, Canned]) -> None:
    url, canned = server
    canned.events = [delta("Hi"), sse({"error": {"message": "context overflow"}})]
    with pytest.raises(LlmError, match="context overflow"):
        list(OpenAiCompatibleLlm(base_url=url).stream_chat(MESSAGES))
    canned.events = [delta("Hi")]  # connection closes without [DONE]
    with pytest.raises(LlmError, match="without \\[DONE\\]"):
        list(OpenAiCompatibleLlm(base_url=url).stream_chat(MESSAGES))


def test_non_streaming_json_answer_is_one_piece(server: tuple[str, Canned]) -> None:
    url, canned = server
    canned.content_type = "application/json"
    canned.events = [json.dumps({"choices": [{"message": {"role": "assistant", "content": "Whole answer."}}]}).encode()]
    assert list(OpenAiCompatibleLlm(base_url=url).stream_chat(MESSAGES)) == ["Whole answer."]


def test_connection_refused_is_a_clear_exception() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    with pytest.raises(LlmError, match="cannot connect"):
        list(OpenAiCompatibleLlm(base_url=f"http://127.0.0.1:{port}/v1").stream_chat(MESSAGES))


def test_bad_base_url() -> None:
    with pytest.raises(ValueError):
        OpenAiCompatibleLlm(base_url="ftp://x")


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


@pytest.mark.skipif(
    importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("sse_starlette") is None,
    reason="llama-cpp-python[server] extras not installed",
)
def test_real_llama_cpp_server_with_smollm2(free_port: Callable[[], int], tmp_path: Path) -> None:
    """~5 s: python -m llama_cpp.server with SmolLM2; stream, then cancel mid-answer."""
    port = free_port()
    log_path = tmp_path / "llama_cpp_server.log"
    # A file, not a pipe: the server logs a lot and would block on a full pipe.
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_test_llm()), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "1024", "--n_threads", "2", "--model_alias", "smol"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            try:
                _wait_http(f"http://127.0.0.1:{port}/v1/models", proc, timeout=15)
            except (RuntimeError, TimeoutError) as e:
                pytest.fail(f"llama_cpp.server did not come up: {e}\n{log_path.read_text(errors='replace')[-3000:]}")
            llm = OpenAiCompatibleLlm(base_url=f"http://127.0.0.1:{port}/v1", model="smol")
            pieces = list(llm.stream_chat(MESSAGES, max_tokens=16, temperature=0.0))
            assert len(pieces) >= 2 and "".join(pieces).strip()
            cancel = threading.Event()
            got = []
            for p in llm.stream_chat([ChatMessage("user", "Count to one hundred.")], max_tokens=200, cancel=cancel):
                got.append(p)
                if len(got) == 3:
                    cancel.set()
            assert len(got) == 3
            assert llm.warm_up("You are a receptionist.") < 5
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def free_port() -> Callable[[], int]:
    def get() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    return get
