"""pjmedia's idle stream must never reach the peer: all media comes from the gateway's own ports.

A peer with symmetric RTP latches onto the first source it hears, so a single stray packet
from pjmedia's ports could hijack the call's audio. tshark records every UDP datagram on
loopback during a call; every RTP/RTCP datagram that reaches the peer's media ports must come
from the gateway's RTP port (or RTCP = RTP + 1).
"""

from __future__ import annotations

import time

from tests.rig.gateway import gateway_config
from tests.rig.ports import free_port_pair
from tests.rig.sipp import run_sipp_uac_pcap


def assert_only_gateway_media(capture, peer_ports: set[int], gateway_port: int) -> None:
    to_peer = [d for d in capture.packets() if d.dport in peer_ports and (d.is_rtp or d.is_rtcp)]
    assert len([d for d in to_peer if d.is_rtp]) > 100, capture.flows()
    strays = [d for d in to_peer if d.sport not in (gateway_port, gateway_port + 1)]
    assert not strays, f"media from foreign ports: {capture.flows()}"
    assert any(d.is_rtcp and d.sport == gateway_port + 1 for d in to_peer), "no RTCP from RTP port + 1"
    assert not any(d.is_rtcp and d.sport == gateway_port for d in to_peer)


def test_incoming_call_media_only_from_gateway_port(gateway_factory, capture_factory, tmp_path):
    gw = gateway_factory(gateway_config())
    media_port = free_port_pair()
    capture = capture_factory()
    result = run_sipp_uac_pcap(f"127.0.0.1:{gw.sip_port}", "voicegate", tmp_path / "sipp",
                               media_port=media_port, timeout=30)
    assert result.ok, result.describe()
    gw.wait_log("call_ended")
    time.sleep(0.5)
    capture.stop()
    local_port = gw.wait_log("call_media")["local_port"]
    assert_only_gateway_media(capture, {media_port, media_port + 1}, local_port)


def test_outgoing_call_media_only_from_gateway_port(kamailio, gateway_factory, baresip_factory,
                                                    capture_factory):
    callee = baresip_factory("2002", kamailio=kamailio, answermode="auto")
    callee.wait_registered()
    capture = capture_factory()
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    gw = gateway_factory(gateway_config(accounts=[account]), command="call", extra_args=(kamailio.uri("2002"),))
    callee.wait_call_established(timeout=15)
    media = gw.wait_log("call_media", timeout=10)
    time.sleep(8)  # long enough for at least one RTCP report
    callee.hangup()
    gw.wait_log("call_ended", timeout=10)
    assert gw.wait_exit(15) == 0
    time.sleep(0.5)
    capture.stop()
    peer_port = int(media["remote"].rpartition(":")[2])
    assert_only_gateway_media(capture, {peer_port, peer_port + 1}, media["local_port"])
