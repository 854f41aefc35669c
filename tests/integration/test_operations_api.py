"""The operator's side on a running gateway: metrics, health, the control API, call records.

Real HTTP against `voicegate run`, real SIPp peers as callers and callees (echo agent: no models).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import yaml

from tests.integration.conftest import SCENARIOS
from tests.rig.gateway import gateway_config
from tests.rig.ports import free_udp_port
from tests.rig.sipp import run_sipp_uac_pcap

TOKEN = "test-token-0123456789abcdef"
ROOT = Path(__file__).parents[2]


def http(port: int, method: str, path: str, body: object | None = None, token: str | None = TOKEN,
         content_type: str = "application/json") -> tuple[int, str]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def campaign_finished(port: int, campaign_id: str, timeout: float = 40) -> dict:
    """The campaign's status once it stopped running (or at the timeout, still running: the test's assert says)."""
    deadline = time.monotonic() + timeout
    while True:
        progress = json.loads(http(port, "GET", f"/campaigns/{campaign_id}")[1])
        if not progress["running"] or time.monotonic() > deadline:
            return progress
        time.sleep(0.5)


def operated_gateway(gateway_factory, tmp_path: Path, database: str | None = None, **extra):
    config = gateway_config(**extra)
    if database is not None:
        config["database"] = database
    port = free_udp_port()  # a free TCP port is very likely free as UDP too; both are checked at bind
    config["http"] = {"listen": f"127.0.0.1:{port}", "token": TOKEN}
    config["recording"] = {"directory": str(tmp_path / "records"), "audio": True}
    gw = gateway_factory(config)
    return gw, port


def test_health_readiness_and_metrics_follow_the_calls(gateway_factory, tmp_path):
    gw, port = operated_gateway(gateway_factory, tmp_path)
    assert http(port, "GET", "/healthz", token=None)[0] == 200
    status, body = http(port, "GET", "/readyz", token=None)
    assert status == 200 and json.loads(body)["ready"] is True
    result = run_sipp_uac_pcap(f"127.0.0.1:{gw.sip_port}", "voicegate", tmp_path / "sipp", timeout=30)
    assert result.ok, result.describe()
    gw.wait_log("call_ended", timeout=10)
    status, text = http(port, "GET", "/metrics", token=None)
    assert status == 200
    assert 'voicegate_calls_total{direction="inbound",outcome="remote_bye"} 1.0' in text, text[:2000]
    assert "voicegate_active_calls 0.0" in text
    assert "voicegate_jitter_buffer_delay_seconds" in text


def test_control_api_originates_with_variables_lists_and_hangs_up(gateway_factory, sipp_uas_factory, tmp_path):
    gw, port = operated_gateway(gateway_factory, tmp_path)
    uas = sipp_uas_factory()
    assert http(port, "GET", "/calls", token=None)[0] == 401
    assert http(port, "GET", "/calls", token="wrong-token-0123456789")[0] == 401
    status, body = http(port, "POST", "/calls", {"to": uas.uri("reminder"), "variables": {"name": "Ann"}})
    assert status == 201, body
    call_id = json.loads(body)["call_id"]
    gw.wait_log("call_confirmed", timeout=10)
    status, body = http(port, "GET", "/calls")
    assert status == 200 and [c["call_id"] for c in json.loads(body)["calls"]] == [call_id]
    assert http(port, "POST", "/calls", {"to": uas.uri("x"), "agent": "nobody"})[0] == 400
    assert http(port, "DELETE", f"/calls/{call_id}")[0] == 200
    ended = gw.wait_log("call_ended", timeout=10)
    assert ended["reason"].startswith("api")
    assert http(port, "DELETE", f"/calls/{call_id}")[0] == 404
    assert TOKEN not in gw.log_path.read_text()  # the token never reaches the logs


def test_campaign_from_csv_respects_its_concurrency(gateway_factory, sipp_uas_factory, tmp_path):
    gw, port = operated_gateway(gateway_factory, tmp_path)
    uas = sipp_uas_factory(scenario=SCENARIOS / "uas_bye_after.xml")
    csv = "to,name\n" + "".join(f"{uas.uri(f'10{i}')},Patient {i}\n" for i in range(3))
    status, body = http(port, "POST", "/campaigns", {"csv": csv, "concurrency": 1, "calls_per_second": 2})
    assert status == 202, body
    progress = campaign_finished(port, json.loads(body)["campaign_id"])
    assert progress["completed"] == 3 and progress["failed"] == 0, progress
    # never two calls up at once: each call ended before the next one started
    events = [e for e in gw.lines if e.get("event") in ("call_outgoing", "call_ended")]
    assert [e["event"] for e in events] == ["call_outgoing", "call_ended"] * 3, events


def test_call_record_and_timeline_report(gateway_factory, tmp_path):
    gw, port = operated_gateway(gateway_factory, tmp_path)
    result = run_sipp_uac_pcap(f"127.0.0.1:{gw.sip_port}", "voicegate", tmp_path / "sipp", timeout=30)
    assert result.ok, result.describe()
    ended = gw.wait_log("call_ended", timeout=10)
    call_id = ended["call_id"]
    records = tmp_path / "records"
    jsonl = next(records.rglob("*.jsonl"))
    kinds = [json.loads(line)["kind"] for line in jsonl.read_text().splitlines()]
    assert kinds[0] == "call_start" and kinds[-1] == "call_end"
    with wave.open(str(next(records.rglob("*.wav")))) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000
        assert w.getnframes() / 8000 > 7  # the ~9 s call, streamed to disk
    config_path = gw.config_path
    out = tmp_path / "timeline.png"
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "report", "--config", str(config_path),
                           "--out", str(out), call_id], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert yaml.safe_load(config_path.read_text())["recording"]["audio"] is True
