"""What other threads may ask of the calls that are up: hang up, send keys, transfer, hold, and the
media clock's "this session failed".

Every request is handed to the SIP thread (the only one that touches pjsua2 and the call registry)
and done there if the call is still up; a call that ended meanwhile is skipped, or `on_result` is
told so. Split out of :mod:`gateway.calls.manager`, which keeps the SIP thread's own work.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gateway.agents.handover import WarmTransferRequest
from gateway.calls.active import ActiveCall, CallRegistry
from gateway.calls.media_routes import HoldRoute
from gateway.calls.transfer import TransferDesk
from gateway.calls.warm_desk import WarmTransferDesk
from gateway.sip.stack import SipStack
from rtp.hold_player import HoldPlayer
from rtp.session import RtpSession

Result = Callable[[bool, str], None]


class CallCommands:
    """Requests by Call-ID from any thread, done on the SIP thread."""

    def __init__(self, stack: SipStack, calls: CallRegistry, hangup: Callable[[ActiveCall, str], None],
                 transfers: TransferDesk, warm: WarmTransferDesk) -> None:
        self._stack = stack
        self._calls = calls
        self._hangup = hangup  # the manager's own (SIP thread): BYE, CANCEL or a final response
        self._transfers = transfers
        self._warm = warm

    def hangup(self, call_id: str, reason: str) -> None:
        """Hang up a call (BYE, CANCEL or a final response as its state needs)."""

        def end() -> None:
            call = self._calls.get(call_id)
            if call is not None:
                self._hangup(call, reason)

        self._stack.submit(end)

    def send_dtmf(self, call_id: str, digits: str) -> None:
        """Send RFC 4733 digits on a call."""

        def send() -> None:
            call = self._calls.get(call_id)
            if call is not None:
                call.session.send_dtmf(digits)

        self._stack.submit(send)

    def transfer(self, call_id: str, target: str, on_result: Result) -> None:
        """Blind-transfer a call (REFER). `on_result(ok, detail)` runs on the SIP thread once the
        transferee reports the new call's outcome or the REFER fails."""

        def start() -> None:
            call = self._live(call_id)
            if call is None or call.sip is None:
                on_result(False, "the call has ended")
                return
            self._transfers.start(call, call.sip, target, on_result)

        self._stack.submit(start)

    def warm_transfer(self, call_id: str, request: WarmTransferRequest, on_result: Result) -> None:
        """Warm-transfer a call (gateway/calls/warm_desk.py); `on_result(ok, detail)` runs on the SIP
        thread once the caller is with the target, or back with its agent."""

        def start() -> None:
            call = self._live(call_id)
            if call is None or call.sip is None:
                on_result(False, "the call has ended")
                return
            self._warm.start(call, request, on_result)

        self._stack.submit(start)

    def hold(self, call_id: str, loop: np.ndarray | None) -> None:
        """Play `loop` to the caller instead of its agent, or (None) give the line back; a call in a
        warm transfer keeps the transfer's hold or bridge."""

        def apply() -> None:
            call = self._live(call_id)
            if call is None or call.media is None or self._warm.busy(call_id):
                return
            call.media.set_route(None if loop is None else HoldRoute(HoldPlayer(loop)))
            call.log.info("call_hold" if loop is not None else "call_unhold")

        self._stack.submit(apply)

    def media_error(self, session: RtpSession, exc: BaseException) -> None:
        """The media clock dropped a session whose tick raised (media thread): its call is ended."""
        error = repr(exc)

        def end() -> None:
            call = self._calls.with_session(session)
            if call is not None:
                call.log.error("media_tick_failed", error=error)
                self._hangup(call, "media_error")

        self._stack.submit(end)

    def _live(self, call_id: str) -> ActiveCall | None:
        call = self._calls.get(call_id)
        return None if call is None or call.ended else call
