"""Call lifecycle: admission, RTP session, agent, and teardown on every path.

All methods run on the SIP thread except `hangup()` and the media callbacks, which hand their
work to it. Whatever way a call ends (BYE either way, CANCEL, 486, a failed answer, RTP
timeout, shutdown) it goes through `_teardown`, which removes the session from the media clock,
closes its ports and stops its agent exactly once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pjsua2 as pj
import structlog

from gateway.agents import Agent, CallContext, RecordKind, create_agent
from gateway.config import Config
from gateway.metrics import Metrics
from gateway.records import CallRecorder
from gateway.sdp import MediaAddress
from gateway.sip.account import GatewayAccount
from gateway.sip.call import NegotiatedMedia, SipCall
from gateway.sip.guard import SourceGuard
from gateway.sip.stack import SipStack
from rtp.clock import MediaClock
from rtp.g711 import codec_by_name
from rtp.jitter import JitterFrame
from rtp.ports import PortAllocator, PortPair, PortsExhausted
from rtp.session import RemoteMedia, RtpSession

if TYPE_CHECKING:
    from gateway.conversation.speech import ConversationServices
    from gateway.store.call_events import CallEventWriter

log = structlog.get_logger("calls")


class GatewayDraining(RuntimeError):
    """A new call was asked of a gateway that is draining (finishing its calls before it stops)."""
TRANSFER_TIMEOUT_S = 30.0  # REFER accepted but no final NOTIFY: the transfer is taken as failed


class _CallMedia:
    """Adapts the RTP session's listener interface to the agent (media clock thread)."""

    def __init__(self, agent: Agent, on_inactive: Callable[[float], None], recorder: CallRecorder | None = None):
        self.agent = agent
        self._on_inactive = on_inactive
        self._recorder = recorder

    def on_frame(self, frame: JitterFrame, echo_cancelled: np.ndarray | None) -> np.ndarray | None:
        self.agent.on_audio(frame, echo_cancelled)
        out = self.agent.next_frame()
        if self._recorder is not None:
            self._recorder.audio(frame.pcm, out)  # queued for the recorder's writer thread: never blocks
        return out

    def on_dtmf(self, digit: str) -> None:
        self.agent.on_dtmf(digit)

    def on_inactive(self, idle_s: float) -> None:
        self._on_inactive(idle_s)


@dataclass
class ActiveCall:
    sip: SipCall
    call_id: str
    direction: str
    agent_name: str
    ports: PortPair
    session: RtpSession
    agent: Agent
    log: structlog.typing.FilteringBoundLogger
    created_at: float = field(default_factory=time.monotonic)
    media_started: bool = False
    confirmed: bool = False
    end_reason: str | None = None
    ended: bool = False
    transfer: _Transfer | None = None
    recorder: CallRecorder | None = None
    remote: str = ""
    started_at: float = 0.0  # Unix time


@dataclass
class _Transfer:
    """A REFER in progress: where to, who to tell, and whether the transferee accepted it."""

    target: str
    on_result: Callable[[bool, str], None]
    accepted: bool = False
    done: bool = False

    def finish(self, ok: bool, detail: str) -> None:
        if not self.done:
            self.done = True
            self.on_result(ok, detail)


