"""SRTP: the libsrtp wrapper, and an RtpSession that encrypts and authenticates its media."""

from __future__ import annotations

import secrets
import time

import numpy as np
import pytest

from rtp.g711 import PCMU
from rtp.jitter import FrameType
from rtp.packet import RtpPacket
from rtp.rtcp import Bye, SenderReport, parse_compound
from rtp.srtp import SrtpContext, SrtpError, SrtpKeys, decode_inline_key, encode_inline_key
from tests.unit.test_session import Listener, allocator, far, make_session, remote_for  # noqa: F401 - fixtures

SUITE = "AES_CM_128_HMAC_SHA1_80"


def pair(suite: str = SUITE) -> tuple[SrtpContext, SrtpContext]:
    a, b = secrets.token_bytes(30), secrets.token_bytes(30)
    return SrtpContext(SrtpKeys(suite, a, b)), SrtpContext(SrtpKeys(suite, b, a))


def rtp(seq: int, payload: bytes = b"\xff" * 160, ssrc: int = 0x1234) -> bytes:
    return RtpPacket(payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=ssrc, payload=payload).serialize()


@pytest.mark.parametrize("suite,tag", [("AES_CM_128_HMAC_SHA1_80", 10), ("AES_CM_128_HMAC_SHA1_32", 4)])
def test_round_trip_with_the_suites_authentication_tag(suite, tag):
    ours, theirs = pair(suite)
    plain = rtp(1)
    wire = ours.protect(plain)
    assert len(wire) == len(plain) + tag
    assert wire[:12] == plain[:12] and wire[12:172] != plain[12:]  # header clear, payload encrypted
    assert theirs.unprotect(wire) == plain


def test_tampered_replayed_and_wrongly_keyed_packets_are_rejected():
    ours, theirs = pair()
    wire = ours.protect(rtp(5))
    flipped = bytearray(wire)
    flipped[40] ^= 1
    with pytest.raises(SrtpError, match="authentication"):
        theirs.unprotect(bytes(flipped))
    assert theirs.unprotect(wire) == rtp(5)
    with pytest.raises(SrtpError, match="replay"):
        theirs.unprotect(wire)
    stranger, _ = pair()
    with pytest.raises(SrtpError):
        theirs.unprotect(stranger.protect(rtp(6)))
    with pytest.raises(SrtpError):
        theirs.unprotect(b"\x80\x00\x00")


def test_srtcp_round_trip():
    ours, theirs = pair()
    report = bytes.fromhex("80c90001") + (0x1234).to_bytes(4, "big")
    wire = ours.protect_rtcp(report)
    assert len(wire) == len(report) + 4 + 10  # E flag and index, then the tag
    assert theirs.unprotect_rtcp(wire) == report


def test_rekey_keeps_an_unchanged_direction():
    a, b, c = (secrets.token_bytes(30) for _ in range(3))
    ours = SrtpContext(SrtpKeys(SUITE, a, b))
    theirs = SrtpContext(SrtpKeys(SUITE, b, a))
    assert theirs.unprotect(ours.protect(rtp(1))) == rtp(1)
    ours.rekey(SrtpKeys(SUITE, a, c))  # the peer re-offered with a new key; ours did not change
    assert theirs.unprotect(ours.protect(rtp(2))) == rtp(2)  # same outbound session, no replay restart
    new_theirs = SrtpContext(SrtpKeys(SUITE, c, a))
    assert ours.unprotect(new_theirs.protect(rtp(9))) == rtp(9)


def test_keys_are_checked_and_never_printed():
    with pytest.raises(SrtpError, match="30-byte"):
        SrtpKeys(SUITE, b"short", secrets.token_bytes(30))
    with pytest.raises(SrtpError, match="unsupported"):
        SrtpKeys("F8_128_HMAC_SHA1_80", secrets.token_bytes(30), secrets.token_bytes(30))
    key = secrets.token_bytes(30)
    keys = SrtpKeys(SUITE, key, key)
    assert encode_inline_key(key) not in repr(keys) and "SrtpKeys" in repr(keys)
    assert decode_inline_key(encode_inline_key(key), SUITE) == key
    assert decode_inline_key(encode_inline_key(key).rstrip("="), SUITE) == key
    for bad in ("not base64!", encode_inline_key(key[:20])):
        with pytest.raises(SrtpError):
            decode_inline_key(bad, SUITE)


# --------------------------------------------------------------------------- session


def test_session_encrypts_what_it_sends_and_plays_what_authenticates(far, allocator):  # noqa: F811
    key_ours, key_theirs = secrets.token_bytes(30), secrets.token_bytes(30)
    peer = SrtpContext(SrtpKeys(SUITE, key_theirs, key_ours))
    tone = (8000 * np.sin(np.arange(160) * 2 * np.pi / 20)).astype(np.int16)
    listener = Listener(reply=tone)
    session = make_session(allocator, listener)
    session.configure(remote_for(far, srtp=SrtpKeys(SUITE, key_ours, key_theirs)))
    stranger, _ = pair()
    for i in range(20):
        packet = rtp(100 + i, PCMU.encode(tone), ssrc=0xABCDEF)
        far.rtp.sendto(peer.protect(packet), ("127.0.0.1", session.local_port))
        if i % 5 == 0:  # an attacker's packets, and a plain one: dropped, never played
            far.rtp.sendto(stranger.protect(rtp(500 + i)), ("127.0.0.1", session.local_port))
            far.rtp.sendto(rtp(600 + i), ("127.0.0.1", session.local_port))
        time.sleep(0.002)
        session.tick(i * 0.02)
    normal = [f for f in listener.frames if f.type is FrameType.NORMAL]
    assert len(normal) >= 15
    assert np.abs(normal[-1].pcm.astype(int) - PCMU.decode(PCMU.encode(tone)).astype(int)).max() < 300
    assert session.stats.srtp_rejected == 8 and session.stats.packets_received == 20
    sent = far.drain()
    assert len(sent) == 20
    assert all(len(d) == 172 + 10 for d in sent)
    assert RtpPacket.parse(sent[-1]).payload[:160] != PCMU.encode(tone)  # on the wire: ciphertext
    assert RtpPacket.parse(peer.unprotect(sent[-1])).payload == PCMU.encode(tone)
    session.close()
    bye = parse_compound(peer.unprotect_rtcp(far.rtcp.recv(2048)))
    assert any(isinstance(p, SenderReport) for p in bye) and any(isinstance(p, Bye) for p in bye)


def test_session_switches_between_plain_and_srtp_on_renegotiation(far, allocator):  # noqa: F811
    keys = SrtpKeys(SUITE, secrets.token_bytes(30), secrets.token_bytes(30))
    session = make_session(allocator, Listener())
    session.configure(remote_for(far))
    session.tick(0.0)
    session.configure(remote_for(far, srtp=keys))
    session.tick(0.02)
    session.configure(remote_for(far))
    session.tick(0.04)
    plain1, secret, plain2 = far.receive(count=3)
    assert len(plain1) == 172 and len(secret) == 182 and len(plain2) == 172
    session.close()
