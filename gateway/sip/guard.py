"""Who may call us: trusted source networks and a per-source INVITE rate limit.

A gateway registered on a PBX only ever needs INVITEs from that PBX; scanners (sipvicious's
`svwar`/`svcrack`, "friendly-scanner") send INVITEs and OPTIONS from anywhere, and an INVITE that
is answered costs a call slot, RTP ports and model time. So an INVITE from outside
`sip.trusted_sources` is refused with 403 before any of that, and every refusal is logged as a
`sip_security_event` line carrying `src_ip`, one line per event, which fail2ban can match
(see docs/operations.md). The rate limit is a token bucket per source address: a burst of a
few INVITEs is normal (a call centre's PBX), hundreds per second is a flood.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_MAX_SOURCES = 10000  # buckets kept (least recently seen dropped): bounded memory under a spoofed flood


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    code: int = 0  # the SIP response when not allowed
    kind: str = ""  # security event kind: untrusted_source | rate_limited
    src_ip: str = ""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class SourceGuard:
    def __init__(self, trusted: Sequence[str] = (), invites_per_s: float = 5.0, burst: int = 20,
                 clock: Callable[[], float] = time.monotonic):
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted]
        self.rate = invites_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def check_invite(self, source: str) -> Verdict:
        """`source` is pjsip's "ip:port" (IPv6 as "[addr]:port") of the INVITE's sender."""
        ip = _host(source)
        if self.trusted and not self._is_trusted(ip):
            return Verdict(False, 403, "untrusted_source", ip)
        if not self._take(ip):
            return Verdict(False, 503, "rate_limited", ip)
        return Verdict(True, src_ip=ip)

    def trusts(self, ip: str) -> bool:
        """Whether `ip` may reach us at all (any address when no trusted sources are set)."""
        return not self.trusted or self._is_trusted(ip)

    def _is_trusted(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    def _take(self, ip: str) -> bool:
        now = self.clock()
        bucket = self._buckets.pop(ip, None) or _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[ip] = bucket
        while len(self._buckets) > _MAX_SOURCES:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True


def _host(source: str) -> str:
    source = source.strip()
    if source.startswith("["):
        return source[1:source.find("]")] if "]" in source else source
    host, sep, port = source.rpartition(":")
    return host if sep and port.isdigit() and host.count(":") == 0 else source
