"""Attended (warm) transfer as a state machine: pure, driven by the SIP thread, tested on a script.

    RINGING --target answers--> BRIEFING --briefing played (or BRIEF_TIMEOUT_S)--> CONNECTING
       |                           |                                                  |
       |  busy / declined /        |  target hangs up                                 |-- REFER final 2xx,
       |  ring timeout             |                                                  |   or the caller leaves
       v                           v                                                  |   after a 202 --> REFERRED
     FAILED (caller taken off hold, the agent says transfer_failed)                   |
                                                                                      '-- REFER refused, NOTIFY
                                                                                          >= 300 or REFER_TIMEOUT_S
                                                                                          --> BRIDGED (we relay)

Why REFER with Replaces first: the caller's phone then calls the target itself and our two legs
are gone, so the gateway carries nothing for the rest of a call it has no part in. Many phones and
PBX trunks refuse it (no Replaces support, or REFER forbidden), and a warm transfer that fails at
the last step, with the target briefed and waiting, is the worst outcome: so then the gateway
bridges the two legs' media itself and the transfer still completes.

With Replaces, the target BYEs our leg once the caller's new INVITE replaced it, usually before
the caller's final NOTIFY: a target leg that ends while CONNECTING is noted, not a failure. A
caller that hangs up after accepting the REFER (202) has done the transfer (as for blind REFER).

Each method returns the `WarmAction`s the desk must carry out, in order; the outcome is reported
once (`result`, taken with `take_result`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.calls.outcome import CallOutcome
from gateway.calls.progress import unanswered_outcome

BRIEF_TIMEOUT_S = 12.0  # answered but the briefing never finished playing: connect anyway
REFER_TIMEOUT_S = 10.0  # REFER sent, no final NOTIFY: bridge instead


class WarmState(enum.Enum):
    RINGING = "ringing"
    BRIEFING = "briefing"
    CONNECTING = "connecting"
    REFERRED = "referred"  # the caller's phone took over: both our legs end
    BRIDGED = "bridged"  # we relay audio between the legs until one ends
    FAILED = "failed"
    ENDED = "ended"  # a bridge whose legs are gone


class WarmAction(enum.Enum):
    UNHOLD_CALLER = "unhold_caller"  # the agent hears and speaks again
    SEND_REFER = "send_refer"  # REFER to the caller, Refer-To: target?Replaces=<our leg to it>
    BRIDGE = "bridge"  # relay audio between the caller's leg and the target's
    HANG_UP_TARGET = "hang_up_target"
    HANG_UP_CALLER = "hang_up_caller"


class WarmOutcome(enum.StrEnum):
    """What the warm transfer came to (the tool outcome's text starts with it)."""

    REFERRED = "referred"
    BRIDGED = "bridged"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    TARGET_HUNG_UP = "target_hung_up"
    CALLER_LEFT = "caller_left"

    @property
    def ok(self) -> bool:
        return self in (WarmOutcome.REFERRED, WarmOutcome.BRIDGED)


_UNANSWERED = {CallOutcome.BUSY: WarmOutcome.BUSY, CallOutcome.NO_ANSWER: WarmOutcome.NO_ANSWER,
               CallOutcome.REJECTED: WarmOutcome.REJECTED, CallOutcome.UNREACHABLE: WarmOutcome.UNREACHABLE}


@dataclass(frozen=True)
class WarmResult:
    outcome: WarmOutcome
    detail: str

    @property
    def ok(self) -> bool:
        return self.outcome.ok


class WarmTransfer:
    """One warm transfer of one call (SIP thread only). `now` is the caller's monotonic clock."""

    def __init__(self, target: str, now: float):
        self.target = target
        self.state = WarmState.RINGING
        self.started = now
        self._deadline: float | None = None  # of BRIEFING or CONNECTING
        self.refer_accepted = False
        self.target_gone = False
        self._result: WarmResult | None = None
        self._reported = False

    @property
    def done(self) -> bool:
        return self.state in (WarmState.REFERRED, WarmState.FAILED, WarmState.ENDED)

    def take_result(self) -> WarmResult | None:
        """The outcome, the first time it is asked for after it is known."""
        if self._result is None or self._reported:
            return None
        self._reported = True
        return self._result

    # -- events ----------------------------------------------------------------------------------

    def answered(self, now: float) -> list[WarmAction]:
        if self.state is WarmState.RINGING:
            self.state = WarmState.BRIEFING
            self._deadline = now + BRIEF_TIMEOUT_S
        return []

    def briefed(self, now: float) -> list[WarmAction]:
        if self.state is not WarmState.BRIEFING:
            return []
        self.state = WarmState.CONNECTING
        self._deadline = now + REFER_TIMEOUT_S
        return [WarmAction.SEND_REFER]

    def refer_status(self, code: int, reason: str, final: bool) -> list[WarmAction]:
        """The REFER's response or a NOTIFY's sipfrag status."""
        if self.state is not WarmState.CONNECTING:
            return []
        if not final:  # a 202, or a NOTIFY's progress (pjsua reports the 202 as "100 Accepted"): accepted
            self.refer_accepted = True
            return []
        if 200 <= code < 300:
            return self._referred(f"{code} {reason}")
        return self._bridge(f"REFER failed: {code} {reason}")

    def refer_failed(self, detail: str) -> list[WarmAction]:
        """The REFER could not be sent at all."""
        if self.state is not WarmState.CONNECTING:
            return []
        return self._bridge(f"REFER not sent: {detail}")

    def target_ended(self, code: int) -> list[WarmAction]:
        """Our leg to the target ended (final status `code` if it was never answered)."""
        self.target_gone = True
        if self.state is WarmState.RINGING:
            outcome = _UNANSWERED.get(unanswered_outcome(code), WarmOutcome.UNREACHABLE)
            return self._fail(outcome, f"the target did not answer ({code or 'no response'})")
        if self.state is WarmState.BRIEFING:
            return self._fail(WarmOutcome.TARGET_HUNG_UP, "the target hung up before the caller was connected")
        if self.state is WarmState.BRIDGED:
            self.state = WarmState.ENDED
            return [WarmAction.HANG_UP_CALLER]
        return []  # CONNECTING: Replaces ends our leg before the last NOTIFY; REFERRED: expected

    def caller_ended(self) -> list[WarmAction]:
        if self.state is WarmState.CONNECTING and self.refer_accepted:
            return self._referred("the caller left after accepting the REFER")
        if self.state in (WarmState.RINGING, WarmState.BRIEFING, WarmState.CONNECTING):
            self.state = WarmState.FAILED
            self._result = WarmResult(WarmOutcome.CALLER_LEFT, "the caller hung up during the transfer")
            return [WarmAction.HANG_UP_TARGET]
        if self.state is WarmState.BRIDGED:
            self.state = WarmState.ENDED
            return [WarmAction.HANG_UP_TARGET]
        return []

    def timers(self, now: float) -> list[WarmAction]:
        if self._deadline is None or now < self._deadline:
            return []
        if self.state is WarmState.BRIEFING:
            return self.briefed(now)
        if self.state is WarmState.CONNECTING:
            return self._bridge(f"no final NOTIFY within {REFER_TIMEOUT_S:g}s")
        return []

    # -- outcomes -------------------------------------------------------------------------------

    def _referred(self, detail: str) -> list[WarmAction]:
        self.state = WarmState.REFERRED
        self._deadline = None
        self._result = WarmResult(WarmOutcome.REFERRED, detail)
        return [WarmAction.HANG_UP_CALLER, WarmAction.HANG_UP_TARGET]

    def _bridge(self, why: str) -> list[WarmAction]:
        self._deadline = None
        if self.target_gone:  # nothing left to bridge to
            return self._fail(WarmOutcome.TARGET_HUNG_UP, f"{why}; the target's leg is gone")
        self.state = WarmState.BRIDGED
        self._result = WarmResult(WarmOutcome.BRIDGED, why)
        return [WarmAction.BRIDGE]

    def _fail(self, outcome: WarmOutcome, detail: str) -> list[WarmAction]:
        self.state = WarmState.FAILED
        self._deadline = None
        self._result = WarmResult(outcome, detail)
        actions = [WarmAction.UNHOLD_CALLER]
        if not self.target_gone:
            actions.append(WarmAction.HANG_UP_TARGET)
        return actions
