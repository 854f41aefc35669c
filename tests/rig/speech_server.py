"""A real OpenAI-compatible ``/v1/audio/speech`` server that speaks with our piper voice.

Why our own: no PyPI package here serves the OpenAI speech API with a piper voice without
pulling a framework and downloading voices at run time.  This is a real component, not a
fake: real HTTP on loopback, real piper synthesis, the audio streamed with chunked transfer
encoding one sentence at a time (a WAV header with streaming sizes first, as streaming
servers write it), so the gateway's ``models.tts.engine: openai`` is exercised end to end.

Run it as a process (``python -m tests.rig.speech_server --port N``) when a test must kill it
mid-call, or in-process with :class:`SpeechServer` in unit tests.  ``delay_s`` holds every
answer that long before its first byte (a slow server, for the timeout tests).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from models.piper import PiperTts
from tests.rig.ports import free_tcp_port
from tests.rig.proc import ManagedProcess, StartStop, wait_until

__all__ = ["SpeechServer", "SpeechServerProcess", "wav_stream_header"]

REPO = Path(__file__).resolve().parents[2]


def wav_stream_header(sample_rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "until the end of the stream"."""
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", 0xFFFFFFFF))


class SpeechServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0, *, delay_s: float = 0.0, tts: PiperTts | None = None) -> None:
        self.tts = tts or PiperTts()
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()  # set at shutdown: a delayed answer stops waiting
        super().__init__(("127.0.0.1", port), _Handler)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True, name="speech-server")
        thread.start()
        return thread

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SpeechServer

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except ValueError:
            return self._error(400, "body is not JSON")
        self.server.requests.append(body)
        if self.path.rstrip("/") != "/v1/audio/speech":
            return self._error(404, f"no route {self.path}")
        if not isinstance(body, dict) or not isinstance(body.get("input"), str):
            return self._error(400, "'input' (the text) is required")
        fmt = body.get("response_format", "mp3")
        if fmt not in ("wav", "pcm"):
            return self._error(400, f"response_format {fmt!r} not supported (wav, pcm)")
        if self.server.delay_s and self.server.release.wait(self.server.delay_s):
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav" if fmt == "wav" else "audio/pcm")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        tts = self.server.tts
        try:
            if fmt == "wav":
                self._chunk(wav_stream_header(tts.sample_rate))
            for chunk in tts.synthesize(body["input"]):
                self._chunk(chunk.pcm.astype("<i2").tobytes())
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):  # the client went away (a barge-in)
            pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _error(self, status: int, message: str) -> None:
        payload = json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class SpeechServerProcess(StartStop):
    """The server in its own process, for tests that kill it under a live call."""

    def __init__(self, workdir: Path, delay_s: float = 0.0) -> None:
        self.port = free_tcp_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.process = ManagedProcess("speech-server", [
            sys.executable, "-m", "tests.rig.speech_server", "--port", str(self.port), "--delay-s", str(delay_s)],
            workdir / "speech-server.log", cwd=REPO)

    def start(self) -> SpeechServerProcess:
        self.process.start()
        if not wait_until(self._listening, timeout=60, interval=0.1):
            self.stop()
            raise self.process.error("did not listen within 60 s")
        return self

    def _listening(self) -> bool:
        if not self.process.running():
            raise self.process.error("exited during start")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def kill(self) -> None:
        """Dead at once, as a crashed or unplugged server."""
        self.process.stop(signal.SIGKILL)

    def stop(self) -> None:
        self.process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args()
    server = SpeechServer(args.port, delay_s=args.delay_s)
    print(f"speech server listening on 127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
