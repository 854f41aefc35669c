"""Building one call's parts: its record, agent, RTP session, and the `CallContext` the agent acts through.

Everything an agent may do to its call (hang up, send DTMF, transfer) goes through callbacks
that name the call by Call-ID, so no agent thread ever holds the call or its pjsua2 object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import structlog

from gateway.agents import Agent, CallContext, create_agent
from gateway.agents.handover import WarmTransferRequest
from gateway.calls.media import CallMedia, echo_canceller_for
from gateway.calls.reporting import AnsweredBy, CallReporting
from gateway.config import Config
from gateway.records import CallRecorder
from rtp.ports import PortPair
from rtp.session import RtpSession

if TYPE_CHECKING:
    from gateway.conversation.speech import ConversationServices


@dataclass(frozen=True)
class CallControls:
    """What the agent may do to its call, each a request handed to the SIP thread by Call-ID."""

    hangup: Callable[[str, str], None]  # (call_id, reason)
    send_dtmf: Callable[[str, str], None]  # (call_id, digits)
    transfer: Callable[[str, str, Callable[[bool, str], None]], None]  # (call_id, target, on_result)
    warm_transfer: Callable[[str, WarmTransferRequest, Callable[[bool, str], None]], None]  # (call_id, request, ...)
    hold: Callable[[str, np.ndarray | None], None]  # (call_id, 8 kHz loop or None)


@dataclass(frozen=True)
class CallParts:
    agent: Agent
    session: RtpSession
    recorder: CallRecorder | None
    media: CallMedia
    answered_by: AnsweredBy


def build_call_parts(config: Config, services: ConversationServices | None, reporting: CallReporting,
                     controls: CallControls, ports: PortPair, call_id: str, direction: str, agent_name: str,
                     local_uri: str, remote_uri: str, variables: Mapping[str, str] | None,
                     call_log: structlog.typing.FilteringBoundLogger, agent: Agent | None = None) -> CallParts:
    """The agent, session and recorder of a new call (`agent`: one made by the caller, e.g. a warm
    transfer's briefing leg); on failure nothing is left open (the ports stay the caller's to close)."""
    recorder = reporting.recorder(call_id, direction, remote_uri, agent_name)
    answered_by = AnsweredBy()
    context = CallContext(
        call_id=call_id, direction=direction, local_uri=local_uri, remote_uri=remote_uri,
        agent_name=agent_name, hangup=lambda reason: controls.hangup(call_id, reason),
        send_dtmf=lambda digits: controls.send_dtmf(call_id, digits), log=call_log,
        transfer=lambda target, done: controls.transfer(call_id, target, done),
        warm_transfer=lambda request, done: controls.warm_transfer(call_id, request, done),
        hold=lambda loop: controls.hold(call_id, loop),
        record=reporting.record_to(recorder, call_id, answered_by),
        variables=dict(variables or {}),
    )
    try:
        agent = agent or create_agent(config.agents[agent_name], context, services, config.memory.enabled)
        listener = CallMedia(agent, lambda idle: controls.hangup(call_id, f"rtp_timeout after {idle:.1f}s"), recorder,
                             answered=direction == "inbound")  # we answer inbound calls before media flows
        session = RtpSession(
            ports, listener,
            inactivity_timeout_s=config.rtp.inactivity_timeout_s,
            jitter_min_delay_ms=config.rtp.jitter_min_delay_ms,
            jitter_max_delay_ms=config.rtp.jitter_max_delay_ms,
            echo_canceller=echo_canceller_for(agent),
            log=call_log,
        )
    except BaseException:
        if recorder is not None:
            recorder.close()
        raise
    return CallParts(agent, session, recorder, listener, answered_by)
