"""Fuzzing of everything that parses bytes or text coming from the network.

The media sockets and the SIP peer are untrusted: whatever arrives, a parser may only raise its
module's documented error type (``RtpError``, ``RtcpError``, ``DtmfError``, ``SdpError``), which its
caller counts and drops. Anything else (``IndexError``, ``struct.error``, ``UnicodeDecodeError``,
a bare ``ValueError`` from deep inside) escapes the caller's ``except`` and, on the media clock,
ends the call.

The per-module unit tests already fuzz uniformly random bytes (``test_packet.py``, ``test_rtcp.py``,
``test_dtmf.py``). Random bytes rarely get past the version and length checks, so this module
starts from *valid* seeds and mutates them (bit flips, byte overwrites, inserts, deletes,
truncation, length/count fields nudged by a few units), which keeps most of a packet plausible
and reaches the deep branches: CSRC lists, extension lengths, padding counts, SDES chunks, BYE
reasons. It also fuzzes the SDP rewrite and address parser with garbage and mutated pjsua SDP,
and pushes mutated datagrams through a real :class:`RtpSession` receive path (socket to tick).

Found here: an RTP packet in the call's audio payload type with an *empty* payload (a valid
12-byte RTP packet, e.g. a keepalive) makes ``JitterBuffer.put`` raise ``ValueError`` out of
``RtpSession.tick``; the media clock drops the session and the gateway hangs up the call
(``media_error``). Fixed: ``RtpSession`` now counts and skips empty payloads (test below).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.calls.manager import uri_user as _uri_user
from gateway.sip.sdp import MediaAddress, SdpError, parse_address, rewrite_local_sdp, sdes_keys
from rtp.dtmf import EVENT_TO_DIGIT, DtmfError, DtmfReceiver, TelephoneEvent
from rtp.g711 import PCMU
from rtp.packet import RtpError, RtpExtension, RtpPacket, is_rtcp
from rtp.ports import PortAllocator
from rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_compound,
    parse_compound,
)
from rtp.session import RemoteMedia, RtpSession
from rtp.srtp import SrtpContext, SrtpKeys

FUZZ = settings(max_examples=300, deadline=None)

# ----------------------------------------------------------------------------- mutation engine

# (op, position, value): position is taken modulo the current length, so every op applies.
Mutation = tuple[str, int, int]
OPS = ("flip", "set", "insert", "delete", "truncate", "dup", "inc16", "dec16")
mutations = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6
)


def mutate(seed: bytes, ops: list[Mutation]) -> bytes:
    """Apply byte-level mutations; inc16/dec16 nudge a 16-bit big-endian field (RTCP length, ext length)."""
    data = bytearray(seed)
    for op, pos, value in ops:
        n = len(data)
        i = pos % (n + 1)
        if op == "insert":
            data[i:i] = bytes((value,))
        elif n == 0:
            continue
        elif op == "flip":
            data[i % n] ^= 1 << (value % 8)
        elif op == "set":
            data[i % n] = value
        elif op == "delete":
            del data[i % n]
        elif op == "truncate":
            del data[i:]
        elif op == "dup":
            j = i % n
            data[j:j] = data[j : j + 1 + value % 8]
        elif n >= 2:
            j = i % (n - 1)
            field = int.from_bytes(data[j : j + 2], "big")
            delta = 1 + value % 4
            field = (field + delta if op == "inc16" else field - delta) & 0xFFFF
            data[j : j + 2] = field.to_bytes(2, "big")
    return bytes(data)


def as_buffers(data: bytes) -> Iterator[bytes | bytearray | memoryview]:
    """The receive path hands parsers bytes; tests and other callers may use bytearray or memoryview."""
    yield data
    yield bytearray(data)
    yield memoryview(data)


# ----------------------------------------------------------------------------- RTP

RTP_SEEDS = [
    RtpPacket(payload_type=0, sequence=0x1234, timestamp=0xDEADBEEF, ssrc=0x0BADCAFE, payload=b"\xff" * 160,
              marker=True).serialize(),
    RtpPacket(payload_type=96, sequence=65535, timestamp=1, ssrc=2, payload=b"hello", csrcs=(1, 2, 3),
              extension=RtpExtension(0xBEDE, b"\x10\xaa\x00\x00\x22\x01\x02\x00"), padding=3).serialize(),
    RtpPacket(payload_type=101, sequence=7, timestamp=8000, ssrc=9,
              payload=TelephoneEvent(5, True, 10, 800).serialize()).serialize(),
    RtpPacket(payload_type=8, sequence=1, timestamp=2, ssrc=3, extension=RtpExtension(0x1000), padding=4).serialize(),
]


@FUZZ
@given(st.sampled_from(RTP_SEEDS), mutations)
def test_rtp_parse_of_mutated_valid_packets_raises_only_rtp_error(seed: bytes, ops: list[Mutation]) -> None:
    """Mutations keep V=2 and most lengths plausible, so CSRC/extension/padding checks get exercised."""
    data = mutate(seed, ops)
    for buf in as_buffers(data):
        try:
            packet = RtpPacket.parse(buf)
        except RtpError:
            continue
        assert RtpPacket.parse(packet.serialize()) == packet  # whatever parses is a well-formed packet
        is_rtcp(data)


@FUZZ
@given(
    st.integers(0, 1),
    st.integers(0, 1),
    st.integers(0, 15),
    st.integers(0, 0xFFFF),
    st.integers(-8, 8),
    st.binary(max_size=16),
    st.integers(0, 255),
)
def test_rtp_parse_length_claims_near_the_boundary(
    padding: int, extension: int, cc: int, ext_words: int, slack: int, filler: bytes, pad_count: int
) -> None:
    """Header claims (CC, X with its word count, P with its count) against a body a few bytes off."""
    first = 0x80 | padding << 5 | extension << 4 | cc
    head = bytes((first, 0)) + bytes(10) + bytes(4 * cc)
    claimed = len(head) + (4 + 4 * min(ext_words, 16) if extension else 0)
    data = head + (struct.pack("!HH", 0xBEDE, min(ext_words, 16)) if extension else b"")
    data += (filler * 64)[: max(0, claimed - len(data))]
    data = data[: max(0, claimed + slack)] if slack < 0 else data + filler[:slack]
    if padding and data:
        data = data[:-1] + bytes((pad_count,))
    with contextlib.suppress(RtpError):
        RtpPacket.parse(data)


# ----------------------------------------------------------------------------- RTCP

_BLOCK = ReportBlock(ssrc=0x11223344, fraction_lost=64, cumulative_lost=-5, highest_seq=0x1FFFF, jitter=123,
                     lsr=0xAABBCCDD, dlsr=65536)
_SDES = SourceDescription((SdesChunk(1, ((1, b"gw@voicegate"), (6, "tööl".encode()))), SdesChunk(2, ())))
_APP = bytes([0x80, 204, 0, 2]) + b"\x00\x00\x00\x01" + b"NAME"
_RR_PADDED = bytes([0xA0, 201, 0, 2]) + struct.pack("!I", 7) + b"\x00\x00\x00\x04"
RTCP_SEEDS = [
    build_compound([SenderReport(0xCAFEBABE, 0x83AA7E80_80000000, 160000, 1000, 160000, (_BLOCK,)), _SDES,
                    Bye((0xCAFEBABE,), "bye now")]),
    build_compound([ReceiverReport(7, (_BLOCK, _BLOCK)), _SDES]) + _APP,
    _RR_PADDED,
    build_compound([Bye((1, 2, 3), "\u00fcber")]),
]


def _touch(packets: list[object]) -> None:
    """Use every decoded field a caller uses (CNAME text, BYE reason) so lazy decoding errors show up."""
    for packet in packets:
        if isinstance(packet, SourceDescription):
            for chunk in packet.chunks:
                _ = chunk.cname
        elif isinstance(packet, Bye):
            _ = packet.reason.encode("utf-8", "surrogatepass")
        elif isinstance(packet, SenderReport | ReceiverReport):
            for block in packet.reports:
                _ = block.cumulative_lost, block.fraction_lost


@FUZZ
@given(st.sampled_from(RTCP_SEEDS), mutations)
def test_rtcp_compound_of_mutated_valid_datagrams_raises_only_rtcp_error(seed: bytes, ops: list[Mutation]) -> None:
    """inc16/dec16 land on length words and SDES item lengths; flips hit counts, P bits and types."""
    data = mutate(seed, ops)
    for buf in as_buffers(data):
        try:
            packets = parse_compound(buf)
        except RtcpError:
            continue
        _touch(packets)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 31), st.sampled_from([200, 201, 202, 203]), st.binary(max_size=48),
                          st.booleans()), min_size=1, max_size=4))
def test_rtcp_consistent_lengths_with_garbage_bodies_raise_only_rtcp_error(
    parts: list[tuple[int, int, bytes, bool]],
) -> None:
    """Length fields that are right (so the tiling check passes) and bodies that are not: per-type parsers."""
    data = b""
    for count, packet_type, body, padded in parts:
        body = body + bytes(-len(body) % 4)
        first = 0x80 | count
        if padded and body:
            body = body[:-1] + bytes((body[-1] % (len(body) + 2),))
            first |= 0x20
        data += bytes((first, packet_type)) + struct.pack("!H", len(body) // 4) + body
    try:
        packets = parse_compound(data)
    except RtcpError:
        return
    _touch(packets)


# ----------------------------------------------------------------------------- RFC 4733 DTMF


@FUZZ
@given(st.binary(max_size=64))
def test_telephone_event_parse_any_buffer_type_raises_only_dtmf_error(data: bytes) -> None:
    for buf in as_buffers(data):
        try:
            TelephoneEvent.parse(buf)  # type: ignore[arg-type]
        except DtmfError:
            assert len(data) != 4


@FUZZ
@given(st.sampled_from(RTP_SEEDS[2:3]), st.lists(mutations, min_size=1, max_size=8))
def test_dtmf_receiver_fed_mutated_event_packets_never_raises(seed: bytes, batches: list[list[Mutation]]) -> None:
    """The session feeds every packet of the event payload type: the receiver must only answer a digit or None."""
    receiver = DtmfReceiver(payload_type=101)
    for ops in batches:
        try:
            packet = RtpPacket.parse(mutate(seed, ops))
        except RtpError:
            continue
        digit = receiver.feed(packet)
        assert digit is None or digit in EVENT_TO_DIGIT.values()


# ----------------------------------------------------------------------------- SDP (gateway/sdp.py)

PJSUA_SDP = (
    "v=0\r\no=- 3917347329 3917347330 IN IP4 10.9.9.9\r\ns=pjmedia\r\nb=AS:84\r\nt=0 0\r\na=X-nat:0\r\n"
    "m=audio 4000 RTP/AVP 0 101\r\nc=IN IP4 10.9.9.9\r\nb=TIAS:64000\r\na=rtcp:4001 IN IP4 10.9.9.9\r\n"
    "a=sendrecv\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    "a=ssrc:123456 cname:abc\r\nm=video 4002 RTP/AVP 96\r\nc=IN IP4 10.9.9.9\r\n"
)
MEDIA = MediaAddress("127.0.0.1", 31000)
# text that is hard on line-based parsers: separators, NUL, lone surrogates, wide and combining chars
nasty_text = st.lists(
    st.characters() | st.sampled_from(["\r", "\n", "\r\n", "=", " ", ":", "[", "]", "\x00", "\ud800", "\u00b2"]),
    max_size=120,
).map("".join)


def _check_rewritten(out: str) -> None:
    assert out.endswith("\r\n")
    lines = out.split("\r\n")
    assert sum(line.startswith("m=audio ") and line.split()[1] == "31000" for line in lines) == 1
    assert all(line == "c=IN IP4 127.0.0.1" for line in lines if line.startswith("c="))


@FUZZ
@given(nasty_text)
def test_rewrite_local_sdp_garbage_raises_only_sdp_error(text: str) -> None:
    for candidate in (text, "v=0\r\n" + text, "v=0\r\nm=audio 1 RTP/AVP 0\r\n" + text):
        try:
            out = rewrite_local_sdp(candidate, MEDIA)
        except SdpError:
            continue
        _check_rewritten(out)


@st.composite
def mutated_sdp(draw: st.DrawFn) -> str:
    """pjsua's SDP with whole lines dropped/duplicated/cut and characters changed."""
    lines = PJSUA_SDP.split("\r\n")
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "cut", "char", "fields"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]))))]
        elif op == "char":
            pos = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:pos] + draw(nasty_text.filter(bool)) + lines[i][pos:]
        else:
            lines[i] = " ".join(lines[i].split()[: draw(st.integers(0, 7))])
        if not lines:
            break
    return draw(st.sampled_from(["\r\n", "\n"])).join(lines)


