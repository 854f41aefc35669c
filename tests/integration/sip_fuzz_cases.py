"""The fuzz campaign's inputs: mutated SIP datagrams of chosen kinds and sizes, from a seeded RNG.

Why these: pjsip reads a UDP datagram into a 4,000-byte buffer (``PJSIP_MAX_PKT_LEN``), and one
untrusted INVITE a little over that aborted the whole gateway (issue 10). So half the sizes sit
around that boundary (3,000-5,000 bytes) and the rest go far beyond it, to 8, 16 and 32 kB and up
to the largest datagram loopback carries. Each kind shapes a message the way a scanner, a broken
PBX or an attacker would: a huge header or SDP body, hundreds of Vias, lies in Content-Length, a
message cut short, flipped bits, random bytes, every common method, and the RFC 4475 messages of
``test_sip_torture`` (imported, not copied).

A case is a template (GWHOST / MEHOST / RTPPORT / BODYLEN, rendered by ``RawSipPeer`` for the socket
that sends it) and a mutation of the rendered bytes, so the size a case aims at is its size on the
wire (within a few bytes where a mutation rewrites a number). Everything random comes from the one
``random.Random`` passed in: a seed replays a campaign datagram for datagram.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from tests.integration.test_sip_torture import GARBAGE, INVALID, SDP, VALID, Expect, Torture, msg

MAX_DATAGRAM = 65_507  # 65,535 minus the IPv4 (20) and UDP (8) headers
SIZE_BUCKETS = (  # (first size above the bucket, label)
    (3_000, "<3000"), (4_000, "3000-3999"), (5_001, "4000-5000"), (8_193, "5001-8192"),
    (16_385, "8193-16384"), (32_769, "16385-32768"), (MAX_DATAGRAM + 1, "32769-65507"),
)
METHODS = ("OPTIONS", "REGISTER", "BYE", "CANCEL", "INFO", "ACK", "MESSAGE", "SUBSCRIBE", "NOTIFY", "UPDATE",
           "PRACK", "REFER")
BAD_LENGTHS = (b"-1", b"-4000", b"4001", b"65536", b"99999999", b"4294967296", b"18446744073709551616", b"abc",
               b"", b"0x10", b"1 2", b"+5", b"00000000000000000000000000000000000001")
TORTURES = (*VALID, *INVALID, *GARBAGE)

Mutation = Callable[[bytes], bytes]


def size_bucket(size: int) -> str:
    return next(label for limit, label in SIZE_BUCKETS if size < limit)


def pick_size(rng: random.Random) -> int:
    """Half around the 4,000-byte boundary, a tenth small, the rest spread up to one maximal datagram."""
    roll = rng.random()
    if roll < 0.5:
        return rng.randint(3_000, 5_000)
    if roll < 0.6:
        return rng.randint(200, 2_999)
    low, high = rng.choice(((5_001, 8_192), (8_193, 16_384), (16_385, 32_768), (32_769, 65_000),
                            (MAX_DATAGRAM, MAX_DATAGRAM)))
    return rng.randint(low, high)


def request(method: str, rng: random.Random) -> bytes:
    """A well-formed request from MEHOST to the gateway; an INVITE carries an SDP offer it can answer."""
    tag = rng.getrandbits(48)
    lines = [f"{method} sip:voicegate@GWHOST SIP/2.0", f"Via: SIP/2.0/UDP MEHOST;rport;branch=z9hG4bKfz{tag:x}",
             "Max-Forwards: 70", f"From: <sip:fuzz@MEHOST>;tag={tag:x}", "To: <sip:voicegate@GWHOST>",
             f"Call-ID: fuzz-{rng.getrandbits(64):016x}@127.0.0.1", f"CSeq: {rng.randint(1, 2**31 - 1)} {method}",
             "Contact: <sip:fuzz@MEHOST>"]
    body = ""
    if method == "INVITE":
        lines.append("Content-Type: application/sdp")
        body = SDP
    elif method == "INFO":
        lines.append("Content-Type: application/dtmf-relay")
        body = "Signal=5\r\nDuration=160\r\n"
    elif method == "REGISTER":
        lines.append("Expires: 60")
    return msg(*lines, "Content-Length: BODYLEN", body=body)


def pad_header(data: bytes, size: int, where: float = 1.0) -> bytes:
    """`data` grown to `size` bytes by one long extension header (if it was shorter).

    `where` places it among the header lines: 0 right after the start line, 1 after the last header
    (as a PBX appends its X- headers). Where pjsip cuts a datagram that is too long decides what it
    sees: cut inside a late header, the INVITE still parses (issue 10's abort); cut before Via,
    From and To, it is dropped.
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    missing = size - len(data) - len(b"X-Fuzz-Padding: \r\n")
    if len(lines) < 2 and not sep or missing < 1:
        return data  # not line-shaped (noise), or already long enough
    lines.insert(1 + round(where * (len(lines) - 1)), b"X-Fuzz-Padding: " + b"x" * missing)
    return b"\r\n".join(lines) + sep + body


def anywhere(rng: random.Random) -> float:
    """Where a fuzz case puts its padding: first, last, or anywhere between, a third each."""
    return rng.choice((0.0, 1.0, rng.random()))


def _set_content_length(data: bytes, value: bytes) -> bytes:
    return re.sub(rb"(?im)^(content-length|l)([ \t]*:[ \t]*)[^\r\n]*", lambda m: m.group(1) + m.group(2) + value,
                  data, count=1)


def grow_body(data: bytes, size: int) -> bytes:
    """The SDP body grown with attribute lines to `size` bytes, Content-Length telling the truth."""
    head, sep, body = data.partition(b"\r\n\r\n")
    missing = size - len(data)
    if not sep or missing < 8:
        return data
    lines = (b"a=x-fuzz:" + b"y" * 61 + b"\r\n") * (missing // 72)
    body += lines + b"a=" + b"z" * max(0, missing - len(lines) - 4) + b"\r\n"
    return _set_content_length(head, str(len(body)).encode()) + sep + body


def deep_via(data: bytes, size: int) -> bytes:
    """Via headers below the top one (responses still find us) until the message is `size` bytes."""
    top = re.search(rb"(?im)^(via|v)[ \t]*:[^\r\n]*\r\n", data)
    at = top.end() if top else data.find(b"\r\n") + 2
    vias, n = [], 0
    room = size - len(data)
    while room > 60:
        via = f"Via: SIP/2.0/UDP 192.0.2.{n % 254 + 1}:5060;branch=z9hG4bKdeep{n}\r\n".encode()
        vias.append(via)
        room -= len(via)
        n += 1
    return data[:at] + b"".join(vias) + data[at:]


def bad_content_length(data: bytes, size: int, rng: random.Random) -> bytes:
    """Content-Length that lies: negative, huge, not a number, off by one, or said twice."""
    grown = pad_header(data, size, anywhere(rng))
    body = grown.partition(b"\r\n\r\n")[2]
    value = rng.choice((*BAD_LENGTHS, str(len(body) + 1).encode(), str(max(0, len(body) - 1)).encode()))
    out = _set_content_length(grown, value)
    if rng.random() < 0.3:  # a second, different Content-Length
        out = out.replace(b"\r\n\r\n", b"\r\nContent-Length: " + rng.choice(BAD_LENGTHS) + b"\r\n\r\n", 1)
    return out


def bit_flip(data: bytes, size: int, rng: random.Random) -> bytes:
    """A handful of flipped bits, mostly in the first 600 bytes (where the headers that matter are)."""
    out = bytearray(pad_header(data, size, anywhere(rng)))
    for _ in range(rng.randint(1, 8)):
        span = min(len(out), 600) if rng.random() < 0.8 else len(out)
        if span:
            out[rng.randrange(span)] ^= 1 << rng.randrange(8)
    return bytes(out)


def random_bytes(size: int, rng: random.Random) -> bytes:
    """Noise; a third of it behind a plausible request line, so it gets past the first check."""
    noise = rng.randbytes(size)
    if rng.random() < 1 / 3:
        return (b"INVITE sip:voicegate@127.0.0.1 SIP/2.0\r\n" + noise)[:size]
    return noise


@dataclass(frozen=True)
class Case:
    kind: str
    size: int  # what the mutation aims at; the datagram's real size is in the peer's Outcome
    torture: Torture  # the template, for RawSipPeer.send
    mutate: Mutation


def _case(kind: str, size: int, raw: bytes, mutate: Mutation) -> Case:
    return Case(kind, size, Torture(f"fuzz-{kind}", raw, Expect.SURVIVE), mutate)


def _torture(rng: random.Random, size: int) -> Case:
    torture = rng.choice(TORTURES)
    return Case("rfc4475", size, torture, lambda d: pad_header(d, size, anywhere(rng)) if rng.random() < 0.7 else d)


KINDS: dict[str, Callable[[random.Random, int], Case]] = {
    "huge-header": lambda rng, size: _case(
        "huge-header", size, request("INVITE", rng), lambda d: pad_header(d, size, anywhere(rng))),
    "huge-sdp": lambda rng, size: _case("huge-sdp", size, request("INVITE", rng), lambda d: grow_body(d, size)),
    "deep-via": lambda rng, size: _case("deep-via", size, request("INVITE", rng), lambda d: deep_via(d, size)),
    "truncated": lambda rng, size: _case(
        "truncated", size, request(rng.choice(("INVITE", *METHODS)), rng),
        lambda d: (grown := pad_header(d, size, anywhere(rng)))[: rng.randrange(1, len(grown))]),
    "bad-content-length": lambda rng, size: _case(
        "bad-content-length", size, request(rng.choice(("INVITE", "INVITE", "OPTIONS", "INFO")), rng),
        lambda d: bad_content_length(d, size, rng)),
    "random-bytes": lambda rng, size: _case("random-bytes", size, b"", lambda _: random_bytes(size, rng)),
    "bit-flip": lambda rng, size: _case(
        "bit-flip", size, request(rng.choice(("INVITE", "INVITE", *METHODS)), rng), lambda d: bit_flip(d, size, rng)),
    "methods": lambda rng, size: _case(
        "methods", size, request(rng.choice(METHODS), rng), lambda d: pad_header(d, size, anywhere(rng))),
    "rfc4475": _torture,
}


def next_case(rng: random.Random) -> Case:
    """One case: a kind and a size, both drawn from `rng`."""
    kind = rng.choice(list(KINDS))
    case = KINDS[kind](rng, pick_size(rng))
    # a rewritten Content-Length can add a few bytes: no datagram beyond what UDP carries
    return replace(case, mutate=lambda data: case.mutate(data)[:MAX_DATAGRAM])
