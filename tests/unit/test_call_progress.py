"""How an unanswered outbound call's final status maps onto its outcome (gateway.calls.progress)."""

from __future__ import annotations

import pytest

from gateway.calls.outcome import CallOutcome
from gateway.calls.progress import ring_timeout_s, unanswered_outcome
from gateway.config import AccountConfig, HostPort, SipConfig


@pytest.mark.parametrize(("code", "outcome"), [
    (486, CallOutcome.BUSY), (600, CallOutcome.BUSY),
    (480, CallOutcome.NO_ANSWER), (487, CallOutcome.NO_ANSWER),
    (408, CallOutcome.UNREACHABLE), (500, CallOutcome.UNREACHABLE), (502, CallOutcome.UNREACHABLE),
    (503, CallOutcome.UNREACHABLE), (504, CallOutcome.UNREACHABLE), (0, CallOutcome.UNREACHABLE),
    (404, CallOutcome.UNREACHABLE), (484, CallOutcome.UNREACHABLE), (604, CallOutcome.UNREACHABLE),  # no such number
    (403, CallOutcome.REJECTED), (603, CallOutcome.REJECTED), (488, CallOutcome.REJECTED), (407, CallOutcome.REJECTED),
    (302, CallOutcome.REJECTED),
])
def test_final_status_to_outcome(code, outcome):
    assert unanswered_outcome(code) is outcome


@pytest.mark.parametrize("reason", ["busy: Busy Here", "no_answer: not answered within 30s: Request Terminated",
                                    "rejected: Decline", "unreachable: Request Timeout"])
def test_the_reason_strings_map_back_to_their_outcome(reason):
    assert CallOutcome.of(reason).value == reason.split(":")[0]


def test_the_account_ring_timeout_wins():
    sip = SipConfig(listen=HostPort("127.0.0.1", 5060), public_address="127.0.0.1", max_calls=1,
                    default_agent="a", ring_timeout_s=45)
    account = AccountConfig("2001", "pw", "sip:pbx", "pbx", "a")
    assert ring_timeout_s(None, sip) == 45
    assert ring_timeout_s(account, sip) == 45
    assert ring_timeout_s(AccountConfig("2001", "pw", "sip:pbx", "pbx", "a", ring_timeout_s=20), sip) == 20
