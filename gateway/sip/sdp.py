"""Rewrite pjsua's SDP so that the peer sends its RTP to the gateway's own RTP engine.

pjsua still negotiates (codecs, direction, hold, telephone-event) and we keep that result; we
only change *where* the media goes: the connection and origin addresses, the m= port, the RTCP
port, and we drop pjsua's `a=ssrc` lines because they describe pjmedia's idle stream, not ours.
This runs on every SDP pjsua creates, re-INVITEs included, so a re-offer never points the peer
back at pjmedia.

SRTP (SDES, RFC 4568): pjsua negotiates the ``a=crypto`` lines (suite and tag) like any other
attribute, but the keys must be the ones *our* RTP engine uses, so the rewrite puts the call's
own key in every ``inline:`` of our SDP, and :func:`sdes_keys` reads the agreed suite and both
keys back from our SDP and the peer's once the offer/answer is done.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from rtp.srtp import SUITES, SrtpError, SrtpKeys, decode_inline_key, encode_inline_key

_DROP_ATTRIBUTES = ("a=ssrc:", "a=ssrc-group:", "a=rtcp-mux", "a=rtcp-fb:", "a=msid", "a=mid:")


class SdpError(ValueError):
    """pjsua gave us an SDP we cannot point at our RTP engine."""


@dataclass(frozen=True)
class MediaAddress:
    address: str
    rtp_port: int

    @property
    def address_type(self) -> str:
        return "IP6" if ":" in self.address else "IP4"


def rewrite_local_sdp(sdp: str, media: MediaAddress, srtp_key: bytes | None = None) -> str:
    """Return `sdp` with the first audio stream pointed at `media` (other streams disabled).

    With ``srtp_key`` (the call's SDES master key||salt) every ``a=crypto`` line of the audio
    stream carries that key, and lines whose suite our engine lacks are dropped; without it,
    crypto lines are left as pjsua wrote them (it writes none when SRTP is off).
    """
    lines = [line for line in re.split(r"\r?\n", sdp) if line]
    if not lines or not lines[0].startswith("v="):
        raise SdpError("SDP does not start with a v= line")
    out: list[str] = []
    section = "session"
    audio_done = False
    for line in lines:
        if line.startswith("m="):
            fields = line[2:].split()
            if len(fields) < 4:
                raise SdpError(f"malformed media line {line!r}")
            if fields[0] == "audio" and not audio_done:
                section = "audio"
                audio_done = True
                fields[1] = str(media.rtp_port)
            else:
                section = "other"
                fields[1] = "0"  # we only carry one audio stream: reject the rest
            out.append("m=" + " ".join(fields))
            continue
        if line.startswith("o="):
            fields = line[2:].split()
            if len(fields) != 6:
                raise SdpError(f"malformed origin line {line!r}")
            fields[4], fields[5] = media.address_type, media.address
            out.append("o=" + " ".join(fields))
            continue
        if line.startswith("c="):
            out.append(f"c=IN {media.address_type} {media.address}")
            continue
        if section == "audio" and line.startswith("a=rtcp:"):
            out.append(f"a=rtcp:{media.rtp_port + 1}")
            continue
        if line.startswith(_DROP_ATTRIBUTES):
            continue
        if section == "audio" and srtp_key is not None and line.startswith("a=crypto:"):
            keyed = _with_key(line, srtp_key)
            if keyed is not None:
                out.append(keyed)
            continue
        out.append(line)
    if not audio_done:
        raise SdpError("SDP has no audio stream")
    return "\r\n".join(out) + "\r\n"


def parse_address(text: str) -> tuple[str, int]:
    """Parse pjsua's "host:port" / "[v6]:port" address string."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise SdpError(f"bad address {text!r}")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:  # one error type for the caller, as for every other bad address
        raise SdpError(f"bad address {text!r}") from exc
    return host, int(port)


# --------------------------------------------------------------------------- SDES (RFC 4568)

_CRYPTO = re.compile(r"a=crypto:(\d{1,9})[ \t]+(\S+)[ \t]+(\S+)(?:[ \t]+(.*))?$")


@dataclass(frozen=True)
class CryptoLine:
    """One ``a=crypto`` attribute: tag, suite, the raw key parameter(s) and any session parameters."""

    tag: int
    suite: str
    key_params: str
    session_params: str

    def key(self) -> bytes:
        """The master key||salt, strictly: one ``inline:`` key, no MKI, no session parameters."""
        if self.session_params:
            raise SdpError(f"crypto tag {self.tag}: session parameters {self.session_params!r} are not supported")
        if ";" in self.key_params:
            raise SdpError(f"crypto tag {self.tag}: several keys in one line are not supported")
        method, _, info = self.key_params.partition(":")
        if method != "inline" or not info:
            raise SdpError(f"crypto tag {self.tag}: key method {method!r} (expected inline:)")
        key_text, *extra = info.split("|")
        for part in extra:
            if ":" in part:
                raise SdpError(f"crypto tag {self.tag}: an MKI ({part}) is not supported")
        try:
            return decode_inline_key(key_text, self.suite)
        except SrtpError as exc:
            raise SdpError(f"crypto tag {self.tag}: {exc}") from None


_SDES_KEY = re.compile(r"inline:[A-Za-z0-9+/=]+")


def redact_keys(text: str) -> str:
    """SDP or a SIP message fit for a log: SDES keys (``inline:``) replaced; a key in a log decrypts the call."""
    return _SDES_KEY.sub("inline:<redacted>", text)


def _crypto_line(line: str) -> CryptoLine:
    match = _CRYPTO.match(line.strip())
    if match is None:
        raise SdpError(f"malformed crypto attribute {redact_keys(line)!r}")
    tag, suite, key_params, session = match.groups()
    return CryptoLine(int(tag), suite, key_params, (session or "").strip())


def _with_key(line: str, key: bytes) -> str | None:
    crypto = _crypto_line(line)
    if crypto.suite not in SUITES:
        return None
    return f"a=crypto:{crypto.tag} {crypto.suite} inline:{encode_inline_key(key)}"


def audio_crypto_lines(sdp: str) -> list[CryptoLine]:
    """The ``a=crypto`` lines of the first audio stream (empty if there is none, or no audio)."""
    lines: list[CryptoLine] = []
    section = "session"
    for line in re.split(r"\r?\n", sdp):
        if line.startswith("m="):
            if section == "audio":
                break
            section = "audio" if line[2:].startswith("audio ") else "other"
        elif section == "audio" and line.startswith("a=crypto:"):
            lines.append(_crypto_line(line))
    return lines


def sdes_keys(local_sdp: str, remote_sdp: str) -> SrtpKeys | None:
    """The SRTP keys an SDES offer/answer agreed on, or None when the call's media is plain RTP.

    The answer carries one crypto line, whose tag picks one of the offer's; that works the same
    whichever side offered.  No common tag (an optional-SRTP offer answered in plain RTP) means
    plain media.  An agreed line whose key we cannot use raises :class:`SdpError`: sending
    plain RTP where the peer expects SRTP would only be noise to it.
    """
    ours = {c.tag: c for c in audio_crypto_lines(local_sdp)}
    theirs = {c.tag: c for c in audio_crypto_lines(remote_sdp)}
    common = [tag for tag in ours if tag in theirs and ours[tag].suite == theirs[tag].suite]
    if not common:
        return None
    tag = common[0]
    suite = ours[tag].suite
    if suite not in SUITES:
        raise SdpError(f"crypto tag {tag}: suite {suite} is not supported (supported: {', '.join(SUITES)})")
    return SrtpKeys(suite, tx_key=ours[tag].key(), rx_key=theirs[tag].key())
