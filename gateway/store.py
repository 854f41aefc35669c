"""The gateway's embedded database: what it remembers about callers, and the messages it took.

One SQLite file, because the gateway runs on-prem on one box: no server to operate, and a
backup is a file copy.  Several calls run at once, each on its own threads, so:

* WAL journal mode lets readers (an operator's ``sqlite3`` shell, a CLI listing messages) run
  while the gateway writes, and makes each commit one sequential append;
* one connection is shared (``check_same_thread=False``) behind one lock.  The lock is held for
  reads too: on a shared connection a reader would otherwise see another thread's uncommitted
  transaction.  Every statement here touches a handful of rows (microseconds), far below the
  20 ms a media thread could notice, and none of it runs on the media clock anyway;
* a busy timeout covers another *process* holding the write lock for a moment.

The schema is versioned (``schema_version``) and migrated on open, so an upgraded gateway
opens an older file in place.  Caller IDs are normalized (:func:`normalize_caller_id`) by every
method, so a raw ``From`` header and a bare number find the same caller; an anonymous caller
normalizes to None and is simply not remembered (the methods accept it and do nothing), so the
call path needs no special case.

Privacy: ``secure_delete`` is on so :meth:`Store.forget` and :meth:`Store.purge` overwrite the
deleted rows in the file, and :meth:`Store.forget` checkpoints the WAL so no copy stays there.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CallerRecord", "MessageRecord", "Store", "StoreError", "normalize_caller_id"]

MAX_OPEN_REQUESTS = 20  # newest kept: an endless list would only bloat the prompt it ends up in
MAX_REQUEST_CHARS = 200
_BUSY_TIMEOUT_S = 5.0
_SECONDS_PER_DAY = 86_400.0


class StoreError(RuntimeError):
    """The database could not be opened, migrated or written (the message names the file)."""


# --------------------------------------------------------------------------- caller IDs

_ANONYMOUS = frozenset({"", "anonymous", "unknown", "unavailable", "restricted", "private", "withheld", "none"})
_PHONE = re.compile(r"^\+?[\d\s().\-/]+$")  # a number written with visual separators
_SCHEME = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)


def normalize_caller_id(text: str | None) -> str | None:
    """The key a caller is remembered by: the user part of their SIP/tel URI, or None if anonymous.

    ``"Alice" <sip:+15551234@pbx;transport=udp>`` -> ``+15551234``; ``tel:+1-555-123-4567`` ->
    ``+15551234567``; ``1001`` -> ``1001``.  Phone numbers lose their visual separators so the
    same number written two ways is one caller.  None for empty input and for the placeholders
    PBXs use when the number is withheld ("anonymous", "unknown", "restricted", ...).  Idempotent.
    """
    if text is None:
        return None
    uri = text.strip()
    if "<" in uri:  # name-addr: the URI is between the angle brackets, the display name is not used
        uri = uri.split("<", 1)[1].split(">", 1)[0]
    uri = _SCHEME.sub("", uri.strip())
    user = re.split(r"[;?@]", uri, maxsplit=1)[0].strip()
    if _PHONE.match(user) and any(c.isdigit() for c in user):
        user = ("+" if user.startswith("+") else "") + re.sub(r"\D", "", user)
    if user.lower() in _ANONYMOUS or not user:
        return None
    return user


def _compact_number(text: str | None) -> str | None:
    """A callback number as given, with a phone number's separators removed (so forget() can match it)."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if _PHONE.match(text) and any(c.isdigit() for c in text):
        return ("+" if text.startswith("+") else "") + re.sub(r"\D", "", text)
    return text


# --------------------------------------------------------------------------- records


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


# --------------------------------------------------------------------------- schema

