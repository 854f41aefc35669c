"""The gateway as the control API and the metrics see it (gateway/http_api.py's GatewayControl).

Everything here is called from HTTP worker threads: it reads snapshots and hands work to the
SIP thread through the gateway's own thread-safe entry points, never touching pjsua2 directly.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING

from gateway.campaigns.outcomes import AmdVerdict, EndedCall

if TYPE_CHECKING:
    from gateway.app import Gateway

_ORIGINATE_TIMEOUT_S = 10.0
_ENDED_KEPT = 10000


class GatewayOperations:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self._ended: OrderedDict[str, EndedCall] = OrderedDict()
        self._cond = threading.Condition()
        gateway.calls.on_ended(self._call_ended)
        gateway.calls.metrics.on_collect(self._collect_registrations)

    def list_calls(self) -> list[dict[str, object]]:
        return self.gateway.calls.snapshot()

    def hangup(self, call_id: str) -> bool:
        if not any(c["call_id"] == call_id for c in self.gateway.calls.snapshot()):
            return False
        self.gateway.calls.commands.hangup(call_id, "api")
        return True

    def originate(self, to: str, agent: str | None, variables: Mapping[str, str], account: str | None) -> str:
        config = self.gateway.config
        if agent is not None and agent not in config.agents:
            raise ValueError(f"unknown agent {agent!r} (agents: {', '.join(config.agents)})")
        if not to or any(c.isspace() for c in to):
            raise ValueError(f"{to!r} is not a number or SIP URI")
        bad = [k for k in variables if not str(k).isidentifier()]
        if bad:
            raise ValueError(f"variable names must be identifiers: {bad}")
        future = self.gateway.originate(to, account=account, agent=agent,
                                        variables={str(k): str(v) for k, v in variables.items()})
        try:
            return str(future.result(timeout=_ORIGINATE_TIMEOUT_S))
        except (ValueError, KeyError) as exc:
            raise ValueError(str(exc)) from None
        except Exception as exc:  # pjsua2 refused the call (bad URI, no account): the caller's input
            raise ValueError(f"could not place the call: {getattr(exc, 'reason', None) or exc}") from None

    def wait_ended(self, call_id: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: call_id in self._ended, timeout)

    def ended_call(self, call_id: str) -> EndedCall | None:
        with self._cond:
            return self._ended.get(call_id)

    def readiness(self) -> dict[str, object]:
        gw = self.gateway
        models_loaded = gw.services is not None or not gw.config.needs_models
        registrations = {a.name: _state(a) for a in list(gw.accounts)}
        draining = gw.calls.draining
        servers = gw.services.models.unreachable_servers() if gw.services is not None else {}
        ready = (models_loaded and gw.started.is_set() and not draining and not servers
                 and all(s == "registered" for s in registrations.values()))
        return {"ready": ready, "models_loaded": models_loaded, "model_servers": servers,
                "registrations": registrations, "active_calls": gw.calls.active_count, "draining": draining}

    def drain(self) -> int:
        self.gateway.drain()
        return self.gateway.calls.active_count

    @property
    def draining(self) -> bool:
        return self.gateway.calls.draining

    def _call_ended(self, call, code: int, reason: str) -> None:
        recorder = call.recorder
        ended = EndedCall(
            call.call_id, code, reason, call.confirmed, round(time.monotonic() - call.created_at, 2),
            # the answering-machine verdict an outbound call's agent recorded (None: none made)
            AmdVerdict.parse(call.amd_verdict),
            str(recorder.paths.jsonl) if recorder is not None else None,
        )
        with self._cond:
            self._ended[call.call_id] = ended
            while len(self._ended) > _ENDED_KEPT:
                self._ended.popitem(last=False)
            self._cond.notify_all()

    def _collect_registrations(self) -> None:
        for account in list(self.gateway.accounts):
            self.gateway.calls.metrics.registration_state(account.name, _state(account))


def _state(account) -> str:
    st = account.state
    if st.registered:
        return "registered"
    return "failed" if st.failures else "unregistered"
