"""Call lifecycle: admission, RTP session, agent, and teardown on every path.

All methods run on the SIP thread; other threads' requests (hang up, keys, transfers, hold) go
through `commands` (gateway/calls/commands.py), which hands them to it.
Whatever way a call ends (BYE either way, CANCEL, a failed answer, RTP timeout, shutdown) it
goes through `_teardown`, which removes the session from the media clock, closes its ports,
stops its agent and reports the call exactly once. The pieces it uses live beside it:
`admission` (who gets a call), `active` (the registry), `transfer` (REFER), `reporting`
(records, metrics, the last log line), `media` (the session <-> agent bridge).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import pjsua2 as pj
import structlog

from gateway.agents import Agent
from gateway.calls.active import ActiveCall, CallRegistry
from gateway.calls.admission import Admission
from gateway.calls.commands import CallCommands
from gateway.calls.factory import CallControls, build_call_parts
from gateway.calls.media import release_media, remote_media
from gateway.calls.progress import RingTimer, ring_timeout_s, unanswered_outcome
from gateway.calls.reporting import CallReporting, EndedCallback
from gateway.calls.transfer import TransferDesk
from gateway.calls.warm_desk import WarmTransferDesk
from gateway.config import Config
from gateway.metrics import Metrics
from gateway.sip.account import GatewayAccount, IncomingInvite, user_agent_header
from gateway.sip.call import NegotiatedMedia, SipCall
from gateway.sip.guard import SourceGuard
from gateway.sip.info_dtmf import InfoDtmf
from gateway.sip.sdp import MediaAddress
from gateway.sip.stack import SipStack
from rtp.clock import MediaClock
from rtp.ports import PortAllocator, PortPair, PortsExhausted

if TYPE_CHECKING:
    from gateway.conversation.speech import ConversationServices
    from gateway.store.call_events import CallEventWriter

log = structlog.get_logger("calls")


class GatewayDraining(RuntimeError):
    """A new call was asked of a gateway that is draining (finishing its calls before it stops)."""


class CallManager:
    def __init__(self, config: Config, stack: SipStack, clock: MediaClock, ports: PortAllocator,
                 services: ConversationServices | None = None, metrics: Metrics | None = None,
                 call_events: CallEventWriter | None = None):
        self.config = config
        self.services = services
        self.metrics = metrics or Metrics()
        self.reporting = CallReporting(config.recording, self.metrics, call_events)
        self.draining = False  # set by Gateway.drain(): new INVITEs get 503, calls up finish
        self.admission = Admission(SourceGuard(config.sip.trusted_sources, config.sip.invites_per_source_per_s,
                                               config.sip.invite_burst), config.sip.max_calls)
        self.on_security_event: Callable[[str], None] = self.metrics.security_event
        self.stack = stack
        self.clock = clock
        self.ports = ports
        self.calls = CallRegistry()
        self.transfers = TransferDesk(stack, lambda call: self._hangup(call, "transferred"))
        self.warm = WarmTransferDesk(stack, self.calls.get, self._dial_leg, self._hangup)
        self.commands = CallCommands(stack, self.calls, self._hangup, self.transfers, self.warm)
        c = self.commands
        self._controls = CallControls(c.hangup, c.send_dtmf, c.transfer, c.warm_transfer, c.hold)
        self.ring_timer = RingTimer(stack, self._hangup, self.calls.get)

    # -- any thread ----------------------------------------------------------------------------

    @property
    def active_count(self) -> int:
        return len(self.calls)

    def on_ended(self, callback: EndedCallback) -> None:
        """Register `callback(call, status_code, reason)` run when a call ends (SIP thread)."""
        self.reporting.on_ended(callback)

    def snapshot(self) -> list[dict[str, object]]:
        """The calls that are up, for the control API (SIP thread, or any thread for a rough view)."""
        return [{"call_id": c.call_id, "direction": c.direction, "agent": c.agent_name, "remote": c.remote,
                 "started_at": c.started_at, "state": "confirmed" if c.confirmed else "early"}
                for c in self.calls.snapshot_calls()]

    # -- SIP thread: new calls -----------------------------------------------------------------

    def incoming(self, account: GatewayAccount, invite: IncomingInvite) -> None:
        """Adopt a new INVITE (inside pjsua's `onIncomingCall`) and decide what to answer.

        A refusal is sent a SIP-thread turn later (see `_refuse`); a call we take is answered here
        (180/200 never end the call, so they are safe inside the callback).
        """
        sip = SipCall(account, self, invite.pj_call_id)
        try:
            self._admit(sip, account, invite)
        except Exception:  # a bug of ours costs this caller a 500, never a call left unanswered
            log.exception("call_admission_failed", pj_call_id=invite.pj_call_id)
            call = self.calls.of(sip)
            if call is not None:
                self._teardown(call, 500, "admission_failed")
            self._refuse(sip, invite.pj_call_id, 500)

    def _admit(self, sip: SipCall, account: GatewayAccount, invite: IncomingInvite) -> None:
        info = sip.getInfo()
        sip.call_id = info.callIdString
        call_log = log.bind(call_id=info.callIdString)
        refusal = self.admission.check(invite, len(self.calls), self.draining)
        if refusal is not None:
            refusal.log(call_log, info.remoteUri, len(self.calls), self.config.sip.max_calls)
            if refusal.security_event:
                self.on_security_event(refusal.kind)
            self.metrics.call_rejected("inbound", refusal.kind)
            self._refuse(sip, invite.pj_call_id, refusal.code)
            return
        agent_name = self._route(account, info.localUri)
        try:
            call = self._create(sip, info.callIdString, "inbound", agent_name, info.localUri, info.remoteUri)
        except PortsExhausted as exc:
            call_log.error("call_rejected_no_ports", error=str(exc))
            self.metrics.call_rejected("inbound", "no_ports")
            self._refuse(sip, invite.pj_call_id, 503)
            return
        call.log.info("call_incoming", remote=info.remoteUri, local=info.localUri, account=account.name,
                      agent=agent_name)
        answer_after = self.config.agents[agent_name].answer_after_s
        try:
            if answer_after > 0:
                _answer(sip, 180)
                self.stack.call_later(answer_after, lambda: self._answer_if_ringing(call))
            else:
                _answer(sip, 200)
        except pj.Error as exc:
            call.log.error("call_answer_failed", error=exc.info())
            self._teardown(call, 500, "answer_failed")
            self._refuse(sip, invite.pj_call_id, 500)

    def _route(self, account: GatewayAccount, local_uri: str) -> str:
        """The agent for an incoming call: the dialled number's route if there is one (several
        numbers can reach one account or the gateway directly), else the account's agent."""
        dialled = uri_user(local_uri)
        return self.config.sip.routes.get(dialled, account.agent) if dialled else account.agent

    def outgoing(self, account: GatewayAccount, uri: str, agent_name: str,
                 variables: Mapping[str, str] | None = None, agent: Agent | None = None,
                 ring_timeout: float | None = None) -> str:
        """Place a call to `uri` from `account` with agent `agent_name` (or `agent` itself: a warm
        transfer's leg to its target); returns the Call-ID."""
        if self.draining:
            raise GatewayDraining("the gateway is draining: it places no new calls")
        sip = SipCall(account, self)
        ports = self.ports.allocate()
        try:
            sip.pending_ports = ports  # media_address() needs the port before makeCall returns
            prm = pj.CallOpParam(True)
            if self.config.sip.user_agent:  # our name goes to the PBX we call, not to every source
                prm.txOption.headers.append(user_agent_header(self.config.sip.user_agent))
            sip.makeCall(uri, prm)
        except BaseException:
            ports.close()
            raise
        info = sip.getInfo()
        call = self._create(sip, info.callIdString, "outbound", agent_name, info.localUri, uri, ports, variables,
                            agent)
        call.log.info("call_outgoing", remote=uri, account=account.name, agent=agent_name)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:  # failed inside makeCall
            self._teardown(call, info.lastStatusCode,
                           f"{unanswered_outcome(info.lastStatusCode).value}: {info.lastReason}")
        else:
            self.ring_timer.start(call, ring_timeout if ring_timeout is not None
                                  else ring_timeout_s(account.config, self.config.sip))
        return call.call_id

    def _dial_leg(self, caller: ActiveCall, uri: str, agent: Agent, ring_timeout: float) -> str:
        """A warm transfer's second leg, from the caller's account (the same PBX, the same credentials)."""
        if caller.sip is None:
            raise RuntimeError("the caller's call has ended")
        return self.outgoing(caller.sip.account, uri, caller.agent_name, agent=agent, ring_timeout=ring_timeout)

    def _create(self, sip: SipCall, call_id: str, direction: str, agent_name: str, local_uri: str,
                remote_uri: str, ports: PortPair | None = None,
                variables: Mapping[str, str] | None = None, agent: Agent | None = None) -> ActiveCall:
        ports = ports or self.ports.allocate()
        call_log = log.bind(call_id=call_id)
        try:
            parts = build_call_parts(self.config, self.services, self.reporting, self._controls, ports, call_id,
                                     direction, agent_name, local_uri, remote_uri, variables, call_log, agent)
        except BaseException:
            ports.close()
            raise
        call = ActiveCall(sip=sip, call_id=call_id, direction=direction, agent_name=agent_name, ports=ports,
                          session=parts.session, agent=parts.agent, log=call_log, recorder=parts.recorder,
                          remote=remote_uri, started_at=time.time(), media=parts.media,
                          answered_by=parts.answered_by)
        self.metrics.call_started(direction)
        sip.log = call_log
        sip.call_id = call_id
        self.calls.add(call, sip.getId())
        limit = self.config.sip.max_call_duration_s
        if limit > 0:  # by Call-ID, not the call: a timer must not keep a pjsua2 Call alive for hours
            self.stack.call_later(limit, functools.partial(self._end_overlong, call_id, limit))
        return call

    def _answer_if_ringing(self, call: ActiveCall) -> None:
        if call.ended or call.confirmed or call.sip is None:
            return
        try:
            _answer(call.sip, 200)
        except pj.Error as exc:
            call.log.error("call_answer_failed", error=exc.info())
            self._hangup(call, "answer_failed")

    def _refuse(self, sip: SipCall, pj_call_id: int, code: int) -> None:
        """Refuse a call we did not take, one SIP-thread turn from now.

        Never from inside `onIncomingCall`: a final response there can end the call at once, and
        pjsua then frees its copy of the INVITE twice (`pjsip_rx_data_free_cloned: Assertion
        'rdata' failed`, the whole process gone; seen with every late-offer INVITE we refused).
        Until the call has ended, the registry holds the object so pjsua2 keeps it.
        """
        self.calls.hold_refused(pj_call_id, sip)
        self.stack.call_later(0, functools.partial(self._send_refusal, sip, pj_call_id, code))

    def _send_refusal(self, sip: SipCall, pj_call_id: int, code: int) -> None:
        if not self.calls.is_refused(pj_call_id, sip):
            return  # it ended first (CANCEL): nothing to answer
        try:
            _answer(sip, code)
        except pj.Error as exc:
            log.warning("call_reject_failed", code=code, error=exc.info())

    # -- SIP thread: pjsua2 callbacks (gateway.sip.call.CallEvents) ----------------------------

    def media_address(self, sip: SipCall) -> MediaAddress | None:
        """Where our RTP lives, for the SDP; None for a call being refused (it has no ports, and
        pjsua still builds an SDP for it: raising here left the call without its 486)."""
        call = self.calls.of(sip)
        ports = call.ports if call is not None else getattr(sip, "pending_ports", None)
        if ports is None:
            return None
        return MediaAddress(self.config.sip.public_address, ports.rtp_port)

    def on_call_state(self, sip: SipCall, info: pj.CallInfo) -> None:
        call = self.calls.of(sip)
        if call is None:
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                refused = self.calls.release_refused(info.id)
                if refused is not None:
                    self.stack.call_later(0, functools.partial(_drop, refused))
            return
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and not call.confirmed:
            call.confirmed = True
            call.log.info("call_confirmed", remote=info.remoteUri)
            self._start_agent(call)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            reason = call.end_reason or self._unanswered_reason(call, info.lastStatusCode)
            self._teardown(call, info.lastStatusCode, f"{reason}: {info.lastReason}")

    @staticmethod
    def _unanswered_reason(call: ActiveCall, code: int) -> str:
        if call.confirmed:
            return "remote_bye"
        return unanswered_outcome(code).value if call.direction == "outbound" else "not_answered"

    def on_media(self, sip: SipCall, media: NegotiatedMedia | None) -> None:
        call = self.calls.of(sip)
        if call is None or call.ended:
            return
        if media is None:
            call.log.info("call_media_inactive")
            return
        configured = remote_media(media, srtp_required=self.config.rtp.srtp == "required")
        if isinstance(configured, str):
            call.log.error("call_media_unusable", reason=configured, codec=media.codec,
                           srtp=media.srtp is not None, srtp_mode=self.config.rtp.srtp)
            self._hangup(call, configured)
            return
        call.session.configure(configured)
        call.log.info("call_media", codec=media.codec, status=media.status, send=media.send,
                      srtp=media.srtp.suite if media.srtp else None,
                      receive=media.receive, remote=f"{media.remote_rtp[0]}:{media.remote_rtp[1]}",
                      local_port=call.ports.rtp_port)
        if not call.media_started:
            call.media_started = True
            self.clock.add(call.session)
            self._start_agent(call)

    def _start_agent(self, call: ActiveCall) -> None:
        """Once media flows and the call is answered: inbound that is at first media (we answered
        already), outbound at CONFIRMED, never on early media (see gateway.calls.progress)."""
        if call.agent_started or not call.media_started or call.ended:
            return
        if call.direction == "outbound" and not call.confirmed:
            if call.sip is not None and call.sip.getInfo().state == pj.PJSIP_INV_STATE_EARLY:
                call.log.info("call_early_media")  # (a 200's media is reported just before CONFIRMED)
            return
        call.agent_started = True
        if call.media is not None:
            call.media.answer()
        call.agent.on_start()

    def on_media_failed(self, sip: SipCall, reason: str) -> None:
        call = self.calls.of(sip)
        if call is not None and not call.ended:
            self._hangup(call, reason)

    def on_info_dtmf(self, sip: SipCall, dtmf: InfoDtmf) -> None:
        """A keypress sent as SIP INFO: to the agent like an RFC 4733 one, once per CSeq."""
        call = self.calls.of(sip)
        if call is None or call.ended or call.media is None:
            return
        if dtmf.cseq <= call.info_cseq:  # pjsip answers a retransmission itself; this guards the rest
            call.log.info("dtmf_info_repeated", digit=dtmf.digit, cseq=dtmf.cseq)
            return
        call.info_cseq = dtmf.cseq
        call.log.info("dtmf_received", digit=dtmf.digit, method="sip_info", duration_ms=dtmf.duration_ms,
                      content_type=dtmf.content_type)
        call.media.signalled_dtmf(dtmf.digit)

    def on_transfer_status(self, sip: SipCall, code: int, reason: str, final: bool) -> None:
        call = self.calls.of(sip)
        if call is not None and self.warm.owns_refer(call):
            self.warm.refer_status(call, code, reason, final)
        elif call is not None:
            self.transfers.on_status(call, code, reason, final)

    # -- SIP thread: ending calls --------------------------------------------------------------

    def hangup_all(self, reason: str) -> None:
        for call in self.calls:
            self._hangup(call, reason)

    def close_all(self) -> None:
        """Last resort at shutdown: release what is left without signalling, refused calls included
        (their pjsua2 objects must be gone before libDestroy; the SIP thread's last turns drop them)."""
        for call in self.calls:
            self._teardown(call, 0, call.end_reason or "shutdown")
        for sip in self.calls.release_all_refused():
            self.stack.call_later(0, functools.partial(_drop, sip))

    def _end_overlong(self, call_id: str, limit: float) -> None:
        """A call on hold whose BYE was lost sends no RTP to time out on: this ends it all the same."""
        call = self.calls.get(call_id)
        if call is not None and not call.ended:
            log.warning("call_max_duration", call_id=call_id, limit_s=limit)
            self._hangup(call, "max_duration")

    def _hangup(self, call: ActiveCall, reason: str) -> None:
        if call.ended or call.sip is None:
            return
        call.end_reason = call.end_reason or reason
        call.log.info("call_hangup", reason=reason)
        try:
            call.sip.hangup(pj.CallOpParam(True))
        except pj.Error as exc:  # the dialog is already gone: release locally
            call.log.warning("call_hangup_failed", error=exc.info())
            self._teardown(call, 0, reason)

    def _teardown(self, call: ActiveCall, code: int, reason: str) -> None:
        if call.ended:
            return
        call.ended = True
        self.calls.remove(call)
        # Run by the media clock once no tick uses the session: it must not hold the call (whose
        # pjsua2 object may only be released here, on the SIP thread).
        self.clock.remove(call.session, then=functools.partial(release_media, call.session, call.log,
                                                               call.ports.rtp_port, self.ports))
        if call.transfer is not None:
            call.transfer.call_ended()  # a PBX may BYE before the last NOTIFY
        self.warm.call_ended(call, code)  # the other leg of a warm transfer learns of it
        try:
            call.agent.on_stop()
        except Exception:
            call.log.exception("agent_stop_failed")
        self.reporting.call_ended(call, code, reason)
        sip, call.sip = call.sip, None  # whoever keeps the ActiveCall keeps no pjsua2 object
        self.stack.call_later(0, functools.partial(_drop, sip))  # never delete a Call inside its own callback


def _answer(sip: SipCall, code: int) -> None:
    prm = pj.CallOpParam(True)
    prm.statusCode = code
    sip.answer(prm)


def uri_user(uri: str) -> str:
    """The user part of a SIP URI in a header value: `"Bob" <sip:2000@pbx;x=y>` -> `2000`."""
    inner = uri[uri.find("<") + 1: uri.rfind(">")] if "<" in uri else uri
    inner = inner.split(":", 1)[1] if ":" in inner else inner
    return inner.split("@", 1)[0].split(";", 1)[0] if "@" in inner else ""


def _drop(sip: SipCall | None) -> None:
    """Release our last reference to a finished pjsua2 call object (SIP thread)."""
    del sip