# MIGRATIONS[n] takes the schema from version n to n + 1.  Append only: never edit a released one.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE callers (
            caller_id     TEXT PRIMARY KEY,
            name          TEXT,
            last_reason   TEXT,
            last_call_at  REAL,
            call_count    INTEGER NOT NULL DEFAULT 0,
            open_requests TEXT NOT NULL DEFAULT '[]',
            last_seen_at  REAL NOT NULL
        )""",
        "CREATE INDEX callers_last_seen ON callers (last_seen_at)",
        """CREATE TABLE messages (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at      REAL NOT NULL,
            caller_id       TEXT,
            caller_name     TEXT,
            callback_number TEXT,
            text            TEXT NOT NULL,
            call_id         TEXT,
            transcript      TEXT,
            agent           TEXT
        )""",
        "CREATE INDEX messages_created ON messages (created_at)",
        "CREATE INDEX messages_caller ON messages (caller_id)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_CALLER_COLUMNS = "caller_id, name, last_reason, last_call_at, call_count, open_requests"
_MESSAGE_COLUMNS = "id, created_at, caller_id, caller_name, callback_number, text, call_id, transcript, agent"


# --------------------------------------------------------------------------- store


class Store:
    """Caller memory and taken messages in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), timeout=_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL").fetchone()
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: no corruption, at most the last commit lost
            self._db.execute("PRAGMA secure_delete=ON")
            self._migrate()
        except (sqlite3.Error, StoreError) as exc:
            self._db.close()
            reason = exc.__cause__ if isinstance(exc, StoreError) and exc.__cause__ else exc
            raise StoreError(f"cannot open store {self.path}: {reason}") from exc

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; IMMEDIATE so it never fails halfway on a lock upgrade."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"schema version {version} is newer than this gateway's ({SCHEMA_VERSION}); "
                    "upgrade the gateway or restore an older file"
                )
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    # ------------------------------------------------------------------ callers

    def caller(self, caller_id: str | None) -> CallerRecord | None:
        """What is remembered about ``caller_id`` (raw or normalized), or None."""
        key = normalize_caller_id(caller_id)
        if key is None:
            return None
        with self._reading() as db:
            row = db.execute(f"SELECT {_CALLER_COLUMNS} FROM callers WHERE caller_id = ?", (key,)).fetchone()
        return _caller_record(row) if row else None

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
        with self._transaction() as db:
            db.execute(
                """INSERT INTO callers (caller_id, name, last_reason, last_call_at, call_count, last_seen_at)
                   VALUES (?, ?, ?, ?, 1, ?)
                   ON CONFLICT (caller_id) DO UPDATE SET
                       name = COALESCE(excluded.name, name),
                       last_reason = COALESCE(excluded.last_reason, last_reason),
                       last_call_at = MAX(COALESCE(last_call_at, excluded.last_call_at), excluded.last_call_at),
                       call_count = call_count + 1,
                       last_seen_at = MAX(last_seen_at, excluded.last_seen_at)""",
                (key, _clean(name), _clean(reason), at, at),
            )
            row = db.execute(f"SELECT {_CALLER_COLUMNS} FROM callers WHERE caller_id = ?", (key,)).fetchone()
        return _caller_record(row)

    def add_open_request(self, caller_id: str | None, text: str) -> None:
        """Remember something pending for this caller, shown to the agent on their next call.

        Duplicates are ignored and only the newest :data:`MAX_OPEN_REQUESTS` are kept.
        """
        key = normalize_caller_id(caller_id)
        item = _clean(text)
        if key is None or item is None:
            return
        item = item[:MAX_REQUEST_CHARS]
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT open_requests FROM callers WHERE caller_id = ?", (key,)).fetchone()
            requests = [r for r in (_load_requests(row[0]) if row else []) if r != item] + [item]
            payload = json.dumps(requests[-MAX_OPEN_REQUESTS:])
            db.execute(
                """INSERT INTO callers (caller_id, open_requests, last_seen_at) VALUES (?, ?, ?)
                   ON CONFLICT (caller_id) DO UPDATE SET
                       open_requests = excluded.open_requests,
                       last_seen_at = MAX(last_seen_at, excluded.last_seen_at)""",
                (key, payload, now),
            )

    def close_open_requests(self, caller_id: str | None) -> int:
        """Clear the caller's open requests (they were handled); return how many there were."""
        key = normalize_caller_id(caller_id)
        if key is None:
            return 0
        with self._transaction() as db:
            row = db.execute("SELECT open_requests FROM callers WHERE caller_id = ?", (key,)).fetchone()
            if row is None:
                return 0
            db.execute("UPDATE callers SET open_requests = '[]' WHERE caller_id = ?", (key,))
        return len(_load_requests(row[0]))

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
        with self._transaction() as db:
            cursor = db.execute(
                f"INSERT INTO messages ({_MESSAGE_COLUMNS.removeprefix('id, ')}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    created,
                    normalize_caller_id(caller_id),
                    _clean(caller_name),
                    _compact_number(callback_number),
                    body,
                    call_id,
                    transcript,
                    agent,
                ),
            )
        if cursor.lastrowid is None:  # cannot happen for a plain INSERT; keeps the return type honest
            raise StoreError(f"store {self.path}: message was not stored")
        return cursor.lastrowid

    def messages(self, since: float | None = None) -> list[MessageRecord]:
        """Messages created at or after ``since`` (unix seconds; all if None), oldest first."""
        where, args = ("", ()) if since is None else ("WHERE created_at >= ?", (float(since),))
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages {where} ORDER BY created_at, id", args
            ).fetchall()
        return [MessageRecord(*row) for row in rows]

    # ------------------------------------------------------------------ retention

    def forget(self, caller_id: str | None) -> int:
        """Delete everything about a caller (their record and their messages); return rows deleted.

        Messages are matched by the caller ID they came from and by the callback number they
        left, so a caller who phoned anonymously but left this number is forgotten too.
        """
        key = normalize_caller_id(caller_id)
        if key is None:
            return 0
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM callers WHERE caller_id = ?", (key,)).rowcount
            deleted += db.execute(
                "DELETE FROM messages WHERE caller_id = ? OR callback_number = ?", (key, key)
            ).rowcount
        if deleted:
            with self._reading() as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return deleted

    def purge(self, retention_days: float, now: float | None = None) -> int:
        """Delete callers not seen, and messages created, more than ``retention_days`` ago.

        Returns the number of rows deleted.  ``inf`` keeps everything.
        """
        if math.isnan(retention_days) or retention_days < 0:
            raise ValueError(f"retention_days must be >= 0, got {retention_days}")
        if math.isinf(retention_days):
            return 0
        cutoff = (time.time() if now is None else float(now)) - retention_days * _SECONDS_PER_DAY
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM callers WHERE last_seen_at < ?", (cutoff,)).rowcount
            deleted += db.execute("DELETE FROM messages WHERE created_at < ?", (cutoff,)).rowcount
        return deleted


def _clean(text: str | None) -> str | None:
    """Stripped text, or None for None/blank (so a blank value never overwrites a stored one)."""
    if text is None:
        return None
    text = " ".join(text.split())
    return text or None


def _load_requests(payload: str | None) -> list[str]:
    """The stored JSON list, tolerating a hand-edited or damaged value rather than failing a call."""
    try:
        value = json.loads(payload or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _caller_record(row: tuple[object, ...]) -> CallerRecord:
    caller_id, name, last_reason, last_call_at, call_count, open_requests = row
    return CallerRecord(
        caller_id=str(caller_id),
        name=name if isinstance(name, str) else None,
        last_reason=last_reason if isinstance(last_reason, str) else None,
        last_call_at=float(last_call_at) if isinstance(last_call_at, int | float) else None,
        call_count=int(call_count) if isinstance(call_count, int) else 0,
        open_requests=tuple(_load_requests(open_requests if isinstance(open_requests, str) else None)),
    )
