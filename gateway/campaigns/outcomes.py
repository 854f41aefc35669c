"""What one campaign attempt came to, from what the call left behind.

A campaign decides per attempt whether to try the contact again, so the call's end (a
`CallOutcome`, the SIP status code, whether it was answered) and the answering-machine verdict
are folded into one small `AttemptOutcome`.  The call-progress outcomes (BUSY, NO_ANSWER,
REJECTED, UNREACHABLE) may or may not exist in `CallOutcome` yet, so the mapping goes by the
outcome's *value* and falls back on the SIP status code; anything it does not recognise is
OTHER, which is never retried: redialling someone who may already have been reached is worse
than missing a retry.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.calls.outcome import CallOutcome


class AttemptOutcome(enum.StrEnum):
    ANSWERED = "answered"  # a person (or an unknown answerer) took the call
    MACHINE = "machine"  # answered by an answering machine (the AMD verdict)
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"  # declined by the callee (603, 403)
    UNREACHABLE = "unreachable"  # no such number, no route, service unavailable
    FAILED = "failed"  # the call broke on our side or in the middle (media, codec, SRTP)
    INVALID = "invalid"  # the gateway refused to place it (bad number, unknown agent)
    DO_NOT_CALL = "do_not_call"  # on the do-not-call list when its turn came: never dialled
    STOPPED = "stopped"  # hung up by the operator or the gateway's shutdown
    INTERRUPTED = "interrupted"  # up when the gateway's process ended: its end was never seen (found at resume)
    OTHER = "other"


#: the outcomes a campaign's retry policy may name
RETRYABLE = frozenset({
    AttemptOutcome.BUSY, AttemptOutcome.NO_ANSWER, AttemptOutcome.REJECTED, AttemptOutcome.UNREACHABLE,
    AttemptOutcome.FAILED, AttemptOutcome.MACHINE, AttemptOutcome.INTERRUPTED,
})


class AmdVerdict(enum.StrEnum):
    HUMAN = "human"
    MACHINE = "machine"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> AmdVerdict | None:
        """A verdict from whatever the call carries (an enum, a string), None if there is none."""
        if value is None:
            return None
        text = str(getattr(value, "value", value)).strip().lower()
        try:
            return cls(text)
        except ValueError:
            return cls.UNKNOWN if text else None


@dataclass(frozen=True, slots=True)
class EndedCall:
    """What an ended call left that a campaign needs; built on the SIP thread, read by the campaign's."""

    call_id: str
    code: int  # the last SIP status code (486 busy, 0 for a local hang-up)
    reason: str  # the free-text end reason ("not_answered: Busy Here")
    answered: bool
    duration_s: float
    amd: AmdVerdict | None = None
    record: str | None = None  # the call record's JSONL path, when recording is on

    @property
    def call_outcome(self) -> CallOutcome:
        from gateway.calls.outcome import CallOutcome  # here: gateway.calls imports the config, which imports us

        return CallOutcome.of(self.reason)


_BY_VALUE = {  # CallOutcome values, present or to come, that say what happened on their own
    "busy": AttemptOutcome.BUSY,
    "no_answer": AttemptOutcome.NO_ANSWER,
    "rejected": AttemptOutcome.REJECTED,
    "unreachable": AttemptOutcome.UNREACHABLE,
    "media_error": AttemptOutcome.FAILED,
    "answer_failed": AttemptOutcome.FAILED,
    "admission_failed": AttemptOutcome.FAILED,
    "codec_unsupported": AttemptOutcome.FAILED,
    "srtp_required": AttemptOutcome.FAILED,
    "srtp_unusable": AttemptOutcome.FAILED,
    "api": AttemptOutcome.STOPPED,
    "shutdown": AttemptOutcome.STOPPED,
}
_BUSY_CODES = frozenset({486, 600})
_NO_ANSWER_CODES = frozenset({408, 480, 487})
_REJECTED_CODES = frozenset({403, 603, 607})
_UNREACHABLE_CODES = frozenset({404, 410, 484, 485, 502, 503, 504, 604})


def classify(call: EndedCall) -> AttemptOutcome:
    """One attempt's outcome: the AMD verdict for an answered call, else the end reason, else the code."""
    if call.answered:
        return AttemptOutcome.MACHINE if call.amd is AmdVerdict.MACHINE else AttemptOutcome.ANSWERED
    outcome = call.call_outcome.value
    if outcome in _BY_VALUE:
        return _BY_VALUE[outcome]
    if outcome in ("not_answered", "failed", "other"):  # the SIP status code says more
        return _by_code(call.code, outcome)
    return AttemptOutcome.OTHER


def _by_code(code: int, outcome: str) -> AttemptOutcome:
    if code in _BUSY_CODES:
        return AttemptOutcome.BUSY
    if code in _NO_ANSWER_CODES:
        return AttemptOutcome.NO_ANSWER
    if code in _REJECTED_CODES:
        return AttemptOutcome.REJECTED
    if code in _UNREACHABLE_CODES:
        return AttemptOutcome.UNREACHABLE
    if outcome == "failed" or 500 <= code < 700:
        return AttemptOutcome.FAILED
    return AttemptOutcome.OTHER
