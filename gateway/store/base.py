"""What every store backend offers: caller memory and taken messages, with one set of semantics.

The public methods live here, once: they normalize caller IDs, clean text, validate arguments
and decide what an operation means (a blank name keeps the remembered one, an anonymous caller
is silently not remembered, open requests are de-duplicated and bounded).  A backend
(:mod:`gateway.store.sqlite`, :mod:`gateway.store.postgres`) only runs the SQL, so the two
cannot drift apart in behaviour, and the same unit tests run against both.

Every method may raise :class:`StoreError` (never a driver exception): the call path catches
that one type and carries on without memory rather than dropping the call.
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.store.caller_ids import compact_number, do_not_call_key, normalize_caller_id
from gateway.store.campaign_rows import CAMPAIGN_COLUMNS, CampaignRows

__all__ = [
    "CAMPAIGN_COLUMNS", "MAX_OPEN_REQUESTS", "MAX_REQUEST_CHARS", "CallerRecord",
    "DoNotCallEntry", "MessageRecord", "Store", "StoreError",
]

MAX_OPEN_REQUESTS = 20  # newest kept: an endless list would only bloat the prompt it ends up in
MAX_REQUEST_CHARS = 200
SECONDS_PER_DAY = 86_400.0

CALLER_COLUMNS = "caller_id, name, last_reason, last_call_at, call_count, open_requests"
MESSAGE_COLUMNS = "id, created_at, caller_id, caller_name, callback_number, text, call_id, transcript, agent"
MESSAGE_INSERT_COLUMNS = MESSAGE_COLUMNS.removeprefix("id, ")
DO_NOT_CALL_COLUMNS = "number, added_at, note"
MAX_NOTE_CHARS = 200


class StoreError(RuntimeError):
    """The database could not be opened, migrated, read or written (the message names it, without secrets)."""


@dataclass(frozen=True, slots=True)
class CallerRecord:
    """What the gateway remembers about one caller between calls."""

    caller_id: str
    name: str | None
    last_reason: str | None  # why they called last time
    last_call_at: float | None  # unix seconds; None if they never completed a recorded call
    call_count: int
    open_requests: tuple[str, ...]  # things promised or pending ("call back about the quote")


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A message taken for a human (the take_message tool), with the call's transcript as context."""

    id: int
    created_at: float
    caller_id: str | None
    caller_name: str | None
    callback_number: str | None
    text: str
    call_id: str | None
    transcript: str | None
    agent: str | None


@dataclass(frozen=True, slots=True)
class DoNotCallEntry:
    """A number that campaigns must never dial (checked right before each dial)."""

    number: str  # as :func:`gateway.store.caller_ids.do_not_call_key` spells it
    added_at: float
    note: str | None  # why, or who asked ("asked on the call of 3 May")


RequestChange = Callable[[list[str]], list[str]]


