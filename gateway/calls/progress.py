"""Call progress of outbound calls: how an unanswered call ended, and the ring timeout.

A call we place either gets answered or ends with a final response (or none at all); that
response says what a campaign should do next, so it is recorded as an outcome, not as "failed":

    486 Busy Here, 600 Busy Everywhere                  -> BUSY
    480 Temporarily Unavailable, 487 (the far end or
        we CANCELled it after `ring_timeout_s`)         -> NO_ANSWER
    408, any 5xx (503 is also pjsip's transport error:
        connection refused, no route), no response,
        404/484/604 (no such number: ISDN's "unallocated
        number", a wrong list entry, not a refusal)     -> UNREACHABLE
    any other 4xx/6xx (403, 603 Decline, 488...)        -> REJECTED

The ring timeout runs from the INVITE: once it passes, a call that rang (a provisional response
with a tag: 180/183) is CANCELled as NO_ANSWER; one that never got that far is given up as
UNREACHABLE (pjsip itself only gives up on an unanswered INVITE after 32 s, Timer B).

Early media (183 with SDP) is received like any media, but the agent neither hears nor speaks until
the call is answered (`CallManager` starts it at CONFIRMED): a bot that talked over a ringback tone
or a carrier announcement would have its greeting cut before the callee picked up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import pjsua2 as pj

from gateway.calls.outcome import CallOutcome
from gateway.config import AccountConfig, SipConfig

if TYPE_CHECKING:
    from gateway.calls.active import ActiveCall
    from gateway.sip.stack import SipStack

_BUSY = frozenset({486, 600})
_NO_ANSWER = frozenset({480, 487})
_NO_SUCH_NUMBER = frozenset({404, 484, 604})


def unanswered_outcome(code: int) -> CallOutcome:
    """The outcome of an outbound call that ended before it was answered, from its final status."""
    if code in _BUSY:
        return CallOutcome.BUSY
    if code in _NO_ANSWER:
        return CallOutcome.NO_ANSWER
    if code == 408 or code in _NO_SUCH_NUMBER or 500 <= code < 600 or code < 300:
        return CallOutcome.UNREACHABLE  # < 300: no final response at all (the transaction died)
    return CallOutcome.REJECTED


def ring_timeout_s(account: AccountConfig | None, sip: SipConfig) -> float:
    """The account's own ring timeout, else the gateway's."""
    if account is not None and account.ring_timeout_s is not None:
        return account.ring_timeout_s
    return sip.ring_timeout_s


class RingTimer:
    """Gives up on outbound calls not answered within their ring timeout (SIP thread)."""

    def __init__(self, stack: SipStack, hangup: Callable[[ActiveCall, str], None],
                 find: Callable[[str], ActiveCall | None]):
        self.stack = stack
        self._hangup = hangup
        self._find = find

    def start(self, call: ActiveCall, timeout_s: float) -> None:
        # by Call-ID, not the call: a timer must not keep the pjsua2 object alive
        self.stack.call_later(timeout_s, functools.partial(self._expire, call.call_id, timeout_s))

    def _expire(self, call_id: str, timeout_s: float) -> None:
        call = self._find(call_id)
        if call is None or call.ended or call.confirmed or call.sip is None:
            return
        rang = call.sip.getInfo().state == pj.PJSIP_INV_STATE_EARLY
        outcome = CallOutcome.NO_ANSWER if rang else CallOutcome.UNREACHABLE
        call.log.info("call_ring_timeout", timeout_s=timeout_s, rang=rang, outcome=outcome.value)
        self._hangup(call, f"{outcome.value}: not answered within {timeout_s:g}s")
