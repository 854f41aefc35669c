"""Carrying out warm transfers on the SIP thread: the second leg, hold, REFER with Replaces, bridge.

`WarmTransferDesk` owns every running `WarmTransfer` (gateway/calls/warm_transfer.py) and does
what its actions say to the two calls, found by Call-ID each time (a timer or callback never keeps
a call, or its pjsua2 object, alive). The call manager tells it of the events it sees: the target
leg answered (through that leg's `BriefingAgent`), the caller's REFER progress, either call's end.
Audio never passes here: the caller's `CallMedia` is handed a route (hold music, a bridge) that the
media clock takes on its next tick.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pjsua2 as pj
import structlog

from gateway.agents.handover import WarmTransferRequest
from gateway.calls.briefing_leg import BriefingAgent
from gateway.calls.media_routes import AudioLink, BridgeRoute, HoldRoute, Side
from gateway.calls.warm_transfer import WarmAction, WarmTransfer
from rtp.hold_player import HoldPlayer

if TYPE_CHECKING:
    from gateway.calls.active import ActiveCall
    from gateway.sip.stack import SipStack

log = structlog.get_logger("calls")

TIMER_S = 0.5  # how often a running transfer's deadlines are checked

# (caller, target URI, the leg's agent, ring timeout) -> the target leg's Call-ID; raises if it cannot be placed
Dial = Callable[["ActiveCall", str, BriefingAgent, float], str]


@dataclass
class _Running:
    transfer: WarmTransfer
    caller_id: str
    on_result: Callable[[bool, str], None]
    target_id: str = ""
    link: AudioLink | None = field(default=None, repr=False)


class WarmTransferDesk:
    """SIP thread only (except `submit`-ed callbacks, which come back to it)."""

    def __init__(self, stack: SipStack, find: Callable[[str], ActiveCall | None], dial: Dial,
                 hangup: Callable[[ActiveCall, str], None], clock: Callable[[], float] = time.monotonic):
        self.stack = stack
        self._find = find
        self._dial = dial
        self._hangup = hangup
        self._clock = clock
        self._by_caller: dict[str, _Running] = {}
        self._by_target: dict[str, _Running] = {}

    def busy(self, call_id: str) -> bool:
        return call_id in self._by_caller

    def start(self, caller: ActiveCall, request: WarmTransferRequest, on_result: Callable[[bool, str], None]) -> None:
        if caller.call_id in self._by_caller or (caller.transfer is not None and not caller.transfer.done):
            on_result(False, "a transfer is already in progress")
            return
        if caller.media is None:
            on_result(False, "the call has no media")
            return
        running = _Running(WarmTransfer(request.target, self._clock()), caller.call_id, on_result)
        self._by_caller[caller.call_id] = running
        caller.log.info("warm_transfer_started", target=request.target, uri=request.uri,
                        ring_timeout_s=request.ring_timeout_s)
        caller.media.set_route(HoldRoute(HoldPlayer(request.hold_music)))
        caller.log.info("warm_transfer_hold", music_s=round(len(request.hold_music) / 8000, 1))
        agent = BriefingAgent(request.briefing, functools.partial(self._answered, caller.call_id),
                              lambda: self.stack.submit(functools.partial(self._briefed, caller.call_id)))
        try:
            running.target_id = self._dial(caller, request.uri, agent, request.ring_timeout_s)
        except Exception as exc:  # pj.Error, a draining gateway, no ports: the target is unreachable
            caller.log.warning("warm_transfer_dial_failed", uri=request.uri, error=str(exc))
            self._apply(running, running.transfer.target_ended(503))
            return
        self._by_target[running.target_id] = running
        caller.log.info("warm_transfer_ringing", target_call_id=running.target_id)
        target = self._find(running.target_id)
        if target is None or target.ended:  # failed inside makeCall: its teardown came first
            self._apply(running, running.transfer.target_ended(503))
            return
        self.stack.call_later(TIMER_S, functools.partial(self._timers, caller.call_id))

    # -- events (SIP thread) ---------------------------------------------------------------------

    def _answered(self, caller_id: str) -> None:
        running = self._by_caller.get(caller_id)
        if running is not None:
            self._log(running, "warm_transfer_answered")
            self._apply(running, running.transfer.answered(self._clock()))

    def _briefed(self, caller_id: str) -> None:
        running = self._by_caller.get(caller_id)
        if running is not None:
            self._log(running, "warm_transfer_briefed", waited_s=round(self._clock() - running.transfer.started, 1))
            self._apply(running, running.transfer.briefed(self._clock()))

    def owns_refer(self, call: ActiveCall) -> bool:
        return call.call_id in self._by_caller

    def refer_status(self, call: ActiveCall, code: int, reason: str, final: bool) -> None:
        running = self._by_caller.get(call.call_id)
        if running is not None:
            call.log.info("warm_transfer_refer_status", code=code, reason=reason, final=final)
            self._apply(running, running.transfer.refer_status(code, reason, final))

    def call_ended(self, call: ActiveCall, code: int) -> None:
        """A call ended (teardown): the caller of a transfer, or a target's leg."""
        running = self._by_caller.get(call.call_id)
        if running is not None:
            self._apply(running, running.transfer.caller_ended())
            return
        running = self._by_target.get(call.call_id)
        if running is not None:
            self._log(running, "warm_transfer_target_ended", code=code, reason=call.end_reason,
                      state=running.transfer.state.value)
            self._apply(running, running.transfer.target_ended(0 if call.confirmed else code))

    def _timers(self, caller_id: str) -> None:
        running = self._by_caller.get(caller_id)
        if running is None:
            return
        self._apply(running, running.transfer.timers(self._clock()))
        if caller_id in self._by_caller:
            self.stack.call_later(TIMER_S, functools.partial(self._timers, caller_id))

    # -- actions ---------------------------------------------------------------------------------

    def _apply(self, running: _Running, actions: list[WarmAction]) -> None:
        """Report an outcome first (the record is written before a hang-up can close it), then act."""
        transfer = running.transfer
        result = transfer.take_result()
        if result is not None:
            seconds = round(self._clock() - transfer.started, 1)
            self._log(running, "warm_transfer_result", outcome=result.outcome.value, ok=result.ok,
                      detail=result.detail, seconds=seconds)
            caller = self._find(running.caller_id)
            if caller is not None and caller.recorder is not None:
                caller.recorder.event("transfer", mode="warm", target=transfer.target, outcome=result.outcome.value,
                                      ok=result.ok, detail=result.detail, seconds=seconds,
                                      target_call_id=running.target_id)
            running.on_result(result.ok, f"{result.outcome.value}: {result.detail}")
        for action in actions:
            caller, target = self._find(running.caller_id), self._find(running.target_id)
            match action:
                case WarmAction.UNHOLD_CALLER if caller is not None and caller.media is not None:
                    caller.media.set_route(None)
                    caller.log.info("warm_transfer_unhold")
                case WarmAction.SEND_REFER:
                    self._refer(running, caller, target)
                case WarmAction.BRIDGE if caller is not None and target is not None:
                    running.link = link = AudioLink()
                    if caller.media is not None and target.media is not None:
                        caller.media.set_route(BridgeRoute(link, Side.CALLER))
                        target.media.set_route(BridgeRoute(link, Side.TARGET))
                    caller.log.info("warm_transfer_bridged", target_call_id=running.target_id)
                case WarmAction.HANG_UP_TARGET if target is not None:
                    self._hangup(target, "transferred")
                case WarmAction.HANG_UP_CALLER if caller is not None:
                    self._hangup(caller, "transferred")
        if transfer.done and self._by_caller.get(running.caller_id) is running:  # (a nested end got here first)
            if running.link is not None:
                self._log(running, "warm_transfer_bridge_ended",
                          frames_to_caller=running.link.relayed[Side.CALLER],
                          frames_to_target=running.link.relayed[Side.TARGET])
            self._by_caller.pop(running.caller_id, None)
            self._by_target.pop(running.target_id, None)

    def _refer(self, running: _Running, caller: ActiveCall | None, target: ActiveCall | None) -> None:
        if caller is None or caller.sip is None or target is None or target.sip is None:
            self._apply(running, running.transfer.refer_failed("a leg is gone"))
            return
        caller.log.info("warm_transfer_refer", target_call_id=running.target_id)
        try:
            caller.sip.xferReplaces(target.sip, pj.CallOpParam(True))
        except pj.Error as exc:
            caller.log.warning("warm_transfer_refer_failed", error=exc.info())
            self._apply(running, running.transfer.refer_failed(exc.reason or "REFER could not be sent"))

    def _log(self, running: _Running, event: str, **fields: object) -> None:
        caller = self._find(running.caller_id)
        if caller is not None:
            caller.log.info(event, target_call_id=running.target_id, **fields)
        else:  # the caller's call is already out of the registry (its teardown)
            log.info(event, call_id=running.caller_id, target_call_id=running.target_id,
                                               **fields)
