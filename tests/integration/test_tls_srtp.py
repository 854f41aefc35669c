"""SIP over TLS and SRTP (SDES) against real peers: baresip (libre's TLS, libsrtp), SIPp, OpenSSL.

The gateway's certificate is a throwaway self-signed one made here with ``openssl``; baresip
trusts it as its CA file.  The media check is the echo agent's: what baresip says must come
back, which only happens if both sides decrypt each other's SRTP.  The wire check is tshark's:
every RTP packet, both ways, carries the 10-byte authentication tag.  The signalling can only
be TLS: the gateway's TLS port is a TCP port where nothing else listens.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import require_binaries
from tests.integration.conftest import SCENARIOS, run_sipp_refused
from tests.rig.audio import echo_correlation, make_speech_wav, read_wav
from tests.rig.gateway import gateway_config
from tests.rig.ports import free_tcp_port
from tests.rig.proc import wait_until
from tests.rig.sipp import run_sipp

SPEECH = "Hello, this is a secure line test. One two three four five six seven eight nine ten."
SRTP_TAG = 10  # AES_CM_128_HMAC_SHA1_80


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (mode 600, as the config demands)."""
    require_binaries("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    return cert, key


def tls_config(certificate, srtp: str = "required", **rtp) -> tuple[dict, int]:
    cert, key = certificate
    tls_port = free_tcp_port()
    cfg = gateway_config(rtp={"srtp": srtp, **rtp})
    cfg["sip"]["tls"] = {"listen": f"127.0.0.1:{tls_port}", "certificate": str(cert), "private_key": str(key)}
    return cfg, tls_port


def tls_gateway(gateway_factory, certificate, srtp: str = "required", sip_trace: bool = False, **rtp):
    cfg, tls_port = tls_config(certificate, srtp, **rtp)
    cfg["logging"]["sip_trace"] = sip_trace
    gw = gateway_factory(cfg)
    gw.wait_log("sip_tls_listening")
    return gw, tls_port


def test_baresip_calls_over_tls_with_srtp_and_hears_its_echo(gateway_factory, baresip_factory, capture_factory,
                                                             certificate, tmp_wav_dir):
    gw, tls_port = tls_gateway(gateway_factory, certificate, sip_trace=True)
    assert not gw.find("srtp_keys_in_clear")
    wav = make_speech_wav(SPEECH, tmp_wav_dir / "speech.wav", pad_before_s=0.5, pad_after_s=1.0)
    capture = capture_factory()
    caller = baresip_factory("alice", password=None, source_wav=wav, call_duration_s=9,
                             account_extra="mediaenc=srtp-mand", modules=("srtp.so",),
                             extra_config=f"sip_cafile\t\t{certificate[0]}")
    caller.dial(f"sip:voicegate@127.0.0.1:{tls_port};transport=tls")
    caller.wait_call_established(timeout=10)
    media = gw.wait_log("call_media", timeout=5)
    assert media["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    gw.wait_log("srtp_on")
    caller.wait_call_closed(timeout=30)
    ended = gw.wait_log("call_ended")
    assert ended["rtp_received"] > 300 and ended["rtp_sent"] > 300
    capture.stop()
    sent, rate = read_wav(caller.recordings()[0])
    received, _ = read_wav(caller.recordings()[1])
    score, lag = echo_correlation(sent, received, rate, max_lag_s=1.0)
    assert score > 0.8, f"the echo did not survive SRTP both ways (correlation {score:.2f})"
    port = media["local_port"]
    for direction in (capture.media_to(port), capture.media_from(port)):
        rtp = [p for p in direction if p.is_rtp and p.rtp_payload_type == 0]
        assert len(rtp) > 300
        assert {len(p.payload) for p in rtp} == {12 + 160 + SRTP_TAG}, "plain RTP on the wire"
    trace = gw.log_path.read_text()  # SIP tracing is on: every SDP is in the log, without its keys
    assert "a=crypto:" in trace and "inline:<redacted>" in trace
    assert re.search(r"inline:(?!<redacted>)", trace) is None
    assert not gw.errors()


def test_srtp_survives_a_re_invite_from_the_caller(gateway_factory, baresip_factory, certificate, tmp_wav_dir):
    gw, tls_port = tls_gateway(gateway_factory, certificate)
    wav = make_speech_wav(SPEECH, tmp_wav_dir / "speech.wav", pad_before_s=0.5, pad_after_s=1.0)
    caller = baresip_factory("carol", password=None, source_wav=wav, call_duration_s=9,
                             account_extra="mediaenc=srtp-mand", modules=("srtp.so",),
                             extra_config=f"sip_cafile\t\t{certificate[0]}")
    caller.dial(f"sip:voicegate@127.0.0.1:{tls_port};transport=tls")
    caller.wait_call_established(timeout=10)
    gw.wait_log("srtp_on", timeout=5)
    time.sleep(1.5)
    caller.reinvite()  # a new offer over TLS: pjsua answers it, our SDP keeps the call's key
    assert wait_until(lambda: len(gw.find("call_media")) >= 2, timeout=5)
    assert all(m["srtp"] == "AES_CM_128_HMAC_SHA1_80" for m in gw.find("call_media"))
    caller.wait_call_closed(timeout=30)
    ended = gw.wait_log("call_ended")
    # libre sends one RTCP APP "PING" in clear before its SRTP is up (and its BYE in clear at the
    # end, usually after we closed): dropped, as a plain packet on an SRTP call must be.
    assert ended["srtp_rejected"] <= 2 and ended["rtp_received"] > 350
    sent, rate = read_wav(caller.recordings()[0])
    received, _ = read_wav(caller.recordings()[1])
    score, _ = echo_correlation(sent, received, rate, max_lag_s=1.0)
    assert score > 0.8, f"the echo did not survive the re-INVITE (correlation {score:.2f})"
    assert not gw.errors()


def test_mutual_tls_admits_only_peers_with_a_certificate_from_ca_list(gateway_factory, baresip_factory,
                                                                      certificate):
    cert, key = certificate
    cfg, tls_port = tls_config(certificate)
    cfg["sip"]["tls"].update(ca_list=str(cert), verify_peer=True)  # the self-signed cert is its own CA
    gw = gateway_factory(cfg)
    gw.wait_log("sip_tls_listening", verify_peer=True)
    bundle = cert.parent / "client.pem"
    bundle.write_text(cert.read_text() + key.read_text())
    target = f"sip:voicegate@127.0.0.1:{tls_port};transport=tls"
    common = dict(password=None, call_duration_s=3, account_extra="mediaenc=srtp-mand", modules=("srtp.so",))
    stranger = baresip_factory("mallory", extra_config=f"sip_cafile\t\t{cert}", **common)
    stranger.dial(target)
    stranger.wait_call_closed(timeout=15)  # no client certificate: the handshake fails, no INVITE arrives
    assert "CALL_ESTABLISHED" not in stranger.event_types() and not gw.find("call_incoming")
    friend = baresip_factory("pbx", extra_config=f"sip_certificate\t{bundle}\nsip_cafile\t\t{cert}", **common)
    friend.dial(target)
    friend.wait_call_established(timeout=10)
    assert gw.wait_log("call_media", timeout=5)["srtp"] == "AES_CM_128_HMAC_SHA1_80"


def test_gateway_registers_over_tls_and_takes_an_srtp_call_the_pbx_routes_over_tls(
        kamailio_factory, gateway_factory, baresip_factory, certificate, tmp_wav_dir):
    require_binaries("kamailio")
    kamailio = kamailio_factory(tls=certificate)
    cfg, _ = tls_config(certificate)
    cfg["sip"]["tls"]["ca_list"] = str(certificate[0])  # Kamailio's certificate is checked (verify_server)
    cfg["sip"]["accounts"] = [{"username": "2001", "password": "secret", "registrar": kamailio.tls_uri,
                               "domain": kamailio.domain, "agent": "front-desk"}]
    gw = gateway_factory(cfg)
    gw.wait_log("sip_registered")
    contacts = kamailio.wait_registered("2001")
    assert contacts and all("transport=tls" in c.lower() for c in contacts), contacts
    wav = make_speech_wav(SPEECH, tmp_wav_dir / "speech.wav", pad_before_s=0.5, pad_after_s=1.0)
    caller = baresip_factory("2002", kamailio=kamailio, source_wav=wav, call_duration_s=8,
                             account_extra="mediaenc=srtp-mand", modules=("srtp.so",))
    caller.wait_registered()
    caller.dial(kamailio.uri("2001"))  # UDP to the PBX, TLS from the PBX to the gateway
    caller.wait_call_established(timeout=10)
    assert gw.wait_log("call_media", timeout=5)["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    caller.wait_call_closed(timeout=30)
    sent, rate = read_wav(caller.recordings()[0])
    received, _ = read_wav(caller.recordings()[1])
    score, _ = echo_correlation(sent, received, rate, max_lag_s=1.0)
    assert score > 0.8, f"no echo through the PBX (correlation {score:.2f})"
    assert not gw.errors()


def test_a_registrar_whose_certificate_the_ca_list_does_not_vouch_for_is_not_registered_with(
        kamailio_factory, gateway_factory, certificate, tmp_path):
    require_binaries("kamailio")
    kamailio = kamailio_factory(tls=certificate)
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(other / "key.pem"),
                    "-out", str(other / "ca.pem"), "-days", "2", "-subj", "/CN=someone else"],
                   check=True, capture_output=True, timeout=60)
    cfg, _ = tls_config(certificate)
    cfg["sip"]["tls"]["ca_list"] = str(other / "ca.pem")
    cfg["sip"]["accounts"] = [{"username": "2001", "password": "secret", "registrar": kamailio.tls_uri,
                               "domain": kamailio.domain, "agent": "front-desk"}]
    gw = gateway_factory(cfg)
    assert wait_until(lambda: gw.find("sip_registrar_unreachable"), 15)
    assert "verification" in gw.find("sip_registrar_unreachable")[0]["reason"]  # PJSIP_TLS_ECERTVERIF
    assert not gw.find("sip_registered") and not kamailio.is_registered("2001")


def test_plain_offer_is_refused_with_488_when_srtp_is_required(gateway_factory, certificate, tmp_path):
    gw, _ = tls_gateway(gateway_factory, certificate)
    result = run_sipp_refused(gw, 488, tmp_path / "sipp")
    assert result.ok, result.describe()
    assert not gw.find("call_media")


def test_late_offer_reads_the_srtp_key_from_the_ack(gateway_factory, capture_factory, certificate, tmp_path):
    """An INVITE without SDP: our offer goes in the 200, the peer's key comes in the ACK."""
    gw, _ = tls_gateway(gateway_factory, certificate)
    capture = capture_factory()
    result = run_sipp(SCENARIOS / "late_offer_srtp.xml", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp",
                      service="voicegate", timeout=15)
    assert result.ok, result.describe()
    media = gw.wait_log("call_media", timeout=5)
    assert media["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    assert not gw.find("sip_srtp_answer_missing") and not gw.find("call_media_unusable")
    gw.wait_log("call_ended", timeout=5)
    capture.stop()
    sent = [p for p in capture.media_from(media["local_port"]) if p.is_rtp and p.rtp_payload_type == 0]
    assert len(sent) > 50 and {len(p.payload) for p in sent} == {12 + 160 + SRTP_TAG}


def test_optional_srtp_still_takes_a_plain_call(gateway_factory, certificate, tmp_path):
    gw, _ = tls_gateway(gateway_factory, certificate, srtp="optional", inactivity_timeout_s=2)
    result = run_sipp(SCENARIOS / "wait_for_bye.xml", f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp",
                      service="voicegate", timeout=20)
    assert result.ok, result.describe()
    assert gw.wait_log("call_media", timeout=5)["srtp"] is None
    assert gw.wait_log("call_ended")["rtp_sent"] > 50  # plain RTP flowed until SIPp's silence timed out


def test_gateway_calls_baresip_over_tls_and_reads_the_answers_srtp_key(gateway_factory, baresip_factory,
                                                                      certificate, tmp_wav_dir):
    cert, key = certificate
    bundle = cert.parent / "baresip.pem"  # libre wants certificate and key in one file
    bundle.write_text(cert.read_text() + key.read_text())
    wav = make_speech_wav(SPEECH, tmp_wav_dir / "speech.wav", pad_before_s=0.5, pad_after_s=1.0)
    callee = baresip_factory("bob", password=None, source_wav=wav, call_duration_s=8,
                             account_extra="mediaenc=srtp-mand", modules=("srtp.so",),
                             extra_config=f"sip_certificate\t{bundle}\nsip_cafile\t\t{cert}")
    cfg, _ = tls_config(certificate)
    gw = gateway_factory(cfg, command="call",
                         extra_args=(f"sip:bob@127.0.0.1:{callee.sip_port + 1};transport=tls",))
    callee.wait_call_established(timeout=15)
    media = gw.wait_log("call_media", timeout=5)
    assert media["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    callee.wait_call_closed(timeout=30)
    sent, rate = read_wav(callee.recordings()[0])
    received, _ = read_wav(callee.recordings()[1])
    score, _ = echo_correlation(sent, received, rate, max_lag_s=1.0)
    assert score > 0.8, f"the echo did not survive SRTP both ways (correlation {score:.2f})"
    assert gw.wait_exit(15) == 0
    assert not gw.errors()


def test_tls_accepts_only_tls12_with_forward_secret_aead_ciphers(gateway_factory, certificate):
    require_binaries("openssl")
    _, tls_port = tls_gateway(gateway_factory, certificate)

    def handshake(*args: str) -> str:
        done = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls_port}", *args],
                              input=b"", capture_output=True, timeout=20)
        return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")

    good = handshake("-tls1_2")
    assert "Cipher is ECDHE-RSA-AES" in good and "GCM" in good, good[-600:]
    assert "Cipher is (NONE)" in handshake("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert "Cipher is (NONE)" in handshake("-tls1_2", "-cipher", "AES128-SHA")  # no forward secrecy
