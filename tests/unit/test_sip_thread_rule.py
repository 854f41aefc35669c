"""Every pjsua2 object of ours is released on the SIP thread, and a release elsewhere is reported.

A real pjsua2 endpoint (SipStack on loopback). The call object used here has no pjsua call behind
it (PJSUA_INVALID_ID), so releasing it on the wrong thread is harmless to pjsua itself and the
test process survives to see the report; a call with a live id released there aborts the process
(issue 10: the media clock dropping the last reference to a finished call).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from structlog.testing import capture_logs

from gateway.sip.account import GatewayAccount
from gateway.sip.call import SipCall
from gateway.sip.stack import SipStack, StackSettings, _run_into
from tests.rig.ports import free_sip_port


@pytest.fixture
def stack() -> Iterator[tuple[SipStack, list[GatewayAccount]]]:
    """The stack and a list holding its one account: tests touch the account on the SIP thread only."""
    stack = SipStack(StackSettings("127.0.0.1", free_sip_port(), "127.0.0.1", max_calls=2))
    accounts: list[GatewayAccount] = []

    def started() -> None:
        accounts.append(GatewayAccount.local(stack, "front-desk", lambda account, invite: None))

    def shutdown() -> None:
        accounts[0].shutdown()
        accounts.clear()  # released here, on the SIP thread, before libDestroy

    stack.start(on_started=started, on_shutdown=shutdown)
    try:
        yield stack, accounts
    finally:
        stack.stop()


def _released_off_thread(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e["event"] == "pjsua2_released_off_sip_thread"]


def test_a_call_released_on_the_sip_thread_is_not_reported(stack) -> None:
    sip_stack, account = stack  # account[0] only inside work run on the SIP thread
    with capture_logs() as logs:
        sip_stack.submit(lambda: SipCall(account[0], events=None) and None).result(10)
    assert _released_off_thread(logs) == []


def test_a_call_released_on_another_thread_is_reported(stack) -> None:
    sip_stack, account = stack  # account[0] only inside work run on the SIP thread
    with capture_logs() as logs:
        call = sip_stack.submit(lambda: SipCall(account[0], events=None)).result(10)  # handed out: wrong
        del call
    [report] = _released_off_thread(logs)
    assert report["object"].startswith("call") and report["thread"] == "MainThread"
    assert report["log_level"] == "error"


def test_a_failed_work_item_hands_its_exception_over_without_its_locals() -> None:
    """An exception crossing threads through a Future would take its frames' locals along (a
    half-made pjsua2 Call, say), to be released on the caller's thread."""

    def fails() -> None:
        half_made = object()  # noqa: F841 - the local is the point
        raise RuntimeError("after making something")

    future: Future = Future()
    _run_into(fails, future)
    error = future.exception(0)
    assert isinstance(error, RuntimeError)
    frames = [frame for frame, _ in traceback.walk_tb(error.__traceback__)]
    assert frames[-1].f_code.co_name == "fails" and frames[-1].f_locals == {}