class CallManager:
    def __init__(self, config: Config, stack: SipStack, clock: MediaClock, ports: PortAllocator,
                 services: ConversationServices | None = None, metrics: Metrics | None = None,
                 call_events: CallEventWriter | None = None):
        self.config = config
        self.call_events = call_events  # a shared copy of every call's record events (PostgreSQL), or None
        self.services = services
        self.metrics = metrics or Metrics()
        self.draining = False  # set by Gateway.drain(): new INVITEs get 503, calls up finish
        self.guard = SourceGuard(config.sip.trusted_sources, config.sip.invites_per_source_per_s,
                                 config.sip.invite_burst)
        self.on_security_event: Callable[[str], None] = self.metrics.security_event
        self.stack = stack
        self.clock = clock
        self.ports = ports
        self._calls: dict[int, ActiveCall] = {}  # by pjsua call index
        self._rejected: dict[int, SipCall] = {}
        self._ended: list[Callable[[ActiveCall, int, str], None]] = []

    # -- any thread ----------------------------------------------------------------------------

    @property
    def active_count(self) -> int:
        return len(self._calls)

    def on_ended(self, callback: Callable[[ActiveCall, int, str], None]) -> None:
        """Register `callback(call, status_code, reason)` run when a call ends (SIP thread)."""
        self._ended.append(callback)

    def hangup(self, call_id: str, reason: str) -> None:
        """Hang up a call from any thread (BYE, CANCEL or a final response as its state needs)."""
        self.stack.submit(lambda: self._hangup_by_id(call_id, reason))

    def send_dtmf(self, call_id: str, digits: str) -> None:
        """Send RFC 4733 digits on a call from any thread."""

        def send() -> None:
            for call in self._calls.values():
                if call.call_id == call_id:
                    call.session.send_dtmf(digits)

        self.stack.submit(send)

    def transfer(self, call_id: str, target: str, on_result: Callable[[bool, str], None]) -> None:
        """Blind-transfer a call from any thread (REFER). `on_result(ok, detail)` runs on the SIP
        thread once the transferee reports the new call's outcome or the REFER fails."""
        self.stack.submit(lambda: self._transfer(call_id, target, on_result))

    def media_error(self, session: RtpSession, exc: BaseException) -> None:
        """The media clock dropped a session whose tick raised: end its call (media thread)."""
        for call in list(self._calls.values()):
            if call.session is session:
                call.log.error("media_tick_failed", error=repr(exc))
                self.hangup(call.call_id, "media_error")

    # -- SIP thread ----------------------------------------------------------------------------

    def incoming(self, account: GatewayAccount, pj_call_id: int, source: str = "") -> None:
        sip = SipCall(account, self, pj_call_id)
        info = sip.getInfo()
        call_log = log.bind(call_id=info.callIdString)
        verdict = self.guard.check_invite(source)
        if not verdict.allowed:
            # one line per event with src_ip: what fail2ban matches (docs/operations.md)
            call_log.warning("sip_security_event", kind=verdict.kind, src_ip=verdict.src_ip, source=source,
                             remote=info.remoteUri, response=verdict.code)
            self.on_security_event(verdict.kind)
            self.metrics.call_rejected("inbound", verdict.kind)
            self._reject(sip, pj_call_id, verdict.code)
            return
        if self.draining:  # 503: a dispatcher (or the PBX) retries the call on another gateway
            call_log.info("call_rejected_draining", remote=info.remoteUri, active=len(self._calls))
            self.metrics.call_rejected("inbound", "draining")
            self._reject(sip, pj_call_id, 503)
            return
        if len(self._calls) >= self.config.sip.max_calls:
            call_log.warning("call_rejected_busy", remote=info.remoteUri, active=len(self._calls),
                             max_calls=self.config.sip.max_calls)
            self.metrics.call_rejected("inbound", "busy")
            self._reject(sip, pj_call_id, 486)
            return
        agent_name = self._route(account, info.localUri)
        try:
            call = self._create(sip, info.callIdString, "inbound", agent_name, info.localUri, info.remoteUri)
        except PortsExhausted as exc:
            call_log.error("call_rejected_no_ports", error=str(exc))
            self.metrics.call_rejected("inbound", "no_ports")
            self._reject(sip, pj_call_id, 503)
            return
        call.log.info("call_incoming", remote=info.remoteUri, local=info.localUri, account=account.name,
                      agent=agent_name)
        answer_after = self.config.agents[agent_name].answer_after_s
        try:
            if answer_after > 0:
                self._answer(call, 180)
                self.stack.call_later(answer_after, lambda: self._answer_if_ringing(call))
            else:
                self._answer(call, 200)
        except pj.Error as exc:
            call.log.error("call_answer_failed", error=exc.info())
            self._teardown(call, 500, "answer_failed")

    def _route(self, account: GatewayAccount, local_uri: str) -> str:
        """The agent for an incoming call: the dialled number's route if there is one (several
        numbers can reach one account or the gateway directly), else the account's agent."""
        dialled = _uri_user(local_uri)
        return self.config.sip.routes.get(dialled, account.agent) if dialled else account.agent

    def outgoing(self, account: GatewayAccount, uri: str, agent_name: str,
                 variables: Mapping[str, str] | None = None) -> str:
        """Place a call to `uri` from `account` with agent `agent_name`; returns the Call-ID."""
        if self.draining:
            raise GatewayDraining("the gateway is draining: it places no new calls")
        sip = SipCall(account, self)
        ports = self.ports.allocate()
        try:
            sip.pending_ports = ports  # media_address() needs the port before makeCall returns
            prm = pj.CallOpParam(True)
            sip.makeCall(uri, prm)
        except BaseException:
            ports.close()
            raise
        info = sip.getInfo()
        call = self._create(sip, info.callIdString, "outbound", agent_name, info.localUri, uri, ports, variables)
        call.log.info("call_outgoing", remote=uri, account=account.name, agent=agent_name)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:  # failed inside makeCall
            self._teardown(call, info.lastStatusCode, f"failed: {info.lastReason}")
        return call.call_id

    def media_address(self, sip: SipCall) -> MediaAddress | None:
        """Where our RTP lives, for the SDP; None for a call being refused (it has no ports, and
        pjsua still builds an SDP for it: raising here left the call without its 486)."""
        call = self._find(sip)
        ports = call.ports if call is not None else getattr(sip, "pending_ports", None)
        if ports is None:
            return None
        return MediaAddress(self.config.sip.public_address, ports.rtp_port)

    def on_call_state(self, sip: SipCall, info: pj.CallInfo) -> None:
        call = self._find(sip)
        if call is None:
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                self._forget_rejected(info.id)
            return
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and not call.confirmed:
            call.confirmed = True
            call.log.info("call_confirmed", remote=info.remoteUri)
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            reason = call.end_reason or ("remote_bye" if call.confirmed else "not_answered")
            self._teardown(call, info.lastStatusCode, f"{reason}: {info.lastReason}")

    def on_media(self, sip: SipCall, media: NegotiatedMedia | None) -> None:
        call = self._find(sip)
        if call is None or call.ended:
            return
        if media is None:
            call.log.info("call_media_inactive")
            return
        try:
            codec = codec_by_name(media.codec)
        except (KeyError, ValueError):
            call.log.error("call_codec_unsupported", codec=media.codec)
            self._hangup(call, "codec_unsupported")
            return
        if media.srtp is None and self.config.rtp.srtp == "required":
            # pjsua refuses plain offers when SRTP is required; this guards the keys we read back.
            call.log.error("call_srtp_missing", hint="rtp.srtp is required but no SDES keys were agreed")
            self._hangup(call, "srtp_required")
            return
        call.session.configure(RemoteMedia(
            rtp_address=media.remote_rtp,
            rtcp_address=media.remote_rtcp,
            codec=codec,
            send_event_pt=media.tx_event_pt,
            receive_event_pt=media.rx_event_pt,
            send=media.send,
            receive=media.receive,
            srtp=media.srtp,
        ))
        call.log.info("call_media", codec=media.codec, status=media.status, send=media.send,
                      srtp=media.srtp.suite if media.srtp else None,
                      receive=media.receive, remote=f"{media.remote_rtp[0]}:{media.remote_rtp[1]}",
                      local_port=call.ports.rtp_port)
        if not call.media_started:
            call.media_started = True
            self.clock.add(call.session)
            call.agent.on_start()

    def on_media_failed(self, sip: SipCall, reason: str) -> None:
        call = self._find(sip)
        if call is not None and not call.ended:
            self._hangup(call, reason)

    def hangup_all(self, reason: str) -> None:
        for call in list(self._calls.values()):
            self._hangup(call, reason)

    def close_all(self) -> None:
        """Last resort at shutdown: release what is left without signalling."""
        for call in list(self._calls.values()):
            self._teardown(call, 0, call.end_reason or "shutdown")

    # -- internals -----------------------------------------------------------------------------

    def _create(self, sip: SipCall, call_id: str, direction: str, agent_name: str, local_uri: str,
                remote_uri: str, ports: PortPair | None = None,
                variables: Mapping[str, str] | None = None) -> ActiveCall:
        ports = ports or self.ports.allocate()
        call_log = log.bind(call_id=call_id)
        recorder = self._recorder(call_id, direction, remote_uri, agent_name)
        context = CallContext(
            call_id=call_id, direction=direction, local_uri=local_uri, remote_uri=remote_uri,
            agent_name=agent_name, hangup=lambda reason: self.hangup(call_id, reason),
            send_dtmf=lambda digits: self.send_dtmf(call_id, digits), log=call_log,
            transfer=lambda target, done: self.transfer(call_id, target, done),
            record=self._record_to(recorder),
            variables=dict(variables or {}),
        )
        try:
            agent = create_agent(self.config.agents[agent_name], context, self.services, self.config.memory.enabled)
            listener = _CallMedia(agent, lambda idle: self._inactive(call_id, idle), recorder)
            session = RtpSession(
                ports, listener,
                inactivity_timeout_s=self.config.rtp.inactivity_timeout_s,
                jitter_min_delay_ms=self.config.rtp.jitter_min_delay_ms,
                jitter_max_delay_ms=self.config.rtp.jitter_max_delay_ms,
                echo_canceller=_echo_canceller(agent),
                log=call_log,
            )
        except BaseException:
            ports.close()
            if recorder is not None:
                recorder.close()
            raise
        call = ActiveCall(sip=sip, call_id=call_id, direction=direction, agent_name=agent_name, ports=ports,
                          session=session, agent=agent, log=call_log, recorder=recorder, remote=remote_uri,
                          started_at=time.time())
        self.metrics.call_started(direction)
        sip.log = call_log
        sip.call_id = call_id
        self._calls[sip.getId()] = call
        limit = self.config.sip.max_call_duration_s
        if limit > 0:  # by Call-ID, not the call: a timer must not keep a pjsua2 Call alive for hours
            self.stack.call_later(limit, functools.partial(self._end_overlong, call_id, limit))
        return call

    def _end_overlong(self, call_id: str, limit: float) -> None:
        """A call on hold whose BYE was lost sends no RTP to time out on: this ends it all the same."""
        if any(c.call_id == call_id and not c.ended for c in self._calls.values()):
            log.warning("call_max_duration", call_id=call_id, limit_s=limit)
            self._hangup_by_id(call_id, "max_duration")

    def snapshot(self) -> list[dict[str, object]]:
        """The calls that are up, for the control API (SIP thread, or any thread for a rough view)."""
        return [{"call_id": c.call_id, "direction": c.direction, "agent": c.agent_name, "remote": c.remote,
                 "started_at": c.started_at, "state": "confirmed" if c.confirmed else "early"}
                for c in list(self._calls.values())]

    def _record_to(self, recorder: CallRecorder | None) -> Callable[..., None]:
        """The agent's `record`: the call's record file, and the metrics that come from turns."""
        metrics = self.metrics

        def record(kind: RecordKind, **fields: object) -> None:
            if recorder is not None:
                recorder.event(str(kind), **fields)
            match kind:
                case RecordKind.TURN if isinstance(fields.get("stages"), dict) and not fields.get("cancelled"):
                    stages = fields["stages"]
                    metrics.turn(stages)
                    if stages.get("first_rtp_ms") is not None:
                        metrics.voice_to_voice(stages["first_rtp_ms"] / 1000)
                case RecordKind.BARGE_IN:
                    metrics.barge_in()
                case RecordKind.TOOL_CALL:
                    metrics.tool_call(str(fields.get("tool")), bool(fields.get("ok")))
                case RecordKind.MODEL_ERROR:
                    metrics.model_error(str(fields.get("role", "unknown")))

        return record

    def _recorder(self, call_id: str, direction: str, remote: str, agent: str) -> CallRecorder | None:
        settings = self.config.recording
        if settings.directory is None:
            return None
        sink = self.call_events.put if self.call_events is not None else None
        recorder = CallRecorder(Path(settings.directory), call_id, settings.audio, sink=sink)
        recorder.event("call_start", call_id=call_id, direction=direction, remote=remote, agent=agent)
        return recorder

    def _answer(self, call: ActiveCall, code: int) -> None:
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        call.sip.answer(prm)

    def _answer_if_ringing(self, call: ActiveCall) -> None:
        if call.ended or call.confirmed:
            return
        try:
            self._answer(call, 200)
        except pj.Error as exc:
            call.log.error("call_answer_failed", error=exc.info())
            self._hangup(call, "answer_failed")

    def _reject(self, sip: SipCall, pj_call_id: int, code: int) -> None:
        self._rejected[pj_call_id] = sip
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        try:
            sip.answer(prm)
        except pj.Error as exc:
            log.warning("call_reject_failed", code=code, error=exc.info())

    def _forget_rejected(self, pj_call_id: int) -> None:
        sip = self._rejected.pop(pj_call_id, None)
        if sip is not None:
            self.stack.call_later(0, lambda: _drop(sip))

    def _find(self, sip: SipCall) -> ActiveCall | None:
        call = self._calls.get(sip.getId())
        return call if call is not None and call.sip is sip else None

    def _hangup_by_id(self, call_id: str, reason: str) -> None:
        for call in list(self._calls.values()):
            if call.call_id == call_id:
                self._hangup(call, reason)
                return

    def _hangup(self, call: ActiveCall, reason: str) -> None:
        if call.ended:
            return
        call.end_reason = call.end_reason or reason
        call.log.info("call_hangup", reason=reason)
        try:
            call.sip.hangup(pj.CallOpParam(True))
        except pj.Error as exc:  # the dialog is already gone: release locally
            call.log.warning("call_hangup_failed", error=exc.info())
            self._teardown(call, 0, reason)

    def _transfer(self, call_id: str, target: str, on_result: Callable[[bool, str], None]) -> None:
        call = next((c for c in self._calls.values() if c.call_id == call_id), None)
        if call is None or call.ended:
            on_result(False, "the call has ended")
            return
        if call.transfer is not None and not call.transfer.done:
            on_result(False, "a transfer is already in progress")
            return
        call.transfer = transfer = _Transfer(target, on_result)
        call.log.info("transfer_started", target=target)
        try:
            call.sip.xfer(target, pj.CallOpParam(True))
        except pj.Error as exc:
            call.log.warning("transfer_failed", target=target, error=exc.info())
            transfer.finish(False, exc.reason or "REFER could not be sent")
            return
        self.stack.call_later(TRANSFER_TIMEOUT_S, lambda: self._transfer_timeout(call, transfer))

    def on_transfer_status(self, sip: SipCall, code: int, reason: str, final: bool) -> None:
        call = self._find(sip)
        transfer = call.transfer if call is not None else None
        if call is None or transfer is None or transfer.done:
            return
        call.log.info("transfer_status", target=transfer.target, code=code, reason=reason, final=final)
        if code == 202:
            transfer.accepted = True
        if not final:
            return
        if 200 <= code < 300:
            transfer.finish(True, f"{code} {reason}")
            self._hangup(call, "transferred")
        else:
            transfer.finish(False, f"{code} {reason}")

    def _transfer_timeout(self, call: ActiveCall, transfer: _Transfer) -> None:
        if transfer.done or call.ended:
            return
        call.log.warning("transfer_timeout", target=transfer.target, accepted=transfer.accepted)
        transfer.finish(False, "no answer from the transfer target")

    def _inactive(self, call_id: str, idle_s: float) -> None:
        self.hangup(call_id, f"rtp_timeout after {idle_s:.1f}s")

    def _teardown(self, call: ActiveCall, code: int, reason: str) -> None:
        if call.ended:
            return
        call.ended = True
        for key, value in list(self._calls.items()):
            if value is call:
                del self._calls[key]
        session = call.session
        ports = self.ports

        def release() -> None:  # on the media clock thread, once no tick uses the session
            session.close()
            call.log.info("rtp_released", port=call.ports.rtp_port, ports_in_use=ports.in_use)

        self.clock.remove(session, then=release)
        if call.transfer is not None and call.transfer.accepted and not call.transfer.done:
            call.transfer.finish(True, "the transferee left the call")  # a PBX may BYE before the last NOTIFY
        try:
            call.agent.on_stop()
        except Exception:
            call.log.exception("agent_stop_failed")
        stats = session.snapshot()
        self.metrics.call_ended(call.direction, _outcome(reason))
        jitter = stats.jitter or {}
        self.metrics.jitter(float(jitter.get("target_delay_ms", 0.0)), int(jitter.get("lost", 0)),
                            int(jitter.get("concealed", 0)), int(jitter.get("late", 0)))
        self.metrics.security_event("srtp_rejected", stats.srtp_rejected)  # forged or replayed media
        call.log.info(
            "call_ended", code=code, reason=reason, duration_s=round(time.monotonic() - call.created_at, 2),
            rtp_sent=stats.packets_sent, rtp_received=stats.packets_received, malformed=stats.malformed,
            foreign_dropped=stats.foreign_dropped, srtp_rejected=stats.srtp_rejected, jitter=stats.jitter,
            reception=stats.reception,
        )
        if call.recorder is not None:
            call.recorder.event("call_end", reason=reason, code=code,
                                duration_s=round(time.monotonic() - call.created_at, 2))
            call.recorder.close()
        for callback in self._ended:
            try:
                callback(call, code, reason)
            except Exception:
                call.log.exception("call_end_callback_failed")
        sip = call.sip
        self.stack.call_later(0, lambda: _drop(sip))  # pjsua2: never delete a Call inside its own callback


