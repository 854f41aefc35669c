"""The shared backend: caller memory, messages and call events in PostgreSQL, for several gateways.

Why PostgreSQL: gateways behind one dispatcher must know the same callers; a SQLite file cannot
be shared between hosts.  The semantics are those of :class:`gateway.store.base.Store`; only the
SQL differs (``GREATEST`` for SQLite's scalar ``MAX``, identity columns, ``DOUBLE PRECISION``,
``RETURNING``, and row locks where SQLite's ``BEGIN IMMEDIATE`` serialized everything).

Connections: one connection behind one lock per store.  Every operation is one short
transaction on a handful of rows (about a millisecond on a LAN), run from call-control and
agent threads, never from the 20 ms media clock, so a pool would only add a dependency, more
server connections per gateway and more reconnect states for no measured gain.  The call-event
writer (:mod:`gateway.store.call_events`) opens its own store, so its batches never queue behind
a caller lookup.

Failures: a lost connection (the server restarted, a failover) is noticed by the next
operation, which reconnects and runs again once if its transaction had not reached COMMIT
(the server rolled it back, so running it again cannot count a call twice).  When the server
cannot be reached, the operation raises :class:`StoreError`, which the call path treats as
"no memory this time", never as a reason to drop the call.

Slow or unreachable database: a call thread must not wait on it for long, and one stuck operation
must not queue every other call thread behind the store's lock.  So:

* ``statement_timeout`` (5 s) bounds a statement stuck behind a row lock; its cancellation
  (``QueryCanceled``) is raised at once, never retried (a retry would hold the lock another 5 s
  for a statement that is likely to be stuck again);
* the lock is taken with a timeout (5 s): a thread that cannot get it gets :class:`StoreError`
  ("database busy") instead of waiting for every operation queued before it;
* a dead link (a network partition: no RST, the server never answers) is noticed by TCP
  keepalives and ``tcp_user_timeout`` within about 10 s instead of the kernel's 15 minutes;
  ``connect_timeout`` bounds a connect.  These are defaults: the same parameter in the DSN wins.
* the start-up purges, which may have much to delete, run with a longer timeout, and the
  call-event purge deletes in bounded batches.

Secrets: the DSN may carry a password; it is shown only through :func:`redact_dsn`, and driver
messages are scrubbed of it.  libpq's own ``PGPASSWORD`` and ``~/.pgpass`` work too, since the
DSN goes to libpq unchanged.

Opening reads the schema version with a plain SELECT; only a schema that is behind is migrated,
so a role with only row rights (SELECT, INSERT, UPDATE, DELETE) can open a store that the tables'
owner has migrated.  Migrations run under ``pg_advisory_xact_lock`` in the same transaction as a
second version check, so two gateways starting at the same moment do not both create the tables:
the second waits, then finds the schema current.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg.types.json import Jsonb

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
    retention_cutoff,
)
from gateway.store.pg_connection import CONNECT_TIMEOUT_S, LOCK_TIMEOUT_S, PgConnection

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

log = structlog.get_logger("store")
T = TypeVar("T")

_MAINTENANCE_TIMEOUT_MS = 60_000  # a migration, a purge batch: at start-up, before the first call
_PURGE_BATCH_EVENTS = 5_000  # old events looked at per purge transaction
_PURGE_BUDGET_S = 120.0  # the rest waits for the next start
_MIGRATION_LOCK = 0x766F_6963_6567  # "voiceg": one advisory lock id for this application's migrations

# MIGRATIONS[n] takes the schema from version n to n + 1.  Append only: never edit a released one.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE callers (
            caller_id     TEXT PRIMARY KEY,
            name          TEXT,
            last_reason   TEXT,
            last_call_at  DOUBLE PRECISION,
            call_count    INTEGER NOT NULL DEFAULT 0,
            open_requests TEXT NOT NULL DEFAULT '[]',
            last_seen_at  DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX callers_last_seen ON callers (last_seen_at)",
        """CREATE TABLE messages (
            id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            created_at      DOUBLE PRECISION NOT NULL,
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
        # the events of gateway.records, one row per JSONL line: {"t", "kind", **fields}
        """CREATE TABLE call_events (
            id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            call_id TEXT NOT NULL,
            t       DOUBLE PRECISION NOT NULL,
            kind    TEXT NOT NULL,
            fields  JSONB NOT NULL
        )""",
        "CREATE INDEX call_events_call ON call_events (call_id, id)",
        "CREATE INDEX call_events_t ON call_events (t)",
    ),    # campaigns: the do-not-call list (numbers as gateway.store.caller_ids.do_not_call_key spells them), results
    (
        """CREATE TABLE do_not_call (
            number   TEXT PRIMARY KEY,
            added_at DOUBLE PRECISION NOT NULL,
            note     TEXT
        )""",
        # each campaign contact's latest result (gateway.campaigns.results), so results outlive the process
        """CREATE TABLE campaign_contacts (
            campaign_id TEXT NOT NULL,
            row_number  INTEGER NOT NULL,
            number      TEXT,
            updated_at  DOUBLE PRECISION NOT NULL,
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
            created_at  DOUBLE PRECISION NOT NULL,
            updated_at  DOUBLE PRECISION NOT NULL,
            spec        TEXT NOT NULL
        )""",
        "CREATE INDEX campaigns_updated ON campaigns (updated_at)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

CallEventRow = tuple[str, float, str, dict[str, Any]]  # call_id, t, kind, other fields


class PostgresStore(Store):
    """Caller memory, messages and call events in PostgreSQL; safe to share between threads."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout_s: int = CONNECT_TIMEOUT_S,
        lock_timeout_s: float = LOCK_TIMEOUT_S,
    ) -> None:
        """``connect_timeout_s`` applies unless the DSN has its own ``connect_timeout``;
        ``lock_timeout_s`` is how long an operation waits for one already running."""
        self._db = PgConnection(dsn, connect_timeout_s=connect_timeout_s, lock_timeout_s=lock_timeout_s)
        self.where = self._db.where
        try:
            self._open_schema()
        except StoreError as exc:
            self.close()
            raise StoreError(f"cannot open store {exc}") from None

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._db.close()

    def _run(self, work: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """``work`` in one transaction (gateway.store.pg_connection: reconnect once, bounded waits)."""
        return self._db.run(work)

    def _open_schema(self) -> None:
        """Check the schema version and migrate only when it is behind.

        Why a plain read first: every open (the gateway, ``voicegate report``, the call-event
        writer) comes here, and the role they log in as may have no DDL rights (on PostgreSQL 15+
        even ``CREATE TABLE IF NOT EXISTS`` of an existing table needs CREATE on the schema).  A
        current schema needs only SELECT on ``schema_version``; the lock and the DDL are taken only
        when there is something to do, which the role that owns the tables does once per upgrade.
        """
        version = self._run(self._schema_version)
        self._check_not_newer(version)
        if version < SCHEMA_VERSION:
            self._run(self._migrate)

    def _schema_version(self, cur: psycopg.Cursor[Any]) -> int:
        """The schema version, 0 for an empty database; no lock, no write.

        ``to_regclass`` is NULL for a missing table instead of an error, so no failed statement has
        to be rolled back and no "relation does not exist" lands in the server log at each start.
        """
        if cur.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone() != (True,):
            return 0
        row = cur.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def _check_not_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.where}: schema version {version} is newer than this gateway's ({SCHEMA_VERSION}); "
                "upgrade the gateway"
            )

    def _migrate(self, cur: psycopg.Cursor[Any]) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION` under the advisory lock, in one transaction.

        The version is read again after the lock: a second gateway that started at the same moment
        waits here and then finds the first one's work committed.  READ COMMITTED (whatever the
        server's default) so that read sees it: each statement then takes a fresh snapshot.
        """
        cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")  # first statement of the transaction
        _maintenance_timeout(cur)  # the second gateway waits on the lock while the first migrates
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))  # held until COMMIT
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = cur.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if row is None:
            cur.execute("INSERT INTO schema_version (version) VALUES (0)")
        self._check_not_newer(version)
        if version == SCHEMA_VERSION:
            return
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                cur.execute(statement)
        cur.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
        log.info("store_migrated", database=self.where, version_from=version, version_to=SCHEMA_VERSION)

    # ------------------------------------------------------------------ backend

    def _caller(self, key: str) -> Sequence[object] | None:
        return self._run(
            lambda cur: cur.execute(f"SELECT {CALLER_COLUMNS} FROM callers WHERE caller_id = %s", (key,)).fetchone()
        )

    def _record_call(self, key: str, name: str | None, reason: str | None, at: float) -> Sequence[object]:
        def work(cur: psycopg.Cursor[Any]) -> Sequence[object]:
            row = cur.execute(
                f"""INSERT INTO callers (caller_id, name, last_reason, last_call_at, call_count, last_seen_at)
                    VALUES (%s, %s, %s, %s, 1, %s)
                    ON CONFLICT (caller_id) DO UPDATE SET
                        name = COALESCE(EXCLUDED.name, callers.name),
                        last_reason = COALESCE(EXCLUDED.last_reason, callers.last_reason),
                        last_call_at = GREATEST(callers.last_call_at, EXCLUDED.last_call_at),
                        call_count = callers.call_count + 1,
                        last_seen_at = GREATEST(callers.last_seen_at, EXCLUDED.last_seen_at)
                    RETURNING {CALLER_COLUMNS}""",
                (key, name, reason, at, at),
            ).fetchone()
            assert row is not None  # an upsert with RETURNING always returns its row
            return row

        return self._run(work)

    def _change_requests(self, key: str, change: RequestChange, now: float, *, create: bool) -> list[str] | None:
        def work(cur: psycopg.Cursor[Any]) -> list[str] | None:
            if create:  # the upsert locks the row, so a second gateway's change waits for this one
                cur.execute(
                    """INSERT INTO callers (caller_id, last_seen_at) VALUES (%s, %s)
                       ON CONFLICT (caller_id) DO UPDATE SET
                           last_seen_at = GREATEST(callers.last_seen_at, EXCLUDED.last_seen_at)""",
                    (key, now),
                )
            row = cur.execute("SELECT open_requests FROM callers WHERE caller_id = %s FOR UPDATE", (key,)).fetchone()
            if row is None:
                return None
            before = load_requests(row[0])
            payload = json.dumps(change(before))
            cur.execute("UPDATE callers SET open_requests = %s WHERE caller_id = %s", (payload, key))
            return before

        return self._run(work)

    def _insert_message(self, values: tuple[object, ...]) -> int:
        row = self._run(lambda cur: cur.execute(
            f"INSERT INTO messages ({MESSAGE_INSERT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            values,
        ).fetchone())
        if row is None:
            raise StoreError(f"{self.where}: message was not stored")
        return int(row[0])

    def _messages(self, since: float | None) -> list[Sequence[object]]:
        where, args = ("", ()) if since is None else ("WHERE created_at >= %s", (since,))
        sql = f"SELECT {MESSAGE_COLUMNS} FROM messages {where} ORDER BY created_at, id"
        return self._run(lambda cur: cur.execute(sql, args).fetchall())

    def _forget(self, key: str) -> int:
        def work(cur: psycopg.Cursor[Any]) -> int:
            deleted = cur.execute("DELETE FROM callers WHERE caller_id = %s", (key,)).rowcount
            deleted += cur.execute(
                "DELETE FROM messages WHERE caller_id = %s OR callback_number = %s", (key, key)
            ).rowcount
            cur.execute("DELETE FROM campaign_contacts WHERE number = %s", (key,))
            return deleted + cur.rowcount

        return self._run(work)

    def _purge(self, cutoff: float) -> int:
        def work(cur: psycopg.Cursor[Any]) -> int:
            _maintenance_timeout(cur)  # at start-up, and the first purge after a long pause may be big
            deleted = cur.execute("DELETE FROM callers WHERE last_seen_at < %s", (cutoff,)).rowcount
            deleted += cur.execute("DELETE FROM messages WHERE created_at < %s", (cutoff,)).rowcount
            deleted += cur.execute("DELETE FROM campaign_contacts WHERE updated_at < %s", (cutoff,)).rowcount
            cur.execute("DELETE FROM campaigns WHERE updated_at < %s", (cutoff,))
            return deleted + cur.rowcount

        return self._run(work)

    def _add_do_not_call(self, key: str, at: float, note: str | None) -> Sequence[object]:
        def work(cur: psycopg.Cursor[Any]) -> Sequence[object]:
            row = cur.execute(
                f"""INSERT INTO do_not_call (number, added_at, note) VALUES (%s, %s, %s)
                    ON CONFLICT (number) DO UPDATE SET note = COALESCE(EXCLUDED.note, do_not_call.note)
                    RETURNING {DO_NOT_CALL_COLUMNS}""",
                (key, at, note),
            ).fetchone()
            assert row is not None  # an upsert with RETURNING always returns its row
            return row

        return self._run(work)

    def _remove_do_not_call(self, key: str) -> bool:
        return self._run(lambda cur: cur.execute("DELETE FROM do_not_call WHERE number = %s", (key,)).rowcount > 0)

    def _on_do_not_call(self, key: str) -> bool:
        return self._run(
            lambda cur: cur.execute("SELECT 1 FROM do_not_call WHERE number = %s", (key,)).fetchone() is not None
        )

    def _do_not_call(self) -> list[Sequence[object]]:
        return self._run(lambda cur: cur.execute(
            f"SELECT {DO_NOT_CALL_COLUMNS} FROM do_not_call ORDER BY added_at, number"
        ).fetchall())

    def _save_campaign_contacts(self, rows: list[tuple[str, int, str | None, float, str]]) -> None:
        self._run(lambda cur: cur.executemany(
            """INSERT INTO campaign_contacts (campaign_id, row_number, number, updated_at, result)
                   VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (campaign_id, row_number) DO UPDATE SET
                   updated_at = EXCLUDED.updated_at, result = EXCLUDED.result""",
            rows,
        ))

    def _campaign_contacts(self, campaign_id: str) -> list[Sequence[object]]:
        return self._run(lambda cur: cur.execute(
            "SELECT result FROM campaign_contacts WHERE campaign_id = %s ORDER BY row_number", (campaign_id,)
        ).fetchall())

    def _save_campaign(self, values: tuple[str, str, str, float, float, str]) -> None:
        self._run(lambda cur: cur.execute(
            f"""INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (campaign_id) DO UPDATE SET owner = EXCLUDED.owner, state = EXCLUDED.state,
                    updated_at = EXCLUDED.updated_at, spec = EXCLUDED.spec""",
            values,
        ))

    def _set_campaign_state(self, campaign_id: str, state: str, at: float) -> bool:
        return self._run(lambda cur: cur.execute(
            "UPDATE campaigns SET state = %s, updated_at = %s WHERE campaign_id = %s", (state, at, campaign_id)
        ).rowcount > 0)

    def _campaigns(self, owner: str | None, limit: int) -> list[Sequence[object]]:
        where, args = ("", ()) if owner is None else ("WHERE owner = %s", (owner,))
        return self._run(lambda cur: cur.execute(
            f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns {where} ORDER BY created_at DESC LIMIT %s", (*args, limit)
        ).fetchall())

    def _campaign(self, campaign_id: str) -> list[Sequence[object]]:
        return self._run(lambda cur: cur.execute(
            f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE campaign_id = %s", (campaign_id,)
        ).fetchall())

    def _save_campaign_contact_list(self, values: list[tuple[str, int, str | None, float, str, str]]) -> None:
        self._run(lambda cur: cur.executemany(
            """INSERT INTO campaign_contacts (campaign_id, row_number, number, updated_at, result, contact)
                   VALUES (%s, %s, %s, %s, %s, %s)
               ON CONFLICT (campaign_id, row_number) DO UPDATE SET
                   updated_at = EXCLUDED.updated_at, result = EXCLUDED.result, contact = EXCLUDED.contact""",
            values,
        ))

    def _campaign_contact_rows(self, campaign_id: str) -> list[Sequence[object]]:
        return self._run(lambda cur: cur.execute(
            "SELECT row_number, contact, result FROM campaign_contacts WHERE campaign_id = %s ORDER BY row_number",
            (campaign_id,),
        ).fetchall())

    # ------------------------------------------------------------------ call events

    def add_call_events(self, rows: Iterable[CallEventRow]) -> int:
        """Insert call record events (one transaction); returns how many."""
        batch = [(call_id, float(t), kind, Jsonb(_without_nul(fields))) for call_id, t, kind, fields in rows]
        if not batch:
            return 0

        def work(cur: psycopg.Cursor[Any]) -> int:
            cur.executemany("INSERT INTO call_events (call_id, t, kind, fields) VALUES (%s, %s, %s, %s)", batch)
            return len(batch)

        return self._run(work)

    def call_events(self, call_id: str) -> list[dict[str, Any]]:
        """The events of ``call_id`` as :func:`gateway.records.load_record` returns them, in write order."""
        rows = self._run(lambda cur: cur.execute(
            "SELECT t, kind, fields FROM call_events WHERE call_id = %s ORDER BY id", (call_id,)
        ).fetchall())
        return [{"t": t, "kind": kind, **(fields if isinstance(fields, dict) else {})} for t, kind, fields in rows]

    def purge_call_events(
        self,
        retention_days: float,
        now: float | None = None,
        *,
        batch_events: int = _PURGE_BATCH_EVENTS,
        budget_s: float = _PURGE_BUDGET_S,
    ) -> int:
        """Delete the events of calls whose last event is older than ``retention_days``: a whole call
        goes at once, as its JSONL file does, never half of it.  Returns rows deleted.

        Why in batches: one ``DELETE ... GROUP BY call_id`` reads the whole table in one statement,
        which on a big table (a first purge, or a shorter retention) outlives any sensible
        statement timeout and so never finishes.  Each batch takes up to ``batch_events`` of the
        oldest events (through the index on ``t``) of calls with no event after the cutoff, and
        deletes those calls whole, in its own short transaction.  After ``budget_s`` the rest waits
        for the next start (logged), so the writer thread gets to its queue.
        """
        cutoff = retention_cutoff(retention_days, now)
        if cutoff is None:
            return 0

        def batch(cur: psycopg.Cursor[Any]) -> int:
            _maintenance_timeout(cur)
            return cur.execute(
                """DELETE FROM call_events WHERE call_id IN (
                       SELECT DISTINCT call_id FROM (
                           SELECT e.call_id FROM call_events e
                           WHERE e.t < %(cutoff)s AND NOT EXISTS (
                               SELECT 1 FROM call_events n WHERE n.call_id = e.call_id AND n.t >= %(cutoff)s)
                           ORDER BY e.t LIMIT %(limit)s) AS oldest)""",
                {"cutoff": cutoff, "limit": max(1, batch_events)},
            ).rowcount

        started = time.monotonic()
        rows = batches = 0
        while True:
            deleted = self._run(batch)
            rows += deleted
            batches += 1
            if deleted == 0:
                return rows
            if time.monotonic() - started > budget_s:
                log.warning("call_events_purge_unfinished", database=self.where, rows=rows, batches=batches,
                            seconds=round(time.monotonic() - started, 1))
                return rows


def _maintenance_timeout(cur: psycopg.Cursor[Any]) -> None:
    """This transaction's statements may take :data:`_MAINTENANCE_TIMEOUT_MS` (start-up work only)."""
    cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(_MAINTENANCE_TIMEOUT_MS),))


def _without_nul(value: Any) -> Any:
    """``value`` with NUL characters removed from its strings: JSONB cannot hold U+0000."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value
