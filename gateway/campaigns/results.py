"""Results per contact: every attempt (call, outcome, AMD verdict, duration, record) and where the
contact stands, as JSON for the API and as a CSV download.

Snapshots are frozen: the campaign thread replaces a contact's `ContactResult` after each change,
so an HTTP thread reading them never sees half an update.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.campaigns.outcomes import AmdVerdict, AttemptOutcome


class ContactStatus(enum.StrEnum):
    PENDING = "pending"  # not tried yet
    SCHEDULED = "scheduled"  # waiting for a retry's back-off or for its calling hours
    CALLING = "calling"
    DONE = "done"  # a final outcome: answered, final failure, attempts used up, do-not-call


@dataclass(frozen=True, slots=True)
class Attempt:
    started_at: float  # unix seconds
    call_id: str | None  # None: never placed (do-not-call, refused by the gateway)
    outcome: AttemptOutcome | None = None  # None while the call is up
    code: int | None = None
    reason: str | None = None
    duration_s: float | None = None
    amd: AmdVerdict | None = None
    record: str | None = None


@dataclass(frozen=True, slots=True)
class ContactResult:
    row: int
    to: str
    timezone: str
    status: ContactStatus = ContactStatus.PENDING
    attempts: tuple[Attempt, ...] = ()
    next_attempt_at: float | None = None
    name: str | None = None  # the contact's `name` column, so an operator sees who, not only which number

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def calls(self) -> int:
        """Attempts made (a do-not-call skip is none; an originate the gateway refused is one)."""
        return sum(1 for a in self.attempts if a.outcome is not AttemptOutcome.DO_NOT_CALL)

    def as_json(self) -> dict[str, object]:
        last = self.last
        return {
            "row": self.row,
            "to": self.to,
            "name": self.name,
            "timezone": self.timezone,
            "status": str(self.status),
            "outcome": _text(last.outcome) if last else None,
            "amd": _text(last.amd) if last else None,
            "attempts": self.calls,
            "duration_s": last.duration_s if last else None,
            "call_id": last.call_id if last else None,
            "record": last.record if last else None,
            "next_attempt_at": _iso(self.next_attempt_at),
            "history": [
                {"started_at": _iso(a.started_at), "call_id": a.call_id, "outcome": _text(a.outcome), "code": a.code,
                 "reason": a.reason, "duration_s": a.duration_s, "amd": _text(a.amd), "record": a.record}
                for a in self.attempts
            ],
        }


    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContactResult:
        """Back from `as_json()` (a kept result, for a resumed campaign); ValueError if it is not one."""
        try:
            attempts = tuple(_attempt(a) for a in data.get("history") or ())
            return cls(int(data["row"]), str(data["to"]), str(data.get("timezone") or "UTC"),
                       ContactStatus(str(data.get("status") or "pending")), attempts,
                       _unix(data.get("next_attempt_at")), data.get("name"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a kept contact result: {exc}") from None


def _attempt(data: Mapping[str, Any]) -> Attempt:
    outcome, amd = data.get("outcome"), data.get("amd")
    code, duration = data.get("code"), data.get("duration_s")
    return Attempt(_unix(data.get("started_at")) or 0.0, data.get("call_id"),
                   None if outcome is None else _outcome(str(outcome)), None if code is None else int(code),
                   data.get("reason"), None if duration is None else float(duration),
                   AmdVerdict.parse(amd), data.get("record"))


def _outcome(value: str) -> AttemptOutcome:
    try:
        return AttemptOutcome(value)
    except ValueError:  # written by a newer gateway: never retried, as anything not recognised
        return AttemptOutcome.OTHER


CSV_COLUMNS = ("row", "to", "name", "timezone", "status", "outcome", "amd", "attempts", "duration_s", "call_id",
               "record", "last_attempt_at", "next_attempt_at")


def results_csv(results: Iterable[Mapping[str, Any]]) -> str:
    """One line per contact (its latest attempt) from `ContactResult.as_json()` dicts; the history is in the JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for result in results:
        history = result.get("history") or [{}]
        row = {**result, "last_attempt_at": history[-1].get("started_at")}
        writer.writerow(["" if row.get(c) is None else row[c] for c in CSV_COLUMNS])
    return out.getvalue()


def tally(contacts: Iterable[tuple[str, str | None, bool]]) -> dict[str, object]:
    """Counts over (status, outcome of the latest attempt, attempted at all) per contact, as the API shows them."""
    by_status: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    not_attempted = total = 0
    for status, outcome, attempted in contacts:
        total += 1
        by_status[status] += 1
        not_attempted += not attempted
        if status == ContactStatus.DONE and outcome is not None:
            outcomes[outcome] += 1
    return {"total": total, "not_attempted": not_attempted, "scheduled": by_status[ContactStatus.SCHEDULED],
            "done": by_status[ContactStatus.DONE], "outcomes": dict(sorted(outcomes.items()))}


def _iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def _unix(iso: object) -> float | None:
    return None if not iso else dt.datetime.fromisoformat(str(iso)).timestamp()


def _text(value: enum.Enum | None) -> str | None:
    return None if value is None else str(value.value)
