"""Self-tests of the test rig: real peers talk to each other without the gateway.

If these fail, gateway integration failures mean nothing: fix the rig (or the
machine's packages) first.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_binaries
from tests.rig.audio import (
    active_segments,
    best_correlation,
    chirp,
    echo_correlation,
    make_speech_wav,
    noise,
    read_wav,
    rms_dbfs,
    write_wav,
)
from tests.rig.baresip import Baresip
from tests.rig.capture import Capture
from tests.rig.kamailio import Kamailio
from tests.rig.ports import free_port_pair, free_tcp_port, free_udp_port
from tests.rig.sipp import SippUas, run_sipp_uac_pcap

pytestmark = pytest.mark.integration

BaresipFactory = Callable[..., Baresip]


# ------------------------------------------------------------ pure helpers
def test_free_ports_are_bindable_and_distinct() -> None:
    udp, tcp = free_udp_port(), free_tcp_port()
    rtp = free_port_pair()
    assert rtp % 2 == 0 and 10000 <= rtp < 20000
    assert len({udp, rtp, rtp + 1}) == 3
    for port, kind in (
        (udp, socket.SOCK_DGRAM),
        (rtp, socket.SOCK_DGRAM),
        (rtp + 1, socket.SOCK_DGRAM),
        (tcp, socket.SOCK_STREAM),
    ):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", port))


def test_best_correlation_finds_delay_and_rejects_unrelated(tmp_wav_dir: Path) -> None:
    rate = 8000
    sent = np.concatenate([chirp(300, 3000, 1.0, rate), noise(1.0, rate, seed=1)])
    delayed = np.concatenate([np.zeros(1000, np.float32), 0.5 * sent])  # 125 ms late, -6 dB
    path = write_wav(tmp_wav_dir / "delayed.wav", delayed, rate)
    received, r = read_wav(path)
    score, lag = best_correlation(sent, received, r, max_lag_s=1.0)
    assert score > 0.99 and abs(lag - 0.125) < 1e-3
    unrelated_score, _ = best_correlation(sent, noise(2.0, rate, seed=7), rate, max_lag_s=1.0)
    assert abs(unrelated_score) < 0.3
    assert active_segments(delayed, rate)[0][0] == pytest.approx(0.12, abs=0.03)


def test_echo_correlation_follows_a_delay_step_and_rejects_a_broken_echo() -> None:
    rate = 8000
    sent = np.concatenate([chirp(300, 3000, 1.0, rate), np.zeros(2000, np.float32), noise(1.0, rate, seed=1)])
    # the jitter buffer's delay grows by one 10 ms packet in the pause: one lag for the file scores low
    stepped = np.concatenate([np.zeros(800, np.float32), sent[:9000], np.zeros(80, np.float32), sent[9000:]])
    assert best_correlation(sent, stepped, rate)[0] < 0.9
    score, lag = echo_correlation(sent, stepped, rate)
    assert score > 0.99 and abs(lag - 0.1) < 0.02
    chirp_lost = np.concatenate([np.zeros(9800, np.float32), stepped[9800:]])
    assert echo_correlation(sent, chirp_lost, rate)[0] < 0.5
    assert echo_correlation(sent, np.zeros_like(stepped), rate)[0] == 0.0


# ---------------------------------------------------------------- kamailio
def test_kamailio_starts_and_answers(kamailio: Kamailio) -> None:
    assert kamailio.running()
    assert "kamailio" in str(kamailio.rpc("core.version"))
    assert kamailio.contacts("2002") == []
    assert kamailio.saw_request("OPTIONS")  # the readiness probe crossed the proxy


def test_baresip_registers(kamailio: Kamailio, baresip_factory: BaresipFactory) -> None:
    ua = baresip_factory("2002", "secret", kamailio)
    ua.wait_registered(timeout=5)
    contacts = kamailio.wait_registered("2002", timeout=5)
    assert any(f":{ua.sip_port}" in c for c in contacts), contacts
    assert kamailio.is_registered("2002")
    assert not kamailio.is_registered("2003")
    assert kamailio.saw_reply(401, "REGISTER") and kamailio.saw_reply(200, "REGISTER")


def test_wrong_password_does_not_register(kamailio: Kamailio, baresip_factory: BaresipFactory) -> None:
    ua = baresip_factory("2002", "not-the-password", kamailio)
    ua.wait_registration_failed(timeout=5)
    assert not kamailio.is_registered("2002")


def test_kamailio_restart_loses_registrations(kamailio: Kamailio, baresip_factory: BaresipFactory) -> None:
    ua = baresip_factory("2002", "secret", kamailio)
    ua.wait_registered(timeout=5)
    kamailio.wait_registered("2002", timeout=5)
    port = kamailio.port
    kamailio.restart()
    assert kamailio.port == port and kamailio.running()
    assert not kamailio.is_registered("2002")


# ------------------------------------------------------------------- calls
def test_call_through_kamailio_audio_both_ways(
    kamailio: Kamailio, baresip_factory: BaresipFactory, tmp_wav_dir: Path
) -> None:
    require_binaries("espeak-ng", "sox")
    caller_wav = make_speech_wav(
        "Hello, I would like to book a table for two.", tmp_wav_dir / "caller.wav", pad_before_s=0.3
    )
    callee_wav = make_speech_wav(
        "Good evening, thank you for calling the restaurant.", tmp_wav_dir / "callee.wav", pad_before_s=0.3
    )
    callee = baresip_factory("2002", "secret", kamailio, source_wav=callee_wav, call_duration_s=10)
    caller = baresip_factory("2003", "secret", kamailio, source_wav=caller_wav, call_duration_s=10)
    callee.wait_registered(timeout=5)
    caller.wait_registered(timeout=5)

    caller.dial(kamailio.uri("2002"))
    established = caller.wait_event("CALL_ESTABLISHED", timeout=5)
    assert established["direction"] == "outgoing"
    incoming = callee.wait_event("CALL_ESTABLISHED", timeout=5)
    assert incoming["direction"] == "incoming" and "2003" in incoming["peeruri"]
    time.sleep(3.6)  # both speeches are < 3.5 s long
    caller.hangup()
    caller.wait_event("CALL_CLOSED", timeout=5)
    callee.wait_event("CALL_CLOSED", timeout=5)

    for method in ("INVITE", "ACK", "BYE"):
        assert kamailio.saw_request(method), method
    assert kamailio.saw_reply(200, "INVITE")

    sent_by_caller, _ = read_wav(caller_wav)
    sent_by_callee, _ = read_wav(callee_wav)
    _, callee_heard_path = callee.recordings()
    _, caller_heard_path = caller.recordings()
    callee_heard, rate = read_wav(callee_heard_path)
    caller_heard, _ = read_wav(caller_heard_path)
    assert rms_dbfs(callee_heard) > -40 and rms_dbfs(caller_heard) > -40

    score, lag = best_correlation(sent_by_caller, callee_heard, rate, max_lag_s=2.0)
    assert score > 0.8, (score, lag)
    score_back, lag_back = best_correlation(sent_by_callee, caller_heard, rate, max_lag_s=2.0)
    assert score_back > 0.8, (score_back, lag_back)
    wrong, _ = best_correlation(sent_by_callee, callee_heard, rate, max_lag_s=2.0)
    assert wrong < 0.5, wrong


def test_manual_answer_and_dtmf(kamailio: Kamailio, baresip_factory: BaresipFactory) -> None:
    callee = baresip_factory("2002", "secret", kamailio, answermode="manual")
    caller = baresip_factory("2003", "secret", kamailio)
    callee.wait_registered(timeout=5)
    caller.wait_registered(timeout=5)
    caller.dial(kamailio.uri("2002"))
    ringing = callee.wait_event("CALL_INCOMING", timeout=5)
    assert "2003" in ringing["peeruri"]
    caller.wait_event("CALL_RINGING", timeout=5)
    callee.accept()
    callee.wait_event("CALL_ESTABLISHED", timeout=5)
    caller.wait_event("CALL_ESTABLISHED", timeout=5)
    caller.send_dtmf("4#")
    assert callee.wait_event("CALL_DTMF_START", timeout=3)["param"] == "4"
    assert callee.wait_event("CALL_DTMF_START", timeout=3)["param"] == "#"
    callee.hangup()
    caller.wait_event("CALL_CLOSED", timeout=5)


def test_cancel_reinvite_and_refer_cross_the_proxy(
    kamailio: Kamailio, baresip_factory: BaresipFactory
) -> None:
    target = baresip_factory("2001", "secret", kamailio)
    callee = baresip_factory("2002", "secret", kamailio, answermode="manual")
    caller = baresip_factory("2003", "secret", kamailio)
    for ua in (target, callee, caller):
        ua.wait_registered(timeout=5)

    caller.dial(kamailio.uri("2002"))  # caller gives up while it rings: CANCEL
    callee.wait_event("CALL_INCOMING", timeout=5)
    caller.hangup()
    callee.wait_event("CALL_CLOSED", timeout=5)
    caller.wait_event("CALL_CLOSED", timeout=5)
    assert kamailio.saw_request("CANCEL") and kamailio.saw_reply(487, "INVITE")

    caller.dial(kamailio.uri("2002"))
    callee.wait_event("CALL_INCOMING", timeout=5)
    callee.accept()
    caller.wait_event("CALL_ESTABLISHED", timeout=5)
    caller.hold()  # re-INVITE a=sendonly, then back
    callee.wait_event("CALL_REMOTE_SDP", timeout=5)
    caller.resume()
    callee.transfer(kamailio.uri("2001"))  # REFER to the caller: it calls 2001
    assert caller.wait_event("TRANSFER", timeout=5)["param"] == kamailio.uri("2001")
    target.wait_event("CALL_ESTABLISHED", timeout=5)
    callee.wait_event("CALL_CLOSED", timeout=5)
    kamailio.wait_request("NOTIFY", timeout=5)
    assert kamailio.saw_request("REFER") and kamailio.saw_reply(202, "REFER")
    invites = [e for e in kamailio.sip_log() if e.kind == "REQ" and e.method == "INVITE"]
    assert len(invites) >= 5  # 2 calls + hold + resume + transferred call
    caller.hangup()
    target.wait_event("CALL_CLOSED", timeout=5)


def test_baresip_calls_sipp_uas_directly(
    baresip_factory: BaresipFactory, sipp_uas_factory: Callable[..., SippUas]
) -> None:
    uas = sipp_uas_factory(max_calls=1)
    ua = baresip_factory("2005", None)  # no registrar: direct URI dialling
    ua.dial(uas.uri("service"))
    ua.wait_event("CALL_ESTABLISHED", timeout=5)
    time.sleep(0.5)
    ua.hangup()
    ua.wait_event("CALL_CLOSED", timeout=5)
    uas.wait_message("BYE", direction="received", timeout=5)
    uas.wait_message("BYE", status=200, direction="sent", timeout=5)  # (built-in uas then waits 4 s)
    assert [m.method for m in uas.sip_messages() if m.direction == "received"] == ["INVITE", "ACK", "BYE"]


def test_sipp_uac_pcap_through_kamailio_to_baresip(
    kamailio: Kamailio,
    baresip_factory: BaresipFactory,
    capture_factory: Callable[..., Capture],
    tmp_path: Path,
) -> None:
    ua = baresip_factory("2002", "secret", kamailio)
    ua.wait_registered(timeout=5)
    kamailio.wait_registered("2002", timeout=5)
    media_port = free_port_pair()
    cap = capture_factory(ports=[kamailio.port, ua.sip_port, media_port, media_port + 1])

    result = run_sipp_uac_pcap(
        kamailio.hostport, "2002", tmp_path / "sipp", media_port=media_port, timeout=20
    )
    assert result.returncode == 0, result.describe()
    assert result.successful_calls == 1 and result.failed_calls == 0
    ua.wait_event("CALL_CLOSED", timeout=5)

    to_ua = [d for d in cap.rtp() if d.sport == media_port]
    from_ua = [d for d in cap.rtp() if d.dport == media_port]
    assert len(to_ua) > 100, cap.flows()
    assert {d.rtp_payload_type for d in to_ua} >= {8, 101}  # PCMA speech + RFC 2833 DTMF
    assert len(from_ua) > 100, cap.flows()
    assert len({d.sport for d in from_ua}) == 1  # baresip sends from one RTP port
    dtmf = [e for e in ua.events() if e.get("type") == "CALL_DTMF_START"]
    assert dtmf and dtmf[0]["param"] == "1"

    _, heard = ua.recordings()
    samples, rate = read_wav(heard)
    assert active_segments(samples, rate), "baresip recorded only silence from SIPp"