class Store(CampaignRows, ABC):
    """Caller memory, taken messages and campaigns; safe to share between threads.  Open one with
    :func:`gateway.store.open_store`."""

    #: how messages and logs name this database: a file path, or a DSN without its password
    where: str

    # ------------------------------------------------------------------ plumbing

    @abstractmethod
    def close(self) -> None:
        """Release the connection(s); the store must not be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ callers

    def caller(self, caller_id: str | None) -> CallerRecord | None:
        """What is remembered about ``caller_id`` (raw or normalized), or None."""
        key = normalize_caller_id(caller_id)
        if key is None:
            return None
        row = self._caller(key)
        return caller_record(row) if row else None

    def record_call(
        self,
        caller_id: str | None,
        *,
        name: str | None = None,
        reason: str | None = None,
        at: float | None = None,
    ) -> CallerRecord | None:
        """Count one call from ``caller_id`` at ``at`` (default now) and return the updated record.

        A name or reason that is None keeps the remembered one: a caller who does not repeat
        their name is still the same person.  None (nothing stored) for an anonymous caller.
        """
        key = normalize_caller_id(caller_id)
        if key is None:
            return None
        at = time.time() if at is None else float(at)
        return caller_record(self._record_call(key, clean(name), clean(reason), at))

    def add_open_request(self, caller_id: str | None, text: str) -> None:
        """Remember something pending for this caller, shown to the agent on their next call.

        Duplicates are ignored and only the newest :data:`MAX_OPEN_REQUESTS` are kept.
        """
        key = normalize_caller_id(caller_id)
        item = clean(text)
        if key is None or item is None:
            return
        item = item[:MAX_REQUEST_CHARS]

        def add(requests: list[str]) -> list[str]:
            return ([r for r in requests if r != item] + [item])[-MAX_OPEN_REQUESTS:]

        self._change_requests(key, add, time.time(), create=True)

    def close_open_requests(self, caller_id: str | None) -> int:
        """Clear the caller's open requests (they were handled); return how many there were."""
        key = normalize_caller_id(caller_id)
        if key is None:
            return 0
        before = self._change_requests(key, lambda _: [], time.time(), create=False)
        return len(before or [])

    # ------------------------------------------------------------------ messages

    def take_message(
        self,
        text: str,
        *,
        caller_id: str | None = None,
        caller_name: str | None = None,
        callback_number: str | None = None,
        call_id: str | None = None,
        transcript: str | None = None,
        agent: str | None = None,
        at: float | None = None,
    ) -> int:
        """Store a message for a human and return its id.

        The transcript so far is kept with it because a message like "call me back about it"
        means nothing without the conversation it came from.
        """
        body = (text or "").strip()
        if not body:
            raise ValueError("a message needs text")
        created = time.time() if at is None else float(at)
        return self._insert_message((
            created, normalize_caller_id(caller_id), clean(caller_name), compact_number(callback_number), body,
            call_id, transcript, agent,
        ))

    def messages(self, since: float | None = None) -> list[MessageRecord]:
        """Messages created at or after ``since`` (unix seconds; all if None), oldest first."""
        return [message_record(row) for row in self._messages(None if since is None else float(since))]

    # ------------------------------------------------------------------ do-not-call list

    def add_do_not_call(self, number: str, note: str | None = None, at: float | None = None) -> DoNotCallEntry:
        """Put a number on the do-not-call list (again: keeps the first date, takes a new note)."""
        key = do_not_call_key(number)
        if key is None:
            raise ValueError(f"{number!r} is not a number to put on the do-not-call list")
        text = clean(note)
        added = time.time() if at is None else float(at)
        return DoNotCallEntry(*self._add_do_not_call(key, added, text[:MAX_NOTE_CHARS] if text else None))

    def remove_do_not_call(self, number: str) -> bool:
        """Take a number off the list; False if it was not on it."""
        key = do_not_call_key(number)
        return key is not None and self._remove_do_not_call(key)

    def on_do_not_call(self, number: str) -> bool:
        """Whether `number` (any spelling) is on the list."""
        key = do_not_call_key(number)
        return key is not None and self._on_do_not_call(key)

    def do_not_call(self) -> list[DoNotCallEntry]:
        """The whole list, oldest first."""
        return [DoNotCallEntry(*row) for row in self._do_not_call()]  # type: ignore[arg-type]

    # ------------------------------------------------------------------ campaign results

    def save_campaign_contacts(self, campaign_id: str, results: Iterable[tuple[int, Mapping[str, object]]],
                               at: float | None = None) -> None:
        """Keep campaign contacts' latest results (row number, the JSON the API shows), in one transaction;
        purged with the callers."""
        when = time.time() if at is None else float(at)
        rows = [(campaign_id, int(row), normalize_caller_id(str(result.get("to") or "")), when,
                 json.dumps(dict(result), default=str)) for row, result in results]
        if rows:
            self._save_campaign_contacts(rows)

    def campaign_contacts(self, campaign_id: str) -> list[dict[str, object]]:
        """A campaign's kept contact results, in list order (empty for an unknown campaign)."""
        results = []
        for (payload,) in self._campaign_contacts(campaign_id):
            try:
                value = json.loads(str(payload))
            except ValueError:
                continue  # a damaged row: the others still show
            if isinstance(value, dict):
                results.append(value)
        return results

    # ------------------------------------------------------------------ retention

    def forget(self, caller_id: str | None) -> int:
        """Delete everything about a caller (their record, their messages, campaign results for their
        number; never the do-not-call list); return rows deleted.

        Messages are matched by the caller ID they came from and by the callback number they
        left, so a caller who phoned anonymously but left this number is forgotten too.
        """
        key = normalize_caller_id(caller_id)
        if key is None:
            return 0
        return self._forget(key)

    def purge(self, retention_days: float, now: float | None = None) -> int:
        """Delete callers not seen, messages created, and campaign results last changed more than
        ``retention_days`` ago (never the do-not-call list).

        Returns the number of rows deleted.  ``inf`` keeps everything.
        """
        cutoff = retention_cutoff(retention_days, now)
        return 0 if cutoff is None else self._purge(cutoff)

    # ------------------------------------------------------------------ backend

    @abstractmethod
    def _caller(self, key: str) -> Sequence[object] | None:
        """The caller's row (:data:`CALLER_COLUMNS`) or None."""

    @abstractmethod
    def _record_call(self, key: str, name: str | None, reason: str | None, at: float) -> Sequence[object]:
        """Upsert one call (COALESCE name/reason, latest times, count + 1) and return the new row."""

    @abstractmethod
    def _change_requests(self, key: str, change: RequestChange, now: float, *, create: bool) -> list[str] | None:
        """Replace the caller's open requests by ``change(old)`` atomically (no lost update between
        gateways); create the caller if ``create``.  Returns the old list, None if there was no caller."""

    @abstractmethod
    def _insert_message(self, values: tuple[object, ...]) -> int:
        """Insert a message (:data:`MESSAGE_INSERT_COLUMNS`) and return its id."""

    @abstractmethod
    def _messages(self, since: float | None) -> list[Sequence[object]]:
        """Message rows created at or after ``since``, ordered by (created_at, id)."""

    @abstractmethod
    def _forget(self, key: str) -> int:
        """Delete the caller, their messages (by caller ID or callback number) and campaign results; rows deleted."""

    @abstractmethod
    def _purge(self, cutoff: float) -> int:
        """Delete callers last seen, messages created and campaign results changed before ``cutoff``; rows deleted."""

    @abstractmethod
    def _save_campaign_contacts(self, rows: list[tuple[str, int, str | None, float, str]]) -> None:
        """Upsert (campaign_id, row_number, number, updated_at, result) rows."""

    @abstractmethod
    def _campaign_contacts(self, campaign_id: str) -> list[Sequence[object]]:
        """``(result,)`` rows of the campaign, ordered by row number."""

    @abstractmethod
    def _add_do_not_call(self, key: str, at: float, note: str | None) -> Sequence[object]:
        """Upsert a number (keep added_at, replace a note given) and return its row (DO_NOT_CALL_COLUMNS)."""

    @abstractmethod
    def _remove_do_not_call(self, key: str) -> bool:
        """Delete a number; whether it was there."""

    @abstractmethod
    def _on_do_not_call(self, key: str) -> bool:
        """Whether the number is listed."""

    @abstractmethod
    def _do_not_call(self) -> list[Sequence[object]]:
        """Every row, ordered by (added_at, number)."""


