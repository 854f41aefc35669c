"""DTMF carried in SIP INFO requests: reading the digit out of a received INFO.

Many PBXs (and SIP trunks set to "SIP INFO" DTMF mode) send keypresses as in-dialog INFO requests
instead of RFC 4733 events in the media. Two bodies are in use:

    Content-Type: application/dtmf-relay        Content-Type: application/dtmf
    Signal=5                                    5
    Duration=160

`Signal` is one of 0-9 * # A-D; Cisco-style senders also write 10 and 11 for * and #, which we
accept. `Duration` is in milliseconds and optional. An INFO with another content type (media
control, a keep-alive INFO without a body) is not DTMF and is ignored.

pjsua answers every in-dialog INFO with 200 before the application sees it (pjsua2 offers no way
to answer one ourselves), so a bad body cannot be refused with a 4xx: it is logged
(`dtmf_info_rejected`, with what was wrong) and the digit is dropped. That is also what RFC 6086
allows for a body the receiver cannot use, and it never ends the dialog.

The INFO's CSeq comes along so the call can give each digit to its agent exactly once: a
retransmission (same CSeq) is answered again by pjsip's transaction layer, and an out-of-order or
repeated CSeq must not press the key twice.
"""

from __future__ import annotations

from dataclasses import dataclass

_DIGITS = frozenset("0123456789*#ABCD")
_NUMERIC_SIGNALS = {"10": "*", "11": "#"}  # Cisco and some trunks: the RFC 4733 event numbers
MAX_DURATION_MS = 60_000


@dataclass(frozen=True)
class InfoDtmf:
    """A keypress read from an INFO request."""

    digit: str
    duration_ms: int | None
    cseq: int
    content_type: str  # "application/dtmf-relay" or "application/dtmf"


@dataclass(frozen=True)
class InfoDtmfRejected:
    """An INFO that claimed to carry DTMF but whose body we could not use (logged, digit dropped)."""

    reason: str
    cseq: int
    content_type: str
    body: str  # the first 80 characters, for the log


InfoResult = InfoDtmf | InfoDtmfRejected | None  # None: not an INFO, or not DTMF


def read_info_dtmf(message: str) -> InfoResult:
    """The DTMF a received SIP message carries, if it is an INFO with a DTMF body."""
    head, _, body = message.partition("\r\n\r\n")
    lines = head.split("\r\n")
    if not lines or not lines[0].startswith("INFO "):
        return None
    content_type, cseq = "", 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name in ("content-type", "c"):
            content_type = value.split(";", 1)[0].strip().lower()
        elif name == "cseq":
            number = value.strip().split(" ", 1)[0]
            cseq = int(number) if number.isdigit() else 0
    if content_type == "application/dtmf-relay":
        return _relay(body, cseq, content_type)
    if content_type == "application/dtmf":
        return _plain(body, cseq, content_type)
    return None


def _relay(body: str, cseq: int, content_type: str) -> InfoDtmf | InfoDtmfRejected:
    fields: dict[str, str] = {}
    for line in body.replace("\r\n", "\n").split("\n"):
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    if "signal" not in fields:
        return InfoDtmfRejected("no Signal= line", cseq, content_type, body[:80])
    digit = _digit(fields["signal"])
    if digit is None:
        return InfoDtmfRejected(f"Signal {fields['signal'][:10]!r} is not a DTMF key", cseq, content_type, body[:80])
    duration: int | None = None
    raw_duration = fields.get("duration")
    if raw_duration is not None:
        if not raw_duration.isdigit() or int(raw_duration) > MAX_DURATION_MS:
            return InfoDtmfRejected(f"Duration {raw_duration[:10]!r} is not a number of milliseconds "
                                    f"up to {MAX_DURATION_MS}", cseq, content_type, body[:80])
        duration = int(raw_duration)
    return InfoDtmf(digit, duration, cseq, content_type)


def _plain(body: str, cseq: int, content_type: str) -> InfoDtmf | InfoDtmfRejected:
    digit = _digit(body.strip())
    if digit is None:
        return InfoDtmfRejected("the body is not one DTMF key", cseq, content_type, body[:80])
    return InfoDtmf(digit, None, cseq, content_type)


def _digit(text: str) -> str | None:
    text = text.strip().upper()
    if text in _NUMERIC_SIGNALS:
        return _NUMERIC_SIGNALS[text]
    return text if len(text) == 1 and text in _DIGITS else None
