"""The largest SIP message the gateway takes, and telling a request that pjsip received cut short.

pjsip, as built into the pjsua2 wheel, receives every message into a fixed buffer of
``PJSIP_MAX_PKT_LEN`` = 4,000 bytes. A longer UDP datagram is not refused: ``recvfrom`` cuts it
at 4,000 bytes and pjsip parses what is left as if it were the whole message. An INVITE whose
SDP fell off the end then reads as a late offer (an INVITE without SDP), which is a different
request from the one that was sent. RFC 3261 section 18.3 says a datagram request whose body is
shorter than its Content-Length is an error; pjsip does not check it, so the gateway does, on
every INVITE it is offered: one cut at the buffer's size is answered 513 (Message Too Large),
one whose Content-Length runs past the datagram 400 (Bad Request). Over TCP/TLS pjsip itself
drops a message larger than its buffer. docs/operations.md states the limit for operators.
"""

from __future__ import annotations

import enum

MAX_MESSAGE_BYTES = 4000  # PJSIP_MAX_PKT_LEN in the pjsua2 2.15.1 wheel


class Integrity(enum.Enum):
    """How a received request relates to what was sent."""

    WHOLE = "whole"
    TOO_LARGE = "too_large"  # it filled pjsip's buffer: the datagram was longer and was cut
    BODY_SHORT = "body_short"  # its Content-Length promises more body than arrived

    @property
    def response(self) -> int:
        """The SIP response for a request in this state (0: none, take it)."""
        return {Integrity.WHOLE: 0, Integrity.TOO_LARGE: 513, Integrity.BODY_SHORT: 400}[self]


def integrity(message: bytes) -> Integrity:
    """Judge the message pjsip handed us (header and body as received)."""
    if len(message) >= MAX_MESSAGE_BYTES:
        return Integrity.TOO_LARGE
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = message.partition(b"\n\n")
    declared = _content_length(head)
    if declared is not None and declared > len(body):
        return Integrity.BODY_SHORT
    return Integrity.WHOLE


def _content_length(head: bytes) -> int | None:
    for line in head.splitlines()[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            try:
                return int(value.strip())
            except ValueError:
                return None  # pjsip refuses an unparsable Content-Length before we see it
    return None