# --------------------------------------------------------------------------- helpers for backends


def retention_cutoff(retention_days: float, now: float | None) -> float | None:
    """The unix time before which rows expire, None for ``inf`` (keep everything)."""
    if math.isnan(retention_days) or retention_days < 0:
        raise ValueError(f"retention_days must be >= 0, got {retention_days}")
    if math.isinf(retention_days):
        return None
    return (time.time() if now is None else float(now)) - retention_days * SECONDS_PER_DAY


def clean(text: str | None) -> str | None:
    """Stripped text, or None for None/blank (so a blank value never overwrites a stored one)."""
    if text is None:
        return None
    text = " ".join(text.split())
    return text or None


def load_requests(payload: object) -> list[str]:
    """The stored JSON list, tolerating a hand-edited or damaged value rather than failing a call."""
    try:
        value = json.loads(payload if isinstance(payload, str) and payload else "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def caller_record(row: Sequence[object]) -> CallerRecord:
    caller_id, name, last_reason, last_call_at, call_count, open_requests = row
    return CallerRecord(
        caller_id=str(caller_id),
        name=name if isinstance(name, str) else None,
        last_reason=last_reason if isinstance(last_reason, str) else None,
        last_call_at=float(last_call_at) if isinstance(last_call_at, int | float) else None,
        call_count=int(call_count) if isinstance(call_count, int) else 0,
        open_requests=tuple(load_requests(open_requests)),
    )


def message_record(row: Sequence[object]) -> MessageRecord:
    return MessageRecord(*row)  # type: ignore[arg-type]  # columns in MESSAGE_COLUMNS order
