"""Call progress of outbound calls against real SIPp callees: each way an unanswered call ends is
its own outcome (busy, no answer, rejected, unreachable) in the log and the call record, and early
media (183 with SDP) neither breaks the call nor starts the bot before the answer.

The gateway places each call with `voicegate call` (exit 0 only for an answered call).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway.records import load_record
from rtp.g711 import PCMA
from tests.integration.conftest import SCENARIOS
from tests.rig.gateway import GatewayProcess, gateway_config
from tests.rig.ports import free_tcp_port, free_udp_port
from tests.rig.rtp_peer import rms_dbfs


def call_out(gateway_factory, tmp_path: Path, uri: str, **sip: Any) -> GatewayProcess:
    config = gateway_config()
    config["sip"].update(sip)
    config["recording"] = {"directory": str(tmp_path / "records"), "audio": False}
    return gateway_factory(config, command="call", extra_args=(uri,))


def ended_call(gw: GatewayProcess, tmp_path: Path, timeout: float = 20) -> tuple[dict, dict]:
    """The `call_ended` log line and the record's `call_end` event, once the call command exited."""
    assert gw.wait_exit(timeout) == 1  # not answered
    ended = gw.wait_log("call_ended")
    record = [e for e in load_record(tmp_path / "records", ended["call_id"]) if e["kind"] == "call_end"]
    assert len(record) == 1
    assert record[0]["outcome"] == ended["outcome"] and record[0]["answered"] is False
    return ended, record[0]


def refusing_callee(sipp_uas_factory, tmp_path: Path, code: int):
    scenario = tmp_path / f"uas_refuse_{code}.xml"
    scenario.write_text((SCENARIOS / "uas_refuse.xml").read_text().replace("[refusal]", str(code)))
    return sipp_uas_factory(scenario=scenario, max_calls=1)


def test_a_busy_callee_is_busy(gateway_factory, sipp_uas_factory, tmp_path):
    uas = refusing_callee(sipp_uas_factory, tmp_path, 486)
    ended, _ = ended_call(call_out(gateway_factory, tmp_path, uas.uri("bob")), tmp_path)
    assert (ended["outcome"], ended["code"]) == ("busy", 486)


def test_a_declined_call_is_rejected(gateway_factory, sipp_uas_factory, tmp_path):
    uas = refusing_callee(sipp_uas_factory, tmp_path, 603)
    ended, _ = ended_call(call_out(gateway_factory, tmp_path, uas.uri("bob")), tmp_path)
    assert (ended["outcome"], ended["code"]) == ("rejected", 603)


def test_a_callee_that_only_rings_is_cancelled_at_the_ring_timeout(gateway_factory, sipp_uas_factory, tmp_path):
    uas = sipp_uas_factory(scenario=SCENARIOS / "uas_ring_forever.xml", max_calls=1)
    start = time.monotonic()
    gw = call_out(gateway_factory, tmp_path, uas.uri("bob"), ring_timeout_s=3)
    ended, record = ended_call(gw, tmp_path, timeout=30)
    assert (ended["outcome"], ended["code"]) == ("no_answer", 487)
    assert gw.find("call_ring_timeout")[0]["rang"] is True
    uas.wait_message("CANCEL", timeout=5)
    assert 3 <= time.monotonic() - start < 25  # the timeout, not pjsip's own 32 s
    assert not gw.find("agent_started")


def test_the_account_ring_timeout_overrides_the_gateways(gateway_factory, kamailio_factory, sipp_uas_factory,
                                                         tmp_path):
    """Through the PBX: the account's `ring_timeout_s` (2 s) wins over `sip.ring_timeout_s` (60 s)."""
    kamailio = kamailio_factory()
    uas = sipp_uas_factory(scenario=SCENARIOS / "uas_ring_forever.xml", max_calls=1)
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk", "ring_timeout_s": 2}
    config = gateway_config(accounts=[account])
    config["recording"] = {"directory": str(tmp_path / "records"), "audio": False}
    gw = gateway_factory(config, command="call", extra_args=(uas.uri("bob"),))
    ended, _ = ended_call(gw, tmp_path, timeout=30)
    assert ended["outcome"] == "no_answer"
    assert gw.find("call_ring_timeout")[0]["timeout_s"] == 2
    assert kamailio.saw_request("CANCEL")


def test_a_dead_tcp_port_is_unreachable_at_once(gateway_factory, tmp_path):
    port = free_tcp_port()  # nothing listens: the connection is refused
    start = time.monotonic()
    gw = call_out(gateway_factory, tmp_path, f"sip:bob@127.0.0.1:{port};transport=tcp", tcp=True)
    ended, _ = ended_call(gw, tmp_path)
    assert ended["outcome"] == "unreachable" and ended["code"] in (408, 503), ended
    assert time.monotonic() - start < 15


def test_a_dead_udp_port_is_unreachable_at_the_ring_timeout(gateway_factory, tmp_path):
    """No answer at all (not even 100 Trying): given up as unreachable, not as no answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:  # bound and never read: a silent port
        hole.bind(("127.0.0.1", free_udp_port()))
        gw = call_out(gateway_factory, tmp_path, f"sip:bob@127.0.0.1:{hole.getsockname()[1]}", ring_timeout_s=3)
        ended, _ = ended_call(gw, tmp_path, timeout=45)
    assert ended["outcome"] == "unreachable", ended
    assert gw.find("call_ring_timeout")[0]["rang"] is False


def test_early_media_before_the_answer_keeps_the_call_and_the_bot_silent(gateway_factory, sipp_uas_factory,
                                                                         capture_factory, tmp_path):
    uas = sipp_uas_factory(scenario=SCENARIOS / "uas_early_media.xml", max_calls=1)
    capture = capture_factory()
    config = gateway_config()
    config["recording"] = {"directory": str(tmp_path / "records"), "audio": False}
    gw = gateway_factory(config, command="call", extra_args=(uas.uri("bob"),))
    assert gw.wait_exit(30) == 0  # answered
    capture.stop()
    events = [e["event"] for e in gw.lines]
    assert events.index("call_early_media") < events.index("call_confirmed") < events.index("agent_started")
    ended = gw.wait_log("call_ended")
    assert ended["outcome"] == "remote_bye" and ended["answered"] is True and ended["rtp_received"] > 100
    # what the gateway sent: silence while the early media played, the echo of it once answered
    answered_at = next(p.time for p in capture.packets() if p.is_sip and p.payload.startswith(b"SIP/2.0 200")
                       and b"INVITE" in p.payload.split(b"\r\n\r\n")[0].split(b"CSeq:")[1][:20])
    local_port = gw.find("call_media")[0]["local_port"]
    sent = [p for p in capture.media_from(local_port) if p.is_rtp and p.rtp_payload_type == 8]
    level = [(p.time, rms_dbfs(PCMA.decode(p.payload[12:]))) for p in sent]
    early = [db for t, db in level if t < answered_at]
    later = [db for t, db in level if t > answered_at + 0.3]
    assert len(early) > 50 and max(early) < -50, f"the bot made sound before the answer: {max(early):.1f} dBFS"
    assert np.mean([db > -30 for db in later]) > 0.3, "the echo agent never started after the answer"
