"""Blind transfer (REFER) as a small state machine, one per call at a time.

    REQUESTED --202--> ACCEPTED --final NOTIFY 2xx--> SUCCEEDED (the call is then hung up)
        |                  |------final NOTIFY >=300 / timeout--> FAILED
        '--REFER refused or not sent--> FAILED

A PBX may BYE the transferee before its last NOTIFY: a call that ends after ACCEPTED counts as
transferred. `on_result(ok, detail)` is called exactly once, on the SIP thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pjsua2 as pj

if TYPE_CHECKING:
    from gateway.calls.active import ActiveCall
    from gateway.sip.call import SipCall
    from gateway.sip.stack import SipStack

TRANSFER_TIMEOUT_S = 30.0  # REFER accepted but no final NOTIFY: the transfer is taken as failed


class TransferState(enum.Enum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class Transfer:
    target: str
    on_result: Callable[[bool, str], None]
    state: TransferState = TransferState.REQUESTED

    @property
    def done(self) -> bool:
        return self.state in (TransferState.SUCCEEDED, TransferState.FAILED)

    @property
    def accepted(self) -> bool:
        return self.state is TransferState.ACCEPTED

    def on_status(self, code: int, reason: str, final: bool) -> TransferState:
        """A REFER response or NOTIFY sipfrag status; returns the state it leads to."""
        if self.done:
            return self.state
        if not final:
            # Any progress means the transferee took the REFER: pjsua reports the REFER's 202 as a
            # provisional "100 Accepted" (onCallTransferStatus), NOTIFYs carry 1xx sipfrags (as
            # WarmTransfer.refer_status reads them).
            self.state = TransferState.ACCEPTED
        else:
            self.finish(200 <= code < 300, f"{code} {reason}")
        return self.state

    def finish(self, ok: bool, detail: str) -> None:
        if self.done:
            return
        self.state = TransferState.SUCCEEDED if ok else TransferState.FAILED
        self.on_result(ok, detail)

    def call_ended(self) -> None:
        """The call left before the outcome was known: accepted counts as transferred."""
        if self.accepted:
            self.finish(True, "the transferee left the call")


class TransferDesk:
    """Starts REFERs and follows their progress (SIP thread); one transfer per call at a time."""

    def __init__(self, stack: SipStack, on_transferred: Callable[[ActiveCall], None]):
        self.stack = stack
        self._on_transferred = on_transferred  # hangs the call up: the transferee is with the target now

    def start(self, call: ActiveCall, sip: SipCall, target: str, on_result: Callable[[bool, str], None]) -> None:
        if call.transfer is not None and not call.transfer.done:
            on_result(False, "a transfer is already in progress")
            return
        call.transfer = transfer = Transfer(target, on_result)
        call.log.info("transfer_started", target=target)
        try:
            sip.xfer(target, pj.CallOpParam(True))
        except pj.Error as exc:
            call.log.warning("transfer_failed", target=target, error=exc.info())
            transfer.finish(False, exc.reason or "REFER could not be sent")
            return
        self.stack.call_later(TRANSFER_TIMEOUT_S, lambda: self._timeout(call, transfer))

    def on_status(self, call: ActiveCall, code: int, reason: str, final: bool) -> None:
        transfer = call.transfer
        if transfer is None or transfer.done:
            return
        call.log.info("transfer_status", target=transfer.target, code=code, reason=reason, final=final)
        if transfer.on_status(code, reason, final) is TransferState.SUCCEEDED:
            self._on_transferred(call)

    def _timeout(self, call: ActiveCall, transfer: Transfer) -> None:
        if transfer.done or call.ended:
            return
        call.log.warning("transfer_timeout", target=transfer.target, accepted=transfer.accepted)
        transfer.finish(False, "no answer from the transfer target")
