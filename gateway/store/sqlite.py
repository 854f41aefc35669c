"""The embedded backend: caller memory and messages in one SQLite file (the default).

One file, because a single gateway runs on-prem on one box: no server to operate, and a backup
is a file copy.  Several calls run at once, each on its own threads, so:

* WAL journal mode lets readers (an operator's ``sqlite3`` shell, a CLI listing messages) run
  while the gateway writes, and makes each commit one sequential append;
* one connection is shared (``check_same_thread=False``) behind one lock.  The lock is held for
  reads too: on a shared connection a reader would otherwise see another thread's uncommitted
  transaction.  Every statement here touches a handful of rows (microseconds), far below the
  20 ms a media thread could notice, and none of it runs on the media clock anyway;
* a busy timeout covers another *process* holding the write lock for a moment.

The schema is versioned (``schema_version``) and migrated on open, so an upgraded gateway
opens an older file in place.

Privacy: ``secure_delete`` is on so :meth:`Store.forget` and :meth:`Store.purge` overwrite the
deleted rows in the file, and forgetting checkpoints the WAL so no copy stays there.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gateway.store.base import (
    CALLER_COLUMNS,
    CAMPAIGN_COLUMNS,
    DO_NOT_CALL_COLUMNS,
    MESSAGE_COLUMNS,
    MESSAGE_INSERT_COLUMNS,
    RequestChange,
    Store,
    StoreError,
    load_requests,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

_BUSY_TIMEOUT_S = 5.0

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
    ),    # campaigns: the do-not-call list (numbers as gateway.store.caller_ids.do_not_call_key spells them), results
    (
        """CREATE TABLE do_not_call (
            number   TEXT PRIMARY KEY,
            added_at REAL NOT NULL,
            note     TEXT
        )""",
        # each campaign contact's latest result (gateway.campaigns.results), so results outlive the process
        """CREATE TABLE campaign_contacts (
            campaign_id TEXT NOT NULL,
            row_number  INTEGER NOT NULL,
            number      TEXT,
            updated_at  REAL NOT NULL,
            result      TEXT NOT NULL,
            PRIMARY KEY (campaign_id, row_number)
        )""",
        "CREATE INDEX campaign_contacts_updated ON campaign_contacts (updated_at)",
        "CREATE INDEX campaign_contacts_number ON campaign_contacts (number)",
    ),
    # campaigns that survive a restart: the campaign (owner, state, what it was started with) and
    # each contact's dialling details beside its result (gateway.store.campaign_rows)
    (
        "ALTER TABLE campaign_contacts ADD COLUMN contact TEXT",
        """CREATE TABLE campaigns (
            campaign_id TEXT PRIMARY KEY,
            owner       TEXT NOT NULL,
            state       TEXT NOT NULL,
            created_at  REAL NOT NULL,
            updated_at  REAL NOT NULL,
            spec        TEXT NOT NULL
        )""",
        "CREATE INDEX campaigns_updated ON campaigns (updated_at)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


class SqliteStore(Store):
    """Caller memory and taken messages in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)
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

    # ------------------------------------------------------------------ backend

    def _caller(self, key: str) -> Sequence[object] | None:
        with self._reading() as db:
            return db.execute(f"SELECT {CALLER_COLUMNS} FROM callers WHERE caller_id = ?", (key,)).fetchone()

    def _record_call(self, key: str, name: str | None, reason: str | None, at: float) -> Sequence[object]:
        with self._transaction() as db:
            return db.execute(
                f"""INSERT INTO callers (caller_id, name, last_reason, last_call_at, call_count, last_seen_at)
                   VALUES (?, ?, ?, ?, 1, ?)
                   ON CONFLICT (caller_id) DO UPDATE SET
                       name = COALESCE(excluded.name, name),
                       last_reason = COALESCE(excluded.last_reason, last_reason),
                       last_call_at = MAX(COALESCE(last_call_at, excluded.last_call_at), excluded.last_call_at),
                       call_count = call_count + 1,
                       last_seen_at = MAX(last_seen_at, excluded.last_seen_at)
                   RETURNING {CALLER_COLUMNS}""",
                (key, name, reason, at, at),
            ).fetchone()

    def _change_requests(self, key: str, change: RequestChange, now: float, *, create: bool) -> list[str] | None:
        with self._transaction() as db:  # IMMEDIATE: the read and the write below are one step for every writer
            row = db.execute("SELECT open_requests FROM callers WHERE caller_id = ?", (key,)).fetchone()
            if row is None and not create:
                return None
            before = load_requests(row[0]) if row else []
            payload = json.dumps(change(before))
            if create:
                db.execute(
                    """INSERT INTO callers (caller_id, open_requests, last_seen_at) VALUES (?, ?, ?)
                       ON CONFLICT (caller_id) DO UPDATE SET
                           open_requests = excluded.open_requests,
                           last_seen_at = MAX(last_seen_at, excluded.last_seen_at)""",
                    (key, payload, now),
                )
            else:
                db.execute("UPDATE callers SET open_requests = ? WHERE caller_id = ?", (payload, key))
        return before if row else None

    def _insert_message(self, values: tuple[object, ...]) -> int:
        with self._transaction() as db:
            row = db.execute(
                f"INSERT INTO messages ({MESSAGE_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id", values
            ).fetchone()
        return int(row[0])

    def _messages(self, since: float | None) -> list[Sequence[object]]:
        where, args = ("", ()) if since is None else ("WHERE created_at >= ?", (since,))
        with self._reading() as db:
            sql = f"SELECT {MESSAGE_COLUMNS} FROM messages {where} ORDER BY created_at, id"
            return db.execute(sql, args).fetchall()

    def _forget(self, key: str) -> int:
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM callers WHERE caller_id = ?", (key,)).rowcount
            deleted += db.execute(
                "DELETE FROM messages WHERE caller_id = ? OR callback_number = ?", (key, key)
            ).rowcount
            deleted += db.execute("DELETE FROM campaign_contacts WHERE number = ?", (key,)).rowcount
        if deleted:
            with self._reading() as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return deleted

    def _purge(self, cutoff: float) -> int:
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM callers WHERE last_seen_at < ?", (cutoff,)).rowcount
            deleted += db.execute("DELETE FROM messages WHERE created_at < ?", (cutoff,)).rowcount
            deleted += db.execute("DELETE FROM campaign_contacts WHERE updated_at < ?", (cutoff,)).rowcount
            deleted += db.execute("DELETE FROM campaigns WHERE updated_at < ?", (cutoff,)).rowcount
        return deleted

    def _add_do_not_call(self, key: str, at: float, note: str | None) -> Sequence[object]:
        with self._transaction() as db:
            return db.execute(
                f"""INSERT INTO do_not_call (number, added_at, note) VALUES (?, ?, ?)
                    ON CONFLICT (number) DO UPDATE SET note = COALESCE(excluded.note, note)
                    RETURNING {DO_NOT_CALL_COLUMNS}""",
                (key, at, note),
            ).fetchone()

    def _remove_do_not_call(self, key: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM do_not_call WHERE number = ?", (key,)).rowcount > 0

    def _on_do_not_call(self, key: str) -> bool:
        with self._reading() as db:
            return db.execute("SELECT 1 FROM do_not_call WHERE number = ?", (key,)).fetchone() is not None

    def _do_not_call(self) -> list[Sequence[object]]:
        with self._reading() as db:
            return db.execute(f"SELECT {DO_NOT_CALL_COLUMNS} FROM do_not_call ORDER BY added_at, number").fetchall()

    def _save_campaign_contacts(self, rows: list[tuple[str, int, str | None, float, str]]) -> None:
        with self._transaction() as db:
            db.executemany(
                """INSERT INTO campaign_contacts (campaign_id, row_number, number, updated_at, result)
                   VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (campaign_id, row_number) DO UPDATE SET
                       updated_at = excluded.updated_at, result = excluded.result""",
                rows,
            )

    def _campaign_contacts(self, campaign_id: str) -> list[Sequence[object]]:
        with self._reading() as db:
            return db.execute(
                "SELECT result FROM campaign_contacts WHERE campaign_id = ? ORDER BY row_number", (campaign_id,)
            ).fetchall()

    def _save_campaign(self, values: tuple[str, str, str, float, float, str]) -> None:
        with self._transaction() as db:
            db.execute(
                f"""INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (campaign_id) DO UPDATE SET owner = excluded.owner, state = excluded.state,
                        updated_at = excluded.updated_at, spec = excluded.spec""",
                values,
            )

    def _set_campaign_state(self, campaign_id: str, state: str, at: float) -> bool:
        with self._transaction() as db:
            return db.execute("UPDATE campaigns SET state = ?, updated_at = ? WHERE campaign_id = ?",
                              (state, at, campaign_id)).rowcount > 0

    def _campaigns(self, owner: str | None, limit: int) -> list[Sequence[object]]:
        where, args = ("", ()) if owner is None else ("WHERE owner = ?", (owner,))
        with self._reading() as db:
            return db.execute(f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns {where} ORDER BY created_at DESC LIMIT ?",
                              (*args, limit)).fetchall()

    def _campaign(self, campaign_id: str) -> list[Sequence[object]]:
        with self._reading() as db:
            return db.execute(f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE campaign_id = ?",
                              (campaign_id,)).fetchall()

    def _save_campaign_contact_list(self, values: list[tuple[str, int, str | None, float, str, str]]) -> None:
        with self._transaction() as db:
            db.executemany(
                """INSERT INTO campaign_contacts (campaign_id, row_number, number, updated_at, result, contact)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (campaign_id, row_number) DO UPDATE SET
                       updated_at = excluded.updated_at, result = excluded.result, contact = excluded.contact""",
                values,
            )

    def _campaign_contact_rows(self, campaign_id: str) -> list[Sequence[object]]:
        with self._reading() as db:
            return db.execute(
                "SELECT row_number, contact, result FROM campaign_contacts WHERE campaign_id = ? ORDER BY row_number",
                (campaign_id,),
            ).fetchall()
