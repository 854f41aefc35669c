"""Run the real gateway as a subprocess (`voicegate run`) and follow its JSON log.

Integration tests treat the gateway as a black box the way an operator would: a YAML file in,
SIP and RTP on the wire, JSON log lines out. `wait_log()` waits for an event with matching
fields, so a test can synchronise on "registered" or "call_ended" instead of sleeping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.rig.ports import free_sip_port


class GatewayError(AssertionError):
    pass


@dataclass
class GatewayProcess:
    workdir: Path
    config: dict[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)
    command: str = "run"
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def config_path(self) -> Path:
        return self.workdir / "voicegate.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "voicegate.log"

    @property
    def sip_port(self) -> int:
        return int(str(self.config["sip"]["listen"]).rpartition(":")[2])

    @property
    def uri(self) -> str:
        return f"sip:voicegate@127.0.0.1:{self.sip_port}"

    def start(self) -> GatewayProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.command == "run" and "database" not in self.config:
            # each test its own caller memory: a caller remembered by an earlier test would change the greeting
            self.config["database"] = str(self.workdir / "voicegate.db")
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.config_path.chmod(0o600)  # it may hold a password: the gateway refuses it readable by others
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        args = [
            sys.executable,
            "-m",
            "gateway.cli",
            self.command,
            "--config",
            str(self.config_path),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).parents[2],
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with self.log_path.open("w") as log_file:
            for raw in self.process.stdout:
                text = raw.decode("utf-8", "replace").rstrip("\n")
                log_file.write(text + "\n")
                log_file.flush()
                try:
                    entry = json.loads(text)
                except json.JSONDecodeError:
                    entry = {"event": "<non-json>", "text": text}
                with self._cond:
                    self.raw.append(text)
                    self.lines.append(entry if isinstance(entry, dict) else {"event": "<non-json>"})
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def find(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.lines if _matches(e, event, fields)]

    def wait_log(self, event: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for entry in self.lines:
                    if _matches(entry, event, fields):
                        return entry
                if self.process is not None and self.process.poll() is not None:
                    raise GatewayError(
                        f"gateway exited ({self.process.returncode}) before logging {event} "
                        f"{fields}:\n" + "\n".join(self.raw[-40:])
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GatewayError(
                        f"no {event} {fields} within {timeout}s; last lines:\n" + "\n".join(self.raw[-40:])
                    )
                self._cond.wait(min(remaining, 0.2))

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Generous: model warm-up took 8-9 s on a busy 2-core machine; this catches hangs, not slowness."""
        self.wait_log("gateway_ready", timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise GatewayError(
                f"gateway did not exit within {timeout}s of {signal.Signals(sig).name}"
            ) from None

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def errors(self) -> list[dict[str, Any]]:
        """Log lines at error level or that are not JSON (a traceback, a crash)."""
        with self._cond:
            return [
                e for e in self.lines if e.get("level") in ("error", "critical") or e["event"] == "<non-json>"
            ]


def _matches(entry: Mapping[str, Any], event: str, fields: Mapping[str, Any]) -> bool:
    return entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items())


# The model watchdog (model_timeout_s, 8 s by default) gives a reply up when the models hang. On a
# shared CI machine under load a first token can take longer than that, so tests that are not about
# the watchdog give their conversation agents this much; the fault tests keep the default.
PATIENT_MODEL_TIMEOUT_S = 45


def gateway_config(
    *,
    sip_port: int | None = None,
    accounts: list[dict[str, Any]] | None = None,
    port_range: tuple[int, int] = (42000, 42999),
    max_calls: int = 4,
    agents: dict[str, Any] | None = None,
    rtp: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A config in the public YAML contract, on 127.0.0.1 with a free SIP port."""
    return {
        "sip": {
            "listen": f"127.0.0.1:{sip_port or free_sip_port()}",
            "public_address": "127.0.0.1",
            "max_calls": max_calls,
            "default_agent": "front-desk",
            "accounts": accounts or [],
        },
        "rtp": {"port_range": list(port_range), **(rtp or {})},
        "agents": agents or {"front-desk": {"type": "echo"}},
        "logging": {"level": "debug"},
    }
