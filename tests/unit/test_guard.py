"""Trusted sources and the per-source INVITE rate limit (gateway/sip/guard.py)."""

from __future__ import annotations

from gateway.sip.guard import SourceGuard


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_only_trusted_networks_may_invite():
    guard = SourceGuard(["10.0.0.5/32", "192.168.1.0/24"])
    assert guard.check_invite("10.0.0.5:5060").allowed
    assert guard.check_invite("192.168.1.77:5080").allowed
    verdict = guard.check_invite("203.0.113.9:5060")
    assert not verdict.allowed and verdict.code == 403 and verdict.kind == "untrusted_source"
    assert verdict.src_ip == "203.0.113.9"
    assert not guard.check_invite("garbage").allowed


def test_no_trusted_list_accepts_any_source_but_still_limits_the_rate():
    clock = Clock()
    guard = SourceGuard([], invites_per_s=2, burst=3, clock=clock)
    assert [guard.check_invite("198.51.100.1:5060").allowed for _ in range(4)] == [True, True, True, False]
    limited = guard.check_invite("198.51.100.1:5060")
    assert limited.code == 503 and limited.kind == "rate_limited"
    assert guard.check_invite("198.51.100.2:5060").allowed  # another source has its own bucket
    clock.now += 1.0  # two more tokens
    assert guard.check_invite("198.51.100.1:5060").allowed


def test_ipv6_sources():
    guard = SourceGuard(["2001:db8::/32"])
    assert guard.check_invite("[2001:db8::1]:5060").allowed
    assert not guard.check_invite("[2001:dead::1]:5060").allowed


def test_bounded_memory_under_a_spoofed_flood():
    guard = SourceGuard([], invites_per_s=1, burst=1)
    for i in range(12000):
        guard.check_invite(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:5060")
    assert len(guard._buckets) <= 10000
