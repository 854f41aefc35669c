"""The outcome of an ended call, as GatewayOperations keeps it for whoever placed the call."""

from __future__ import annotations

from types import SimpleNamespace

from gateway.calls.outcome import CallOutcome
from gateway.operations import EndedCall, GatewayOperations


def test_ended_call_keeps_the_outcome():
    callbacks = []
    calls = SimpleNamespace(on_ended=callbacks.append, metrics=SimpleNamespace(on_collect=lambda f: None))
    ops = GatewayOperations(SimpleNamespace(calls=calls))  # type: ignore[arg-type]
    assert ops.ended_call("a") is None and not ops.wait_ended("a", 0)
    callbacks[0](SimpleNamespace(call_id="a", confirmed=False), 486, "busy: Busy Here")
    callbacks[0](SimpleNamespace(call_id="b", confirmed=True), 200, "remote_bye: Normal call clearing")
    assert ops.wait_ended("a", 0)
    assert ops.ended_call("a") == EndedCall("a", CallOutcome.BUSY, 486, "busy: Busy Here", False)
    assert ops.ended_call("b").outcome is CallOutcome.REMOTE_BYE
