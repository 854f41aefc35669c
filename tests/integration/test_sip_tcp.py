"""SIP over TCP beside UDP on the same address (RFC 3261 section 18, `sip.tcp: true`), against real peers.

SIPp over TCP (``-t t1``) calls the gateway directly and through Kamailio (which the gateway has
registered with over TCP); an INVITE of ~1.9 kB arrives whole over TCP; a request of the gateway's
own over the 1300-byte threshold goes out over TCP to a peer that only listens on TCP; broken TCP
streams (garbage, a half-closed request, a body that never comes) cost a UDP call running alongside
nothing; connections that send nothing, or come from an untrusted source, are closed; bursts of
connections opened and reset (which aborted the process before gateway/sip/tcp_gate.py) leave it up.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Any

import pytest

from gateway.sip.tcp_gate import KeyCount
from tests.conftest import require_binaries
from tests.integration.conftest import SCENARIOS
from tests.integration.sip_abuse import LegitCall, alive, crash_signature, death_note
from tests.integration.test_sip_torture import assert_echo_call_works
from tests.rig.gateway import gateway_config
from tests.rig.ports import free_sip_port
from tests.rig.proc import wait_until
from tests.rig.sipp import SippResult, run_sipp

TCP = ("-t", "t1")


def tcp_config(**kwargs: Any) -> dict[str, Any]:
    config = gateway_config(**kwargs)
    config["sip"]["tcp"] = True
    return config


def tcp_messages(result: SippResult) -> tuple[int, int]:
    """How many of SIPp's messages went over TCP, and how many in all."""
    text = result.messages()
    return text.count("TCP message"), text.count(" message sent") + text.count(" message received")