def _outcome(reason: str) -> str:
    """A bounded label for the calls metric from a free-text end reason ("remote_bye: Normal call clearing")."""
    head = reason.split(":", 1)[0].split(" ", 1)[0]
    known = ("remote_bye", "goodbye", "caller_silent", "caller_goodbye", "transferred", "shutdown", "not_answered",
             "rtp_timeout", "media_error", "answer_failed", "codec_unsupported", "failed", "tool_hangup",
             "dtmf_hangup", "api", "srtp_required", "srtp_unusable", "max_duration")
    return head if head in known else "other"


def _uri_user(uri: str) -> str:
    """The user part of a SIP URI in a header value: `"Bob" <sip:2000@pbx;x=y>` -> `2000`."""
    inner = uri[uri.find("<") + 1: uri.rfind(">")] if "<" in uri else uri
    inner = inner.split(":", 1)[1] if ":" in inner else inner
    return inner.split("@", 1)[0].split(";", 1)[0] if "@" in inner else ""


def _drop(sip: SipCall) -> None:
    """Release our last reference to a finished pjsua2 call object."""
    del sip


def _echo_canceller(agent: Agent):
    if not agent.uses_echo_canceller:
        return None
    from rtp.echo import create_echo_canceller

    return create_echo_canceller(8000)
