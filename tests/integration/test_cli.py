"""The command line as a user meets it: check-config messages and exit codes, a bad listen address."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.rig.gateway import gateway_config

ROOT = Path(__file__).parents[2]


def voicegate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)


def test_check_config_accepts_the_default_config():
    done = voicegate("check-config", str(ROOT / "configs" / "default.yaml"))
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


def test_check_config_names_file_key_and_expectation(tmp_path):
    config = gateway_config()
    config["sip"]["max_calls"] = "lots"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    done = voicegate("check-config", str(path))
    assert done.returncode != 0
    assert str(path) in done.stderr and "sip.max_calls" in done.stderr and "expected an integer" in done.stderr


def test_check_config_rejects_unknown_keys(tmp_path):
    config = gateway_config()
    config["rtp"]["portrange"] = [1, 2]
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    done = voicegate("check-config", str(path))
    assert done.returncode != 0 and "rtp.portrange" in done.stderr and "no such key" in done.stderr


def test_run_reports_a_busy_sip_port_and_exits_non_zero(tmp_path):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        path = tmp_path / "gw.yaml"
        path.write_text(yaml.safe_dump(gateway_config(sip_port=port)))
        done = voicegate("run", "--config", str(path))
    assert done.returncode == 1
    assert "gateway_start_failed" in done.stderr and str(port) in done.stderr


def test_forget_deletes_a_callers_memory_and_messages(tmp_path):
    from gateway.store import open_store

    database = tmp_path / "memory.db"
    with open_store(database) as store:
        store.record_call("+15551234", name="John Smith", reason="a cleaning")
        store.take_message("call me back", caller_id="+15551234", caller_name="John Smith")
        store.record_call("+15559999", name="Ann")
    config = gateway_config()
    config["database"] = str(database)
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    listed = voicegate("messages", "--config", str(path))
    assert listed.returncode == 0 and "call me back" in listed.stdout
    done = voicegate("forget", "--config", str(path), "sip:+15551234@pbx.example.com")
    assert done.returncode == 0, done.stderr
    assert "+15551234" in done.stdout
    with open_store(database) as store:
        assert store.caller("+15551234") is None and not store.messages()
        assert store.caller("+15559999").name == "Ann"  # nobody else forgotten