@FUZZ
@given(mutated_sdp())
def test_rewrite_local_sdp_mutated_pjsua_sdp_raises_only_sdp_error(sdp: str) -> None:
    try:
        out = rewrite_local_sdp(sdp, MEDIA)
    except SdpError:
        return
    _check_rewritten(out)


ADDRESS_SEEDS = ["127.0.0.1:4000", "[::1]:4000", "10.0.0.1:65535", "[fe80::1%lo]:5"]


@FUZZ
@given(nasty_text | st.sampled_from(ADDRESS_SEEDS).flatmap(
    lambda s: st.tuples(st.integers(0, len(s)), st.integers(0, len(s)), nasty_text).map(
        lambda t: s[: t[0]] + t[2] + s[t[1]:])))
def test_parse_address_raises_only_sdp_error(text: str) -> None:
    """The address pjsua took from the peer's SDP (c= line, m= port, a=rtcp)."""
    try:
        host, port = parse_address(text)
    except SdpError:
        return
    assert isinstance(host, str) and 0 <= port <= 65535


@pytest.mark.parametrize("text", ["127.0.0.1:\u00b2", "127.0.0.1:\u0661\u0662", "host.example:5060",
                                  "1.2.3.4:99999999999999999999", "::", "[]:5", "1.2.3.4:"])
