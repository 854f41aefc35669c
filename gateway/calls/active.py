"""The calls that are up, and the registry the SIP thread keeps them in.

`ActiveCall` is shared with other threads (end-of-call callbacks, the control API's snapshot), so
it lets go of its pjsua2 object at teardown on the SIP thread (see gateway/sip/stack.py for why).
The registry is the SIP thread's own: keyed by Call-ID for everything that names a call from
outside (API, agents, timers), and by pjsua's call index for pjsua's callbacks; it also keeps the
pjsua2 objects of refused calls alive until pjsua reports them ended.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog

from gateway.agents import Agent
from gateway.calls.media import CallMedia
from gateway.calls.reporting import AnsweredBy
from gateway.calls.transfer import Transfer
from gateway.records import CallRecorder
from gateway.sip.call import SipCall
from rtp.ports import PortPair
from rtp.session import RtpSession


@dataclass
class ActiveCall:
    """One call that got past admission, from adoption to teardown."""

    sip: SipCall | None  # None once torn down: whoever keeps the ActiveCall keeps no pjsua2 object
    call_id: str
    direction: str
    agent_name: str
    ports: PortPair
    session: RtpSession
    agent: Agent
    log: structlog.typing.FilteringBoundLogger
    created_at: float = field(default_factory=time.monotonic)
    media_started: bool = False
    agent_started: bool = False  # at first media inbound; at answer outbound (not on early media)
    confirmed: bool = False
    end_reason: str | None = None
    ended: bool = False
    transfer: Transfer | None = None
    recorder: CallRecorder | None = None
    remote: str = ""
    started_at: float = 0.0  # Unix time
    media: CallMedia | None = None  # the session's listener: where SIP INFO keypresses go in
    info_cseq: int = 0  # CSeq of the last SIP INFO keypress given to the agent (each one once)
    answered_by: AnsweredBy | None = None  # the AMD verdict of an outbound call, as its agent recorded it

    @property
    def amd_verdict(self) -> str | None:
        return self.answered_by.verdict if self.answered_by is not None else None


class CallRegistry:
    """SIP thread only, except `__len__` and `snapshot_calls()` (a rough view for other threads)."""

    def __init__(self) -> None:
        self._by_id: dict[str, ActiveCall] = {}
        self._by_index: dict[int, ActiveCall] = {}  # pjsua call index -> call
        self._refused: dict[int, SipCall] = {}  # pjsua call index -> object of a call being refused

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[ActiveCall]:
        return iter(list(self._by_id.values()))

    def add(self, call: ActiveCall, pj_index: int) -> None:
        self._by_id[call.call_id] = call
        self._by_index[pj_index] = call

    def remove(self, call: ActiveCall) -> None:
        if self._by_id.get(call.call_id) is call:
            del self._by_id[call.call_id]
        for index, value in list(self._by_index.items()):
            if value is call:
                del self._by_index[index]

    def get(self, call_id: str) -> ActiveCall | None:
        return self._by_id.get(call_id)

    def of(self, sip: SipCall) -> ActiveCall | None:
        """The call a pjsua2 callback is about (None: a refused call, or one already torn down)."""
        call = self._by_index.get(sip.getId())
        return call if call is not None and call.sip is sip else None

    def with_session(self, session: RtpSession) -> ActiveCall | None:
        return next((c for c in self._by_id.values() if c.session is session), None)

    def snapshot_calls(self) -> list[ActiveCall]:
        return list(self._by_id.values())

    # -- calls being refused -------------------------------------------------------------------

    def hold_refused(self, pj_index: int, sip: SipCall) -> None:
        self._refused[pj_index] = sip

    def is_refused(self, pj_index: int, sip: SipCall) -> bool:
        return self._refused.get(pj_index) is sip

    def release_refused(self, pj_index: int) -> SipCall | None:
        return self._refused.pop(pj_index, None)

    def release_all_refused(self) -> list[SipCall]:
        """At shutdown: every refused call pjsua has not ended yet (their objects must go before libDestroy)."""
        refused, self._refused = list(self._refused.values()), {}
        return refused
