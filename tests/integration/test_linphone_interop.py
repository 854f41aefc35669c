"""Interop with a second, independent SIP stack: linphone (belle-sip + mediastreamer2) through Kamailio.

The gateway's pjsip has so far met SIPp and baresip. linphone is the stack of many real phones; here
it registers with Kamailio as 2002 and (a) calls the gateway's extension 2001, (b) is called by the
gateway (`voicegate call`). The echo agent sends back what it hears, so one comparison checks both
directions: what linphone recorded must be what it played, a round trip later (correlation of the
two WAVs, tests/rig/audio.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import attach_log, require_binaries
from tests.integration.test_calls_baresip import SPEECH, registered_gateway
from tests.rig.audio import echo_correlation, make_speech_wav, read_wav, wav_duration
from tests.rig.gateway import gateway_config
from tests.rig.kamailio import Kamailio
from tests.rig.linphone import Linphone

MIN_CORRELATION = 0.8  # a G.711 round trip of the same speech scores > 0.9 (tests/rig/audio.py)


@pytest.fixture
def linphone_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Linphone]]:
    """``linphone_factory(user, kamailio=None, source_wav=None, ...) -> Linphone`` (started, not registered)."""
    require_binaries("linphonec")
    started: list[Linphone] = []

    def make(user: str, kamailio: Kamailio | None = None, **kwargs: Any) -> Linphone:
        phone = Linphone(tmp_path / f"linphone-{user}-{len(started)}", user,
                         registrar=kamailio.hostport if kamailio is not None else None, **kwargs)
        started.append(phone)
        attach_log(request, f"linphonec {user}", phone.log_path)
        phone.start()
        return phone

    yield make
    for phone in reversed(started):
        phone.stop()


def assert_heard_its_own_speech(phone: Linphone) -> tuple[float, float]:
    sent, rate = read_wav(phone.played_wav)
    received, rate2 = read_wav(phone.recording)
    assert rate2 in (8000, 16000), rate2
    if rate2 != rate:
        from tests.rig.audio import resample

        received = resample(received, rate2, rate)
    score, lag = echo_correlation(sent, received, rate, max_lag_s=1.5)
    print(f"linphone heard its own speech back: correlation {score:.3f}, lag {lag * 1000:.0f} ms")
    assert score > MIN_CORRELATION, f"echo does not match what linphone sent (correlation {score:.2f}, lag {lag:.3f} s)"
    assert lag > 0.02, f"lag {lag * 1000:.0f} ms: that is linphone's own microphone, not the gateway's echo"
    return score, lag


def test_linphone_calls_the_gateway_through_kamailio(kamailio, gateway_factory, linphone_factory, tmp_wav_dir):
    gw = registered_gateway(kamailio, gateway_factory)
    wav = make_speech_wav(SPEECH, tmp_wav_dir / "speech.wav", pad_before_s=0.5, pad_after_s=1.0)
    phone = linphone_factory("2002", kamailio, source_wav=wav, call_duration_s=wav_duration(wav) + 2)
    phone.register()
    phone.call(kamailio.uri("2001"))
    phone.wait_connected(timeout=15)
    incoming = gw.wait_log("call_incoming")
    assert incoming["account"] == f"sip:2001@{kamailio.domain}"
    media = gw.wait_log("call_media")
    time.sleep(wav_duration(wav) + 1.0)
    phone.terminate()
    phone.wait_ended(timeout=10)
    ended = gw.wait_log("call_ended", timeout=10)
    assert ended["reason"].startswith("remote_bye"), ended
    assert ended["rtp_received"] > 200 and ended["rtp_sent"] > 200, ended
    print(f"codec {media['codec']}; gateway rtp received {ended['rtp_received']}, sent {ended['rtp_sent']}")
    assert_heard_its_own_speech(phone)
    assert not gw.errors()


def test_the_gateway_calls_linphone_through_kamailio(kamailio, gateway_factory, linphone_factory, tmp_wav_dir):
    wav = make_speech_wav(SPEECH, tmp_wav_dir / "speech.wav", pad_before_s=1.0, pad_after_s=1.0)
    phone = linphone_factory("2002", kamailio, source_wav=wav, call_duration_s=wav_duration(wav) + 2)
    phone.register()
    account = {"username": "2001", "password": "secret", "registrar": f"sip:{kamailio.hostport}",
               "domain": kamailio.domain, "agent": "front-desk"}
    gw = gateway_factory(gateway_config(accounts=[account]), command="call", extra_args=(kamailio.uri("2002"),))
    phone.wait_connected(timeout=20)  # linphonec -a answers by itself
    gw.wait_log("call_confirmed", timeout=10)
    time.sleep(wav_duration(wav) + 1.0)
    phone.terminate()
    ended = gw.wait_log("call_ended", timeout=10)
    assert ended["reason"].startswith("remote_bye"), ended
    assert ended["rtp_received"] > 200 and ended["rtp_sent"] > 200, ended
    phone.wait_ended(timeout=10)
    assert_heard_its_own_speech(phone)
    assert gw.wait_exit(15) == 0
