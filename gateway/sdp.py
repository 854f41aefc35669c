"""Rewrite pjsua's SDP so that the peer sends its RTP to the gateway's own RTP engine.

pjsua still negotiates (codecs, direction, hold, telephone-event) and we keep that result; we
only change *where* the media goes: the connection and origin addresses, the m= port, the RTCP
port, and we drop pjsua's `a=ssrc` lines because they describe pjmedia's idle stream, not ours.
This runs on every SDP pjsua creates, re-INVITEs included, so a re-offer never points the peer
back at pjmedia.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

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


def rewrite_local_sdp(sdp: str, media: MediaAddress) -> str:
    """Return `sdp` with the first audio stream pointed at `media` (other streams disabled)."""
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