def options_over_tcp(port: int, timeout: float = 5.0) -> str:
    """One OPTIONS on a fresh TCP connection; the status line of the answer ("" if none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        local = s.getsockname()[1]
        tag = os.urandom(4).hex()
        s.sendall((f"OPTIONS sip:voicegate@127.0.0.1:{port};transport=tcp SIP/2.0\r\n"
                   f"Via: SIP/2.0/TCP 127.0.0.1:{local};branch=z9hG4bK{tag}\r\n"
                   f"From: <sip:probe@127.0.0.1>;tag={tag}\r\nTo: <sip:voicegate@127.0.0.1>\r\n"
                   f"Call-ID: {tag}@probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                   "Content-Length: 0\r\n\r\n").encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def test_sipp_over_tcp_calls_the_gateway_directly(gateway_factory, tmp_path):
    gw = gateway_factory(tcp_config())
    assert gw.wait_log("sip_listening")["transports"] == ["udp", "tcp"]
    result = run_sipp("sn:uac_pcap", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp", service="voicegate",
                      local_port=free_sip_port(), timeout=30, extra_args=TCP, name="uac_pcap")
    assert result.ok, result.describe()
    over_tcp, total = tcp_messages(result)
    assert over_tcp == total > 0, f"{over_tcp} of {total} messages over TCP"
    assert gw.wait_log("dtmf_received")["digit"] == "1"
    ended = gw.wait_log("call_ended")
    assert ended["reason"].startswith("remote_bye") and ended["rtp_received"] > 200
    assert not gw.errors()


def test_an_invite_of_1_9_kb_over_tcp_is_taken_whole(gateway_factory, tmp_path):
    gw = gateway_factory(tcp_config())
    result = run_sipp(SCENARIOS / "big_invite_bye.xml", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp",
                      service="voicegate", local_port=free_sip_port(), timeout=20, extra_args=TCP)
    assert result.ok, result.describe()
    invite = next(m for m in result.sip_messages() if m.direction == "sent" and m.method == "INVITE")
    assert len(invite.text.encode()) > 1800
    assert gw.wait_log("call_media")["codec"] == "PCMU"  # the SDP at the end of the INVITE was read
    assert gw.wait_log("call_ended")["reason"].startswith("remote_bye")
    assert not gw.find("call_rejected_message")


def test_registers_over_tcp_and_takes_a_tcp_call_through_kamailio(kamailio_factory, gateway_factory, tmp_path):
    require_binaries("kamailio")
    kamailio = kamailio_factory(tcp=True)
    cfg = tcp_config(accounts=[{"username": "2001", "password": "secret", "registrar": kamailio.tcp_uri,
                                "domain": kamailio.domain, "agent": "front-desk"}])
    gw = gateway_factory(cfg)
    gw.wait_log("sip_registered")
    contacts = kamailio.wait_registered("2001")
    assert contacts and all("transport=tcp" in c.lower() for c in contacts), contacts
    result = run_sipp("sn:uac_pcap", kamailio.hostport, tmp_path / "sipp", service="2001",
                      local_port=free_sip_port(), timeout=30, extra_args=TCP, name="uac_pcap")
    assert result.ok, result.describe()
    incoming = gw.wait_log("call_incoming")
    assert incoming["account"] == f"sip:2001@{kamailio.domain}"
    ended = gw.wait_log("call_ended")
    assert ended["reason"].startswith("remote_bye") and ended["rtp_received"] > 200
    assert not gw.errors()


def test_a_request_over_the_mtu_threshold_goes_out_over_tcp(gateway_factory, sipp_uas_factory, tmp_path):
    """pjsip sends a request over 1300 bytes over TCP (RFC 3261 18.1.1) when the URI does not pin UDP.

    The callee listens on TCP only: a UDP INVITE would never reach it. A long User-Agent (a config
    value, so the test needs no code of its own in the gateway) makes the INVITE ~2 kB.
    """
    uas = sipp_uas_factory(scenario=SCENARIOS / "uas_bye_after.xml", port=free_sip_port(), extra_args=TCP,
                           max_calls=1)
    cfg = tcp_config()
    cfg["sip"]["user_agent"] = "voicegate " + "x" * 1200
    gw = gateway_factory(cfg, command="call", extra_args=(uas.uri("bob"),))
    uas.wait_message("INVITE", timeout=15)
    invite = next(m for m in uas.sip_messages() if m.method == "INVITE" and m.direction == "received")
    assert len(invite.text.encode()) > 1300 and "SIP/2.0/TCP" in (invite.header("Via") or "")
    assert gw.wait_log("call_confirmed", timeout=10)
    assert gw.wait_exit(20) == 0  # the callee hung up after 1.5 s: answered, so exit 0


def test_broken_tcp_streams_do_not_disturb_a_udp_call(gateway_factory, tmp_path):
    gw = gateway_factory(tcp_config())
    legit = LegitCall.start(gw, tmp_path / "legit", seconds=8)
    t0 = time.monotonic()
    port = gw.sip_port
    invite_head = (f"INVITE sip:voicegate@127.0.0.1:{port};transport=tcp SIP/2.0\r\n"
                   "Via: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKbroken\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\n"
                   "To: <sip:voicegate@127.0.0.1>\r\nCall-ID: broken@probe\r\nCSeq: 1 INVITE\r\n"
                   "Max-Forwards: 70\r\nContent-Type: application/sdp\r\n")
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)  # opened, never written to
    streams = [
        os.urandom(3000),  # garbage
        invite_head.encode(),  # headers that never end, then half-closed
        (invite_head + "Content-Length: 5000\r\n\r\nv=0\r\n").encode(),  # a body that never comes
        b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Long: " + b"a" * 9000,  # a header past pjsip's 4000-byte buffer
        b"\r\n\r\n" * 200,  # keep-alive CRLFs only (RFC 5626), a lot of them
    ]
    for data in streams:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)  # half-closed: we send no more, and read what comes
            s.settimeout(3)
            try:
                while s.recv(4096):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
    assert options_over_tcp(port).startswith("SIP/2.0 200"), "TCP no longer served after the broken streams"
    idle.close()
    t1 = time.monotonic()
    audio = legit.audio(t0, t1)
    assert alive(gw)
    assert audio.longest_gap_s <= 0.2, f"the UDP call: {audio.describe()}"
    assert audio.packets >= 0.9 * audio.expected, f"the UDP call: {audio.describe()}"
    result = legit.finish(40)
    assert result is not None and result.ok, result.describe() if result else "the UDP call never ended"
    assert not [e for e in gw.errors() if e.get("event") != "pjsip"]
    assert_echo_call_works(gw, tmp_path / "after")


def test_tcp_is_on_by_default(gateway_factory):
    config = gateway_config()
    assert "tcp" not in config["sip"]
    gw = gateway_factory(config)
    assert gw.wait_log("sip_listening")["transports"] == ["udp", "tcp"]
    assert options_over_tcp(gw.sip_port).startswith("SIP/2.0 200")


def test_tcp_false_keeps_the_tcp_port_closed(gateway_factory):
    config = gateway_config()
    config["sip"]["tcp"] = False
    gw = gateway_factory(config)
    assert gw.wait_log("sip_listening")["transports"] == ["udp"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gw.sip_port), timeout=2).close()


def test_silent_and_untrusted_connections_are_closed(gateway_factory, tmp_path):
    """Silent connections are closed after 5 s; one from outside trusted_sources at once.

    As many as the TCP gate lets in at once, less a margin (30 of its 42): past that the gate shuts
    the door until silent ones are closed and their keys freed (~6 s), longer than a connect waits
    (SYN retries at 1 s and 3 s). The gate has its own test: test_bursts_of_connections_reset_...
    """
    config = tcp_config()
    config["sip"]["trusted_sources"] = ["127.0.0.1/32"]
    gw = gateway_factory(config)
    count = KeyCount(listeners=1).close_at - 12
    silent = [socket.create_connection(("127.0.0.1", gw.sip_port), timeout=5) for _ in range(count)]
    stranger = socket.socket()
    stranger.bind(("127.0.0.9", 0))  # another loopback address: another source (see sip_abuse.py)
    stranger.connect(("127.0.0.1", gw.sip_port))
    stranger.settimeout(5)
    assert stranger.recv(100) == b""  # closed by the gateway
    assert gw.wait_log("sip_security_event", kind="untrusted_tcp")["src_ip"] == "127.0.0.9"
    for s in silent:
        s.settimeout(15)
        assert s.recv(100) == b""
        s.close()
    assert wait_until(lambda: len(gw.find("sip_tcp_closed")) == count, 5)  # the log lines may trail the FINs
    assert all(c["after_s"] >= 5 for c in gw.find("sip_tcp_closed"))
    assert options_over_tcp(gw.sip_port).startswith("SIP/2.0 200")
    assert alive(gw) and not [e for e in gw.errors() if e.get("event") != "pjsip"]


def connect_and_reset(port: int, count: int) -> int:
    """Open up to `count` connections one after another, then reset them all (SO_LINGER 0); how many opened.

    One after another, not all at once: the kernel drops a SYN while the listener's accept queue
    (backlog 5) is full, so a simultaneous burst mostly never reaches pjsip. A dropped SYN is sent
    again after 1 s, hence the 1.5 s per connect; two in a row unanswered (the gateway's door is
    shut) end the burst.
    """
    socks, opened, missed = [], 0, 0
    try:
        while opened < count and missed < 2:
            s = socket.socket()
            socks.append(s)
            s.settimeout(1.5)
            try:
                s.connect(("127.0.0.1", port))
            except TimeoutError:
                missed += 1
                continue
            except ConnectionRefusedError:  # nobody listens any more: the process is gone
                break
            opened, missed = opened + 1, 0
    finally:
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    return opened


def test_bursts_of_connections_reset_at_once_leave_the_gateway_up(gateway_factory, tmp_path):
    """Up to 100 connections opened and reset, three times in a row: before the gate (tcp_gate.py) the
    second burst aborted the process in pjlib (`Assertion '!pj_list_empty(&ioqueue->free_list)' failed`)."""
    gw = gateway_factory(tcp_config())
    completed: list[int] = []
    for _ in range(3):
        completed.append(connect_and_reset(gw.sip_port, 100))
        assert alive(gw), f"burst {len(completed)}: {death_note(gw)}"
    time.sleep(0.5)
    assert alive(gw) and crash_signature(gw) is None, death_note(gw)
    print(f"connections opened per burst: {completed}; door shut {len(gw.find('sip_tcp_paused'))} times")
    assert gw.find("sip_tcp_paused"), "the door never shut: the burst did not reach pjsip's limit"
    gw.wait_log("sip_tcp_resumed", timeout=10)
    assert options_over_tcp(gw.sip_port).startswith("SIP/2.0 200")
    result = run_sipp("sn:uac_pcap", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp", service="voicegate",
                      local_port=free_sip_port(), timeout=30, extra_args=TCP, name="uac_pcap")
    assert result.ok, result.describe()
    assert alive(gw) and not [e for e in gw.errors() if e.get("event") != "pjsip"]
