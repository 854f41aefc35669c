"""Calls with baresip through Kamailio: the echo agent returns the caller's audio; outbound calls; BYE."""

from __future__ import annotations

import signal
import time

from tests.rig.audio import echo_correlation, make_speech_wav, read_wav
from tests.rig.gateway import gateway_config

SPEECH = ("Hello, this is a line test. The quick brown fox jumps over the lazy dog. "
          "One two three four five six seven eight nine ten.")


def registered_gateway(kamailio, gateway_factory, **config):
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk", "register_expires_s": 120}
    gw = gateway_factory(gateway_config(accounts=[account], **config))
    gw.wait_log("sip_registered")
    kamailio.wait_registered("2001")
    return gw


def test_echo_agent_returns_the_callers_audio_through_kamailio(kamailio, gateway_factory, baresip_factory,
                                                               tmp_wav_dir):
    gw = registered_gateway(kamailio, gateway_factory)
    wav = make_speech_wav(SPEECH, tmp_wav_dir / "speech.wav", pad_before_s=0.5, pad_after_s=1.0)
    caller = baresip_factory("2002", kamailio=kamailio, source_wav=wav, call_duration_s=14)
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))
    caller.wait_call_established(timeout=10)
    gw.wait_log("call_confirmed")
    caller.wait_call_closed(timeout=30)  # baresip hangs up when its source file ends
    ended = gw.wait_log("call_ended")
    assert ended["reason"].startswith("remote_bye")
    sent_path, received_path = caller.recordings()
    sent, rate = read_wav(sent_path)
    received, rate2 = read_wav(received_path)
    assert rate == rate2 == 8000
    score, lag = echo_correlation(sent, received, rate, max_lag_s=1.0)
    assert score > 0.8, f"echo does not match what was sent (correlation {score:.2f}, lag {lag:.3f}s)"
    assert 0.0 <= lag < 0.3  # network round trip + jitter buffer, on loopback
    assert not gw.errors()


def test_outgoing_call_to_baresip_and_bye_from_callee(kamailio, gateway_factory, baresip_factory, tmp_wav_dir):
    callee = baresip_factory("2002", kamailio=kamailio, answermode="auto")
    callee.wait_registered()
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    gw = gateway_factory(gateway_config(accounts=[account]), command="call", extra_args=(kamailio.uri("2002"),))
    callee.wait_call_established(timeout=15)
    gw.wait_log("call_confirmed", timeout=10)
    time.sleep(1.0)
    callee.hangup()
    ended = gw.wait_log("call_ended", timeout=10)
    assert ended["reason"].startswith("remote_bye")
    assert ended["rtp_received"] > 20 and ended["rtp_sent"] > 20
    assert gw.wait_exit(15) == 0


def test_outgoing_call_bye_from_gateway_on_sigint(kamailio, gateway_factory, baresip_factory):
    callee = baresip_factory("2002", kamailio=kamailio, answermode="auto")
    callee.wait_registered()
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    gw = gateway_factory(gateway_config(accounts=[account]), command="call",
                         extra_args=(kamailio.uri("2002"),))
    callee.wait_call_established(timeout=15)
    gw.wait_log("call_confirmed", timeout=10)
    time.sleep(0.5)
    assert gw.stop(signal.SIGINT) == 0
    callee.wait_call_closed(timeout=5)  # the gateway sent BYE
    assert kamailio.saw_request("BYE")
    assert gw.find("call_hangup", reason="shutdown")


def test_sigterm_hangs_up_incoming_calls_and_unregisters(kamailio, gateway_factory, baresip_factory,
                                                         tmp_wav_dir):
    gw = registered_gateway(kamailio, gateway_factory)
    wav = make_speech_wav("Hold the line please.", tmp_wav_dir / "s.wav", total_s=30)
    caller = baresip_factory("2002", kamailio=kamailio, source_wav=wav, call_duration_s=30)
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))
    caller.wait_call_established(timeout=10)
    gw.wait_log("call_confirmed")
    assert gw.stop(signal.SIGTERM) == 0
    caller.wait_call_closed(timeout=5)
    assert not kamailio.is_registered("2001")


def test_failed_outgoing_call_releases_its_ports(kamailio, gateway_factory):
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    gw = gateway_factory(gateway_config(accounts=[account]), command="call",
                         extra_args=(kamailio.uri("2999"),))  # nobody is registered as 2999
    ended = gw.wait_log("call_ended", timeout=15)
    assert ended["code"] == 404
    assert gw.wait_log("rtp_released")["ports_in_use"] == 0
    assert gw.wait_exit(15) == 1  # `voicegate call` reports the failure
