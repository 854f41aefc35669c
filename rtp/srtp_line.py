"""SRTP on one call's media line: keys applied as signalling (re)negotiates them, packets in and out.

Split out of :mod:`rtp.session` so the session's receive path reads as "decrypt, parse, play":
this decides what a re-INVITE's keys mean (SRTP turned on, rekeyed, or off, each logged once) and
turns a packet that fails authentication or replay checks into None, counted in the session's
statistics and logged now and then (a flood of forged packets must not flood the log).
Owned by the session, on the media clock thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from rtp.srtp import SrtpContext, SrtpError, SrtpKeys

if TYPE_CHECKING:
    from rtp.session import SessionStats


class SrtpLine:
    """Plain RTP until keys are applied; then every packet is protected and unprotected."""

    def __init__(self, stats: SessionStats, log: structlog.typing.FilteringBoundLogger) -> None:
        self.stats = stats
        self.log = log
        self._context: SrtpContext | None = None

    @property
    def on(self) -> bool:
        return self._context is not None

    def apply(self, keys: SrtpKeys | None) -> None:
        """The keys of a (re-)negotiation; None: plain RTP from now on."""
        if keys is None:
            if self._context is not None:
                self.log.warning("srtp_off", reason="re-negotiated without SRTP")
            self._context = None
        elif self._context is None:
            self._context = SrtpContext(keys)
            self.log.info("srtp_on", suite=keys.suite)
        elif keys != self._context.keys:
            self._context.rekey(keys)
            self.log.info("srtp_rekeyed", suite=keys.suite)

    def protect(self, wire: bytes, rtcp: bool = False) -> bytes:
        context = self._context
        if context is None:
            return wire
        return context.protect_rtcp(wire) if rtcp else context.protect(wire)

    def unprotect(self, data: bytes, rtcp: bool = False) -> bytes | None:
        """The plain packet, or None (counted, logged now and then) when SRTP rejects it."""
        context = self._context
        if context is None or (not rtcp and len(data) < 12):
            return data  # plain media, or not even an RTP header: the parser rejects it as malformed
        try:
            return context.unprotect_rtcp(data) if rtcp else context.unprotect(data)
        except SrtpError as exc:
            self.stats.srtp_rejected += 1
            if self.stats.srtp_rejected in (1, 10, 100) or self.stats.srtp_rejected % 1000 == 0:
                self.log.warning("srtp_rejected", error=str(exc), rtcp=rtcp, size=len(data),
                                 total=self.stats.srtp_rejected)
            return None