def test_parse_address_edge_cases_raise_sdp_error(text: str) -> None:
    """Unicode digits pass str.isdigit(), host names are not addresses, ports have 16 bits: all are SdpError."""
    with pytest.raises(SdpError):
        parse_address(text)


@FUZZ
@given(nasty_text)
def test_uri_user_of_any_header_value_never_raises(text: str) -> None:
    """The dialled user is cut out of the remote's To/request URI text (gateway/calls.py)."""
    assert isinstance(_uri_user(text), str)


# ----------------------------------------------------------------------------- RtpSession receive path


class _Listener:
    def __init__(self) -> None:
        self.digits: list[str] = []

    def on_frame(self, frame: object, echo_cancelled: object = None) -> None:
        return None

    def on_dtmf(self, digit: str) -> None:
        self.digits.append(digit)

    def on_inactive(self, idle_s: float) -> None:
        pass


class _Harness:
    """A session whose remote is a local socket, so every datagram we send passes the source check."""

    def __init__(self, srtp: SrtpKeys | None = None) -> None:
        self.far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.far.bind(("127.0.0.1", 0))
        self.listener = _Listener()
        self.session = RtpSession(PortAllocator("127.0.0.1", 47600, 47699).allocate(), self.listener)
        self.session.configure(RemoteMedia(self.far.getsockname(), self.far.getsockname(), PCMU, srtp=srtp))
        self.now = 1000.0
        self.session.tick(self.now)

    def deliver(self, datagrams: list[bytes]) -> None:
        for data in datagrams:
            self.far.sendto(data, ("127.0.0.1", self.session.local_port))
            self.far.sendto(data, ("127.0.0.1", self.session.local_port + 1))
        time.sleep(0.001)
        self.now += 0.02
        self.session.tick(self.now)

    def close(self) -> None:
        self.session.close()
        self.far.close()


