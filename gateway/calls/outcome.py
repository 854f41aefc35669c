"""How a call ended, as a bounded set: the label of the calls metric and of call records.

The free-text end reason ("remote_bye: Normal call clearing", "rtp_timeout after 30.0s") stays
in the log and the call record for people; `CallOutcome.of()` maps it onto this enum for
anything that counts.

An outbound call that was never answered ends as one of the call-progress outcomes (see
`gateway.calls.progress` for the SIP responses behind each): BUSY, NO_ANSWER (it rang until the
ring timeout, or the far end gave up on it), REJECTED (declined, forbidden, no such number: not
worth retrying), UNREACHABLE (no route, no response, a server or transport failure: worth retrying
later). NOT_ANSWERED is an inbound call the caller gave up on before we answered.
"""

from __future__ import annotations

import enum


class CallOutcome(enum.StrEnum):
    REMOTE_BYE = "remote_bye"
    GOODBYE = "goodbye"
    CALLER_SILENT = "caller_silent"
    CALLER_GOODBYE = "caller_goodbye"
    TRANSFERRED = "transferred"
    SHUTDOWN = "shutdown"
    NOT_ANSWERED = "not_answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"
    RTP_TIMEOUT = "rtp_timeout"
    MEDIA_ERROR = "media_error"
    ANSWER_FAILED = "answer_failed"
    ADMISSION_FAILED = "admission_failed"
    CODEC_UNSUPPORTED = "codec_unsupported"
    FAILED = "failed"
    TOOL_HANGUP = "tool_hangup"
    DTMF_HANGUP = "dtmf_hangup"
    API = "api"
    SRTP_REQUIRED = "srtp_required"
    SRTP_UNUSABLE = "srtp_unusable"
    MAX_DURATION = "max_duration"
    OTHER = "other"

    @classmethod
    def of(cls, reason: str) -> CallOutcome:
        """The outcome a free-text reason starts with ("rtp_timeout after 31.2s" -> RTP_TIMEOUT)."""
        head = reason.split(":", 1)[0].split(" ", 1)[0]
        try:
            return cls(head)
        except ValueError:
            return cls.OTHER
