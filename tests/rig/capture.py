"""Packet capture on loopback with tshark, to assert on what actually went over the wire.

The gateway's media rules ("every RTP/RTCP packet the peer receives comes from the
gateway's own RTP port", "no stray stream from pjmedia") can only be checked from
outside the process. :class:`Capture` records UDP on ``lo`` for the given ports and
:meth:`Capture.packets` returns typed datagrams. RTP/RTCP are classified from the
payload bytes ourselves (version 2, payload type ranges) rather than with tshark's
decode-as, so it works for any port without knowing the SDP in advance.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.rig.proc import ManagedProcess, RigError, StartStop, require_binary, tail

RTCP_TYPES = range(192, 224)  # SR 200, RR 201, SDES 202, BYE 203, APP 204, RTPFB/PSFB 205/206, XR 207...


@dataclass(frozen=True)
class Datagram:
    """One captured UDP datagram on loopback."""

    time: float
    src: str
    sport: int
    dst: str
    dport: int
    length: int  # UDP payload length in bytes
    payload: bytes = field(repr=False)

    @property
    def is_rtcp(self) -> bool:
        """RTP version 2 with a packet type 192..223 (RFC 5761 demux rule)."""
        p = self.payload
        return len(p) >= 8 and (p[0] >> 6) == 2 and p[1] in RTCP_TYPES

    @property
    def is_rtp(self) -> bool:
        """RTP version 2, at least a 12-byte header, payload type not in the RTCP range."""
        p = self.payload
        return len(p) >= 12 and (p[0] >> 6) == 2 and p[1] not in RTCP_TYPES

    @property
    def is_sip(self) -> bool:
        p = self.payload
        return p.startswith(b"SIP/2.0 ") or b" SIP/2.0\r\n" in p[:300]

    @property
    def rtp_payload_type(self) -> int | None:
        return self.payload[1] & 0x7F if self.is_rtp else None

    @property
    def rtp_marker(self) -> bool:
        return bool(self.payload[1] & 0x80) if self.is_rtp else False

    @property
    def rtp_seq(self) -> int | None:
        return int.from_bytes(self.payload[2:4], "big") if self.is_rtp else None

    @property
    def rtp_timestamp(self) -> int | None:
        return int.from_bytes(self.payload[4:8], "big") if self.is_rtp else None

    @property
    def ssrc(self) -> int | None:
        """RTP SSRC, or the sender SSRC of an RTCP packet."""
        if self.is_rtp or self.is_rtcp:
            return int.from_bytes(self.payload[4:8] if self.is_rtcp else self.payload[8:12], "big")
        return None

    @property
    def rtcp_type(self) -> int | None:
        return self.payload[1] if self.is_rtcp else None


class Capture(StartStop):
    """``tshark -i lo`` for UDP on ``ports`` (or a raw BPF ``capture_filter``), written to a pcap.

    ``with Capture(tmp_path / "call.pcap", ports=[kam.port, 20000]) as cap: ...`` then
    ``cap.packets()``. Entering returns only once tshark reports "Capturing on", so
    nothing sent after that is missed; leaving stops tshark (SIGINT, so the file is
    flushed). An empty ``ports`` captures all UDP on loopback.
    """

    def __init__(
        self,
        pcap_path: str | Path,
        ports: Iterable[int] = (),
        *,
        capture_filter: str | None = None,
        interface: str = "lo",
        start_timeout: float = 10.0,
    ) -> None:
        self.pcap_path = Path(pcap_path)
        self.ports = list(ports)
        if capture_filter is None:
            capture_filter = "udp"
            if self.ports:
                capture_filter += " and (" + " or ".join(f"port {p}" for p in self.ports) + ")"
        self.capture_filter = capture_filter
        self.interface = interface
        self.start_timeout = start_timeout
        self.log_path = self.pcap_path.with_suffix(".tshark.log")
        self._proc: ManagedProcess | None = None
        self._cache: list[Datagram] | None = None

    def start(self) -> Capture:
        binary = require_binary("tshark")
        self.pcap_path.parent.mkdir(parents=True, exist_ok=True)
        self.pcap_path.unlink(missing_ok=True)
        argv = [binary, "-i", self.interface, "-f", self.capture_filter, "-w", str(self.pcap_path), "-q"]
        self._proc = ManagedProcess("tshark", argv, self.log_path)
        self._proc.start()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if "Capturing on" in self.log_path.read_text(errors="replace"):
                # tshark prints this just before the capture loop starts; a short grace
                # period covers the dumpcap child actually opening the socket.
                time.sleep(0.2)
                return self
            if not self._proc.running():
                raise self._proc.error("tshark exited before capturing")
            time.sleep(0.05)
        self._proc.stop(timeout=2.0)
        raise self._proc.error(f"tshark not capturing after {self.start_timeout:.1f}s")

    def stop(self) -> None:
        """Stop tshark with SIGINT (flushes the pcap); idempotent."""
        import signal

        if self._proc is not None and self._proc.running():
            time.sleep(0.2)  # let in-flight packets reach the dump file
            self._proc.stop(sig=signal.SIGINT, timeout=5.0)


    def packets(self) -> list[Datagram]:
        """All captured UDP datagrams, in capture order (stops the capture first)."""
        self.stop()
        if self._cache is not None:
            return list(self._cache)
        if not self.pcap_path.exists():
            raise RigError(f"no capture file {self.pcap_path}; tshark log:\n{tail(self.log_path)}")
        self._cache = read_pcap(self.pcap_path)
        return list(self._cache)

    # ------------------------------------------------------------ helpers
    def rtp(self) -> list[Datagram]:
        return [d for d in self.packets() if d.is_rtp]

    def rtcp(self) -> list[Datagram]:
        return [d for d in self.packets() if d.is_rtcp]

    def media_to(self, port: int) -> list[Datagram]:
        """RTP and RTCP datagrams delivered to ``port`` (e.g. a peer's RTP port)."""
        return [d for d in self.packets() if d.dport == port and (d.is_rtp or d.is_rtcp)]

    def media_from(self, port: int) -> list[Datagram]:
        return [d for d in self.packets() if d.sport == port and (d.is_rtp or d.is_rtcp)]

    def flows(self) -> dict[tuple[str, int, str, int], int]:
        """Packet count per (src, sport, dst, dport) for RTP/RTCP, for readable failures."""
        out: dict[tuple[str, int, str, int], int] = {}
        for d in self.packets():
            if d.is_rtp or d.is_rtcp:
                key = (d.src, d.sport, d.dst, d.dport)
                out[key] = out.get(key, 0) + 1
        return out


_lock = threading.Lock()


def read_pcap(path: str | Path) -> list[Datagram]:
    """Parse a pcap/pcapng with ``tshark -r`` into UDP datagrams (IPv4 and IPv6)."""
    binary = require_binary("tshark")
    fields = [
        "frame.time_relative",
        "ip.src",
        "ipv6.src",
        "udp.srcport",
        "ip.dst",
        "ipv6.dst",
        "udp.dstport",
        "udp.length",
        "udp.payload",
    ]
    argv = [
        binary,
        "-r",
        str(path),
        "-n",
        "-Y",
        "udp and not icmp and not icmpv6",
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=f",
    ]
    for f in fields:
        argv += ["-e", f]
    with _lock:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RigError(f"tshark -r {path} failed ({r.returncode}): {r.stderr.strip()}")
    out: list[Datagram] = []
    for line in r.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) < len(fields):
            cols += [""] * (len(fields) - len(cols))
        t, ip4s, ip6s, sport, ip4d, ip6d, dport, ulen, payload_hex = cols[: len(fields)]
        if not sport or not dport:
            continue
        payload = bytes.fromhex(payload_hex.replace(":", "")) if payload_hex else b""
        out.append(
            Datagram(
                time=float(t or 0.0),
                src=ip4s or ip6s,
                sport=int(sport),
                dst=ip4d or ip6d,
                dport=int(dport),
                length=max(0, int(ulen) - 8) if ulen else len(payload),
                payload=payload,
            )
        )
    return out