def test_session_receive_path_survives_mutated_rtp_rtcp_and_dtmf() -> None:
    """Parse, SSRC tracking, reception stats, jitter buffer, DTMF and RTCP handling, as the media clock runs them."""
    harness = _Harness()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(RTP_SEEDS + RTCP_SEEDS), mutations), min_size=1, max_size=6))
    def run(batch: list[tuple[bytes, list[Mutation]]]) -> None:
        datagrams = [mutate(seed, ops) for seed, ops in batch]
        harness.deliver(datagrams)  # an exception here is what the media clock turns into a hang-up

    try:
        run()
        assert harness.session.stats.packets_received + harness.session.stats.malformed > 0
    finally:
        harness.close()


def test_srtp_session_receive_path_survives_forged_and_mangled_packets() -> None:
    """Plain packets on an SRTP call, and genuine SRTP packets mangled: dropped and counted, never raised."""
    keys = SrtpKeys("AES_CM_128_HMAC_SHA1_80", bytes(range(30)), bytes(range(30, 60)))
    peer = SrtpContext(SrtpKeys(keys.suite, keys.rx_key, keys.tx_key))
    harness = _Harness(keys)
    sequence = iter(range(1, 1 << 16))

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(RTP_SEEDS + RTCP_SEEDS), mutations), min_size=1, max_size=6))
    def run(batch: list[tuple[bytes, list[Mutation]]]) -> None:
        datagrams = []
        for seed, ops in batch:
            fresh = RtpPacket(payload_type=0, sequence=next(sequence), timestamp=0, ssrc=9, payload=b"\xff" * 160)
            datagrams += [mutate(seed, ops), mutate(peer.protect(fresh.serialize()), ops)]
        harness.deliver(datagrams)

    try:
        run()
        assert harness.session.stats.srtp_rejected > 0
    finally:
        harness.close()


def test_session_survives_an_rtp_packet_with_an_empty_audio_payload() -> None:
    """A 12-byte RTP packet in the call's codec (some endpoints send these as keepalives) must not end the call."""
    harness = _Harness()
    try:
        harness.deliver([RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=5).serialize()])
    finally:
        harness.close()


SDES_SDP = ("v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
            "m=audio 4000 RTP/SAVP 0 101\r\n"
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd|2^20\r\n"
            "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4A=\r\n"
            "a=sendrecv\r\n")


@FUZZ
@given(st.integers(0, len(SDES_SDP)), st.integers(0, 40), nasty_text)
def test_sdes_keys_from_a_mangled_peer_sdp_raise_only_sdp_error(at: int, cut: int, junk: str) -> None:
    """The peer's a=crypto lines, damaged anywhere: either keys of the right size, None, or SdpError."""
    remote = SDES_SDP[:at] + junk + SDES_SDP[at + cut:]
    for local in (SDES_SDP, SDES_SDP.replace("a=crypto:1 ", "a=crypto:7 ")):
        try:
            keys = sdes_keys(local, remote)
        except SdpError:
            continue
        assert keys is None or (len(keys.tx_key) == 30 and len(keys.rx_key) == 30)
