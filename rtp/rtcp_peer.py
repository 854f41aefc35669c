"""One call's RTCP (RFC 3550 section 6): what we learn from the far end's reports and what we report.

Split out of :mod:`rtp.session` so the session reads as media in and out: this holds the
reception statistics of the stream we receive, the last sender report (for the LSR/DLSR round
trip fields), when the next report is due (every ~5 s, randomised 0.5-1.5x as section 6.2 asks,
so two ends do not synchronise), and builds our compound packets. Sockets and SRTP stay with the
session. Owned by the session, on the media clock thread.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import structlog

from rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReceptionStats,
    ReportBlock,
    RtcpError,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    build_compound,
    ntp_middle32,
    ntp_timestamp,
    parse_compound,
)

if TYPE_CHECKING:
    from rtp.session import SessionStats

RTCP_INTERVAL_S = 5.0


class RtcpPeer:
    """Reception statistics, the far end's reports read, ours written."""

    def __init__(self, ssrc: int, cname: str, stats: SessionStats, realtime_offset: float,
                 log: structlog.typing.FilteringBoundLogger) -> None:
        self.ssrc = ssrc
        self.cname = cname
        self.stats = stats
        self.log = log
        self._realtime_offset = realtime_offset  # monotonic -> wall clock, for NTP timestamps
        self.reception = ReceptionStats(8000)
        self._last_sr: tuple[int, float] | None = None  # (middle 32 bits of its NTP time, our arrival time)
        self._next_report: float | None = None

    def restart(self, clock_rate: int) -> None:
        """A new stream to receive (SSRC change), or a new RTP clock (RFC 3550 jitter is in its units)."""
        self.reception = ReceptionStats(clock_rate)

    def received(self, sequence: int, timestamp: int, arrival: float) -> None:
        self.reception.update(sequence, timestamp, arrival)

    def due(self, now: float) -> bool:
        """Whether a report is to be sent now (the first call only schedules the first one)."""
        if self._next_report is not None and now < self._next_report:
            return False
        first = self._next_report is None
        self._next_report = now + RTCP_INTERVAL_S * random.uniform(0.5, 1.5)
        return not first

    def read(self, data: bytes, arrival: float) -> None:
        """A plain (decrypted) compound packet from the far end: counted, malformed ones logged."""
        try:
            packets = parse_compound(data)
        except RtcpError as exc:
            self.stats.rtcp_malformed += 1
            if self.stats.rtcp_malformed in (1, 100):
                self.log.warning("rtcp_malformed", error=str(exc), size=len(data))
            return
        self.stats.rtcp_received += 1
        for packet in packets:
            if isinstance(packet, SenderReport):
                self._last_sr = (ntp_middle32(packet.ntp_timestamp), arrival)
            if isinstance(packet, SenderReport | ReceiverReport):
                for block in packet.reports:
                    if block.ssrc == self.ssrc:
                        self.stats.remote_fraction_lost = block.fraction_lost / 256
                        self.stats.remote_cumulative_lost = block.cumulative_lost
                        self.stats.remote_jitter_ms = block.jitter * 1000.0 / self.reception.clock_rate
            if isinstance(packet, Bye):
                self.log.info("rtcp_bye", reason=packet.reason)

    def compound(self, now: float, remote_ssrc: int | None, rtp_timestamp: int, bye: bool = False) -> bytes:
        """Our report (SR once we have sent media, else RR), SDES with the CNAME, BYE if leaving."""
        blocks = self._report_blocks(now, remote_ssrc)
        report: RtcpPacket
        if self.stats.packets_sent:
            report = SenderReport(
                ssrc=self.ssrc,
                ntp_timestamp=ntp_timestamp(now + self._realtime_offset),
                rtp_timestamp=rtp_timestamp,
                packet_count=self.stats.packets_sent & 0xFFFFFFFF,
                octet_count=self.stats.octets_sent & 0xFFFFFFFF,
                reports=tuple(blocks),
            )
        else:
            report = ReceiverReport(ssrc=self.ssrc, reports=tuple(blocks))
        packets: list[RtcpPacket] = [report, SourceDescription.with_cname(self.ssrc, self.cname)]
        if bye:
            packets.append(Bye(ssrcs=(self.ssrc,)))
        return build_compound(packets)

    def _report_blocks(self, now: float, remote_ssrc: int | None) -> list[ReportBlock]:
        if remote_ssrc is None or self.reception.received == 0:
            return []
        lsr, dlsr = 0, 0
        if self._last_sr is not None:
            lsr = self._last_sr[0]
            dlsr = int((now - self._last_sr[1]) * 65536) & 0xFFFFFFFF
        return [self.reception.report_block(remote_ssrc, lsr, dlsr)]

    def snapshot(self) -> dict[str, float | int]:
        return {
            "received": self.reception.received,
            "expected": self.reception.expected,
            "cumulative_lost": self.reception.cumulative_lost,
            "jitter_ms": round(self.reception.jitter_ms, 2),
        }
