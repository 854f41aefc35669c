"""Whether a new INVITE gets a call, and if not, which refusal: one decision, in one order.

The order matters to what a sender learns: a source outside `sip.trusted_sources` gets its 403
before anything else is looked at (a scanner learns nothing about load, size limits or drain);
then the per-source rate limit (503); then a request pjsip did not receive whole (513/400, see
`gateway.sip.limits`); then drain (503, so a dispatcher retries elsewhere); then `max_calls` (486).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from gateway.sip.account import IncomingInvite
from gateway.sip.guard import SourceGuard
from gateway.sip.limits import Integrity


@dataclass(frozen=True)
class Refusal:
    code: int  # the SIP final response
    kind: str  # the metric label (bounded set)
    security_event: bool  # counted and logged as `sip_security_event` (what fail2ban matches)
    src_ip: str = ""
    source: str = ""
    integrity: Integrity = Integrity.WHOLE

    def log(self, call_log: structlog.typing.FilteringBoundLogger, remote: str, active: int, max_calls: int) -> None:
        if self.security_event:  # one line per event with src_ip (docs/operations.md)
            call_log.warning("sip_security_event", kind=self.kind, src_ip=self.src_ip, source=self.source,
                             remote=remote, response=self.code)
        elif self.kind == "draining":
            call_log.info("call_rejected_draining", remote=remote, active=active)
        elif self.kind == "busy":
            call_log.warning("call_rejected_busy", remote=remote, active=active, max_calls=max_calls)
        else:
            call_log.warning("call_rejected_message", remote=remote, source=self.source, response=self.code,
                             integrity=self.integrity.value)


class Admission:
    """Owned by the SIP thread (its guard's buckets are not locked)."""

    def __init__(self, guard: SourceGuard, max_calls: int):
        self.guard = guard
        self.max_calls = max_calls

    def check(self, invite: IncomingInvite, active: int, draining: bool) -> Refusal | None:
        verdict = self.guard.check_invite(invite.source)
        if not verdict.allowed:
            return Refusal(verdict.code, verdict.kind, True, verdict.src_ip, invite.source)
        if invite.integrity is not Integrity.WHOLE:
            return Refusal(invite.integrity.response, invite.integrity.value, False, verdict.src_ip, invite.source,
                           invite.integrity)
        if draining:
            return Refusal(503, "draining", False, verdict.src_ip, invite.source)
        if active >= self.max_calls:
            return Refusal(486, "busy", False, verdict.src_ip, invite.source)
        return None
