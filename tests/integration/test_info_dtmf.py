"""Keypresses sent as SIP INFO reach the agent like RFC 4733 ones, each exactly once.

A SIPp caller in "SIP INFO" DTMF mode presses 5 (application/dtmf-relay), 7 (application/dtmf),
sends a body with no usable key and presses #. A retransmitted INFO is sent from a raw socket
(SIPp takes the repeated 200 for a lost one and answers it by resending, without end). What the
agent got is read from the call's record (its `dtmf` events), not from log text.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from gateway.records import load_record
from tests.integration.conftest import SCENARIOS
from tests.rig.gateway import PATIENT_MODEL_TIMEOUT_S, gateway_config
from tests.rig.ports import free_port_pair
from tests.rig.sipp import run_sipp


def recorded_config(tmp_path: Path) -> dict:
    config = gateway_config()
    config["recording"] = {"directory": str(tmp_path / "records"), "audio": False}
    return config


def keys_pressed(tmp_path: Path, call_id: str) -> list[tuple[str, str]]:
    events = load_record(tmp_path / "records", call_id)
    return [(e["digit"], e["method"]) for e in events if e["kind"] == "dtmf"]


def test_info_digits_reach_the_agent_and_a_bad_body_is_logged(gateway_factory, tmp_path: Path):
    gw = gateway_factory(recorded_config(tmp_path))
    result = run_sipp(SCENARIOS / "info_dtmf.xml", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp",
                      service="voicegate", timeout=20)
    assert result.ok, result.describe()
    ended = gw.wait_log("call_ended")
    assert keys_pressed(tmp_path, ended["call_id"]) == [("5", "sip_info"), ("7", "sip_info"), ("#", "sip_info")]
    rejected = gw.find("dtmf_info_rejected")
    assert len(rejected) == 1 and "Signal" in rejected[0]["reason"], rejected
    assert [e["duration_ms"] for e in gw.find("dtmf_received", method="sip_info")] == [160, None, 250]
    assert not gw.errors()


class RawUac:
    """Just enough of a UAC on one UDP socket to hold a call and repeat a request byte for byte."""

    def __init__(self, gateway_port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.target = ("127.0.0.1", gateway_port)
        self.uri = f"sip:voicegate@127.0.0.1:{gateway_port}"
        self.call_id = f"{os.urandom(6).hex()}@raw"
        self.tag = os.urandom(4).hex()
        self.to = f"<{self.uri}>"

    def request(self, method: str, cseq: int, body: str = "", content_type: str = "") -> bytes:
        headers = [f"{method} {self.uri} SIP/2.0",
                   f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{os.urandom(6).hex()}",
                   f"From: <sip:raw@127.0.0.1:{self.port}>;tag={self.tag}", f"To: {self.to}",
                   f"Call-ID: {self.call_id}", f"CSeq: {cseq} {method}",
                   f"Contact: <sip:raw@127.0.0.1:{self.port}>", "Max-Forwards: 70"]
        if content_type:
            headers.append(f"Content-Type: {content_type}")
        headers.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()

    def final_response(self, cseq: int) -> str:
        """The next final response to the request with this CSeq (earlier ones' retransmissions skipped)."""
        while True:
            data = self.sock.recv(65535).decode(errors="replace")
            head = data.split("\r\n\r\n", 1)[0].split("\r\n")
            if not head[0].startswith("SIP/2.0 ") or int(head[0].split()[1]) < 200:
                continue
            fields = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in head[1:] if ":" in line}
            if fields.get("cseq", "").split()[0] == str(cseq):
                if cseq == 1:
                    self.to = fields["to"]  # the gateway's tag, for the rest of the dialog
                return head[0]

    def send(self, message: bytes) -> None:
        self.sock.sendto(message, self.target)


def test_a_retransmitted_info_gives_the_digit_once(gateway_factory, tmp_path: Path):
    gw = gateway_factory(recorded_config(tmp_path))
    uac = RawUac(gw.sip_port)
    rtp = free_port_pair()
    sdp = (f"v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {rtp} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
    uac.send(uac.request("INVITE", 1, sdp, "application/sdp"))
    assert uac.final_response(1).startswith("SIP/2.0 200")
    uac.send(uac.request("ACK", 1))
    info = uac.request("INFO", 2, "Signal=5\r\nDuration=160\r\n", "application/dtmf-relay")
    uac.send(info)
    assert uac.final_response(2).startswith("SIP/2.0 200")
    time.sleep(0.3)
    uac.send(info)  # a retransmission: the same bytes, branch and CSeq
    assert uac.final_response(2).startswith("SIP/2.0 200")  # pjsip's transaction answers it again
    time.sleep(0.3)
    uac.send(uac.request("BYE", 3))
    assert uac.final_response(3).startswith("SIP/2.0 200")
    uac.sock.close()
    ended = gw.wait_log("call_ended", call_id=uac.call_id)
    assert keys_pressed(tmp_path, ended["call_id"]) == [("5", "sip_info")]


def test_rfc4733_digits_are_in_the_call_record_too(gateway_factory, tmp_path: Path):
    """The same record event for a keypress in the media: one place to read both from."""
    gw = gateway_factory(recorded_config(tmp_path))
    result = run_sipp("sn:uac_pcap", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp", service="voicegate",
                      timeout=30, name="uac_pcap")
    assert result.ok, result.describe()
    ended = gw.wait_log("call_ended")
    assert keys_pressed(tmp_path, ended["call_id"]) == [("1", "rfc4733")]


def test_a_conversation_agent_acts_on_a_key_sent_as_info(gateway_factory, tmp_path: Path):
    """The keypad action of a conversation agent (real models) fires on an INFO key: 9 hangs up."""
    config = recorded_config(tmp_path)
    config["agents"] = {"front-desk": {"type": "conversation", "model_timeout_s": PATIENT_MODEL_TIMEOUT_S,
                                       "greeting": "Harbor Dental, hello.",
                                       "instructions": "You answer the phone in one short sentence.",
                                       "dtmf": {"9": "hangup"}}}
    gw = gateway_factory(config)
    scenario = tmp_path / "info_key_9.xml"
    scenario.write_text((SCENARIOS / "info_key_then_bye.xml").read_text().replace("[key]", "9"))
    result = run_sipp(scenario, f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp", service="voicegate", timeout=60)
    assert result.ok, result.describe()
    ended = gw.wait_log("call_ended", timeout=30)
    # the gateway hung up (SIPp waited for its BYE): said goodbye, as the agent does on a hang-up key
    # (the controller ends such calls as `goodbye`, not `dtmf_hangup`)
    assert ended["outcome"] == "goodbye", ended
    assert keys_pressed(tmp_path, ended["call_id"]) == [("9", "sip_info")]
    assert gw.find("bot_phrase", why="dtmf_hangup")
