"""The small pieces the call manager is made of: admission order, message integrity, outcomes, transfer."""

from __future__ import annotations

import pytest

from gateway.calls.admission import Admission
from gateway.calls.outcome import CallOutcome
from gateway.calls.transfer import Transfer, TransferState
from gateway.sip.account import IncomingInvite
from gateway.sip.guard import SourceGuard
from gateway.sip.limits import MAX_MESSAGE_BYTES, Integrity, integrity

INVITE_HEAD = b"INVITE sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.9;branch=z9hG4bK1\r\nCall-ID: 1@x\r\n"


def _message(body: bytes, declared: int | None, pad: int = 0, compact: bool = False) -> bytes:
    head = INVITE_HEAD + (b"X-Pad: " + b"a" * pad + b"\r\n" if pad else b"")
    if declared is not None:
        head += (b"l: " if compact else b"Content-Length: ") + str(declared).encode() + b"\r\n"
    return head + b"\r\n" + body


@pytest.mark.parametrize(("message", "expected"), [
    (_message(b"v=0\r\n", 5), Integrity.WHOLE),
    (_message(b"", 0), Integrity.WHOLE),
    (_message(b"", None), Integrity.WHOLE),
    (_message(b"v=0\r\n", 9999), Integrity.BODY_SHORT),
    (_message(b"v=0\r\n", 9999, compact=True), Integrity.BODY_SHORT),
    (_message(b"", 120), Integrity.BODY_SHORT),  # an SDP cut off entirely: not a late offer
    (_message(b"v=0\r\n", 5, pad=MAX_MESSAGE_BYTES), Integrity.TOO_LARGE),
    (_message(b"", None, pad=MAX_MESSAGE_BYTES)[:MAX_MESSAGE_BYTES], Integrity.TOO_LARGE),  # cut mid-header
])
def test_integrity_tells_a_request_pjsip_received_cut_short(message: bytes, expected: Integrity) -> None:
    assert integrity(message) is expected


def test_integrity_responses() -> None:
    assert (Integrity.WHOLE.response, Integrity.TOO_LARGE.response, Integrity.BODY_SHORT.response) == (0, 513, 400)


def _invite(source: str, judged: Integrity = Integrity.WHOLE) -> IncomingInvite:
    return IncomingInvite(pj_call_id=0, source=source, integrity=judged)


def test_admission_answers_an_untrusted_source_403_whatever_else_is_wrong() -> None:
    admission = Admission(SourceGuard(["127.0.0.1/32"]), max_calls=1)
    refusal = admission.check(_invite("127.0.0.9:5060", Integrity.TOO_LARGE), active=1, draining=True)
    assert refusal is not None
    assert (refusal.code, refusal.kind, refusal.security_event) == (403, "untrusted_source", True)


def test_admission_order_for_a_trusted_source() -> None:
    admission = Admission(SourceGuard(["127.0.0.1/32"]), max_calls=1)
    ok = "127.0.0.1:5060"
    assert admission.check(_invite(ok, Integrity.TOO_LARGE), active=1, draining=True).code == 513
    assert admission.check(_invite(ok, Integrity.BODY_SHORT), active=1, draining=True).code == 400
    assert admission.check(_invite(ok), active=1, draining=True).kind == "draining"
    assert admission.check(_invite(ok), active=1, draining=False).code == 486
    assert admission.check(_invite(ok), active=0, draining=False) is None


def test_admission_rate_limit_comes_before_the_message_checks() -> None:
    clock = [0.0]
    admission = Admission(SourceGuard([], invites_per_s=1.0, burst=1, clock=lambda: clock[0]), max_calls=5)
    assert admission.check(_invite("10.0.0.1:5060"), active=0, draining=False) is None
    refusal = admission.check(_invite("10.0.0.1:5060", Integrity.TOO_LARGE), active=0, draining=False)
    assert refusal is not None and (refusal.code, refusal.kind) == (503, "rate_limited")


@pytest.mark.parametrize(("reason", "outcome"), [
    ("remote_bye: Normal call clearing", CallOutcome.REMOTE_BYE),
    ("rtp_timeout after 30.2s", CallOutcome.RTP_TIMEOUT),
    ("failed: Not Found", CallOutcome.FAILED),
    ("admission_failed", CallOutcome.ADMISSION_FAILED),
    ("something new", CallOutcome.OTHER),
    ("", CallOutcome.OTHER),
])
def test_outcome_of_a_free_text_reason(reason: str, outcome: CallOutcome) -> None:
    assert CallOutcome.of(reason) is outcome


def _transfer() -> tuple[Transfer, list[tuple[bool, str]]]:
    results: list[tuple[bool, str]] = []
    return Transfer("sip:2003@pbx", lambda ok, detail: results.append((ok, detail))), results


def test_transfer_accepted_then_answered_succeeds_once() -> None:
    transfer, results = _transfer()
    assert transfer.on_status(202, "Accepted", final=False) is TransferState.ACCEPTED
    assert transfer.on_status(100, "Trying", final=False) is TransferState.ACCEPTED
    assert transfer.on_status(200, "OK", final=True) is TransferState.SUCCEEDED
    assert transfer.on_status(486, "Busy", final=True) is TransferState.SUCCEEDED  # after the end: ignored
    assert results == [(True, "200 OK")]


def test_transfer_refused_or_declined_fails() -> None:
    transfer, results = _transfer()
    assert transfer.on_status(603, "Decline", final=True) is TransferState.FAILED
    assert results == [(False, "603 Decline")]


def test_a_call_that_ends_after_the_refer_was_accepted_counts_as_transferred() -> None:
    transfer, results = _transfer()
    transfer.call_ended()  # not yet accepted: no outcome from this
    assert results == [] and transfer.state is TransferState.REQUESTED
    transfer.on_status(202, "Accepted", final=False)
    transfer.call_ended()
    assert results == [(True, "the transferee left the call")]


def test_pjsuas_provisional_100_accepted_counts_as_accepted() -> None:
    # pjsua reports the REFER's 202 to onCallTransferStatus as "100 Accepted", not final
    transfer, results = _transfer()
    assert transfer.on_status(100, "Accepted", final=False) is TransferState.ACCEPTED
    transfer.call_ended()
    assert results == [(True, "the transferee left the call")]
