"""Reading keypresses out of SIP INFO requests (gateway.sip.info_dtmf)."""

from __future__ import annotations

import pytest

from gateway.sip.info_dtmf import InfoDtmf, InfoDtmfRejected, read_info_dtmf


def info(content_type: str | None, body: str, cseq: int = 7, method: str = "INFO") -> str:
    headers = [f"{method} sip:voicegate@127.0.0.1 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx",
               f"CSeq: {cseq} {method}"]
    if content_type is not None:
        headers.append(f"Content-Type: {content_type}")
    return "\r\n".join(headers) + f"\r\nContent-Length: {len(body)}\r\n\r\n" + body


@pytest.mark.parametrize(("content_type", "body", "digit", "duration"), [
    ("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", "5", 160),
    ("application/dtmf-relay", "Signal= #\nDuration= 250", "#", 250),  # bare LF, spaces
    ("Application/DTMF-Relay; charset=utf-8", "signal=*\r\n", "*", None),
    ("application/dtmf-relay", "Signal=10\r\nDuration=100\r\n", "*", 100),  # Cisco's 10/11
    ("application/dtmf-relay", "Signal=11\r\n", "#", None),
    ("application/dtmf-relay", "Signal=d\r\n", "D", None),
    ("application/dtmf", "7", "7", None),
    ("application/dtmf", " 9\r\n", "9", None),
])
def test_dtmf_bodies_give_the_key(content_type, body, digit, duration):
    assert read_info_dtmf(info(content_type, body)) == InfoDtmf(digit, duration, 7,
                                                                content_type.split(";")[0].lower())


@pytest.mark.parametrize(("content_type", "body", "reason"), [
    ("application/dtmf-relay", "Duration=160\r\n", "no Signal"),
    ("application/dtmf-relay", "Signal=Z\r\n", "not a DTMF key"),
    ("application/dtmf-relay", "Signal=55\r\n", "not a DTMF key"),
    ("application/dtmf-relay", "Signal=5\r\nDuration=-3\r\n", "milliseconds"),
    ("application/dtmf-relay", "Signal=5\r\nDuration=99999999\r\n", "milliseconds"),
    ("application/dtmf", "", "not one DTMF key"),
    ("application/dtmf", "12", "not one DTMF key"),
])
def test_bad_dtmf_bodies_are_rejected_with_a_reason(content_type, body, reason):
    result = read_info_dtmf(info(content_type, body))
    assert isinstance(result, InfoDtmfRejected) and reason in result.reason and result.cseq == 7


@pytest.mark.parametrize("message", [
    info("application/media_control+xml", "<media_control/>"),
    info(None, ""),  # a keep-alive INFO
    info("application/dtmf-relay", "Signal=5", method="MESSAGE"),
    "",
    "garbage",
])
def test_what_is_not_dtmf_info_is_none(message):
    assert read_info_dtmf(message) is None


def test_compact_content_type_and_odd_cseq():
    assert read_info_dtmf(info(None, "Signal=3").replace("CSeq: 7 INFO", "CSeq: x INFO\r\nc: application/dtmf-relay")) \
        == InfoDtmf("3", None, 0, "application/dtmf-relay")
