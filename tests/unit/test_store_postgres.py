"""PostgreSQL-only behaviour of the store: several processes on one database, a server that goes
away and comes back, secrets kept out of messages and logs, and the call-event table.

The shared semantics (upserts, messages, forgetting, retention) are in test_store.py, which
runs against both backends.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from structlog.testing import capture_logs

from gateway.store import StoreError, is_postgres_dsn, open_store, redact_dsn
from gateway.store.dsn import dsn_password
from gateway.store.postgres import SCHEMA_VERSION, PostgresStore
from tests.rig.postgres import PASSWORD, PostgresServer

DAY = 86_400.0
CALLS_PER_PROCESS = 60


# --------------------------------------------------------------------------- DSNs


@pytest.mark.parametrize(("dsn", "shown"), [
    ("postgresql://vg:s3cret@db.example:5432/voicegate", "postgresql://vg:***@db.example:5432/voicegate"),
    ("postgres://vg:s3cret@db/voicegate?sslmode=require", "postgres://vg:***@db/voicegate?sslmode=require"),
    ("postgresql://vg@db/voicegate?password=s3cret&sslmode=require",
     "postgresql://vg@db/voicegate?password=***&sslmode=require"),
    ("postgresql://db/voicegate", "postgresql://db/voicegate"),
    ("mysql://root:s3cret@db/x", "mysql://root:***@db/x"),
])
def test_redact_dsn(dsn: str, shown: str):
    assert redact_dsn(dsn) == shown


@pytest.mark.parametrize(("dsn", "shown", "password"), [
    # typed as is: "/", "#", "?" or "@" end a URL's authority early, so a URL parser misses the password
    ("postgresql://voice:ab/cd@db/voice", "postgresql://voice:***@db/voice", "ab/cd"),
    ("postgresql://voice:ab#cd@db:5432/voice", "postgresql://voice:***@db:5432/voice", "ab#cd"),
    ("postgresql://voice:ab?cd@db/voice?sslmode=require", "postgresql://voice:***@db/voice?sslmode=require", "ab?cd"),
    ("postgresql://voice:a@b@db/voice", "postgresql://voice:***@db/voice", "a@b"),
    # percent-encoded, as libpq wants it: shown encoded, returned decoded
    ("postgresql://voice:a%40b%2Fc@db/voice", "postgresql://voice:***@db/voice", "a@b/c"),
    ("postgresql://:s3cret@db/voice", "postgresql://:***@db/voice", "s3cret"),
    # in the query: libpq splits parameters only at "&", so a "#" belongs to the password
    ("postgresql://voice@db/voice?password=ab#cd&sslmode=require",
     "postgresql://voice@db/voice?password=***&sslmode=require", "ab#cd"),
    # none
    ("postgresql://voice@db/voice", "postgresql://voice@db/voice", None),
    ("postgresql://voice:@db/voice", "postgresql://voice:***@db/voice", None),
    ("postgresql://db:5432/voice?sslmode=require", "postgresql://db:5432/voice?sslmode=require", None),
])
def test_passwords_with_special_characters_are_found_and_hidden(dsn: str, shown: str, password: str | None):
    assert redact_dsn(dsn) == shown
    assert dsn_password(dsn) == password


@pytest.mark.parametrize(("database", "postgres"), [
    ("postgresql://db/x", True), ("postgres://db/x", True), ("PostgreSQL://db/x", True),
    ("/var/lib/voicegate/vg.db", False), ("vg.db", False), ("postgresql.db", False),
])
def test_backend_is_chosen_by_the_scheme(database: str, postgres: bool):
    assert is_postgres_dsn(database) is postgres


def test_open_store_picks_postgres(postgres_dsn: str):
    with open_store(postgres_dsn) as store:
        assert isinstance(store, PostgresStore)
        assert store.where == postgres_dsn.replace(PASSWORD, "***")


# --------------------------------------------------------------------------- failures, without secrets


def test_wrong_password_is_a_store_error_without_the_password(postgres_server: PostgresServer):
    dsn = postgres_server.dsn("postgres", password=PASSWORD + "-wrong")
    with pytest.raises(StoreError) as info:
        PostgresStore(dsn)
    message = str(info.value)
    assert PASSWORD not in message and "cannot open store" in message and ":***@" in message, message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no driver text in a traceback


def test_unreachable_server_is_a_store_error_without_the_password(postgres_server: PostgresServer):
    dsn = f"postgresql://voicegate:{PASSWORD}@127.0.0.1:1/nowhere"
    with pytest.raises(StoreError) as info:
        PostgresStore(dsn, connect_timeout_s=2)
    assert PASSWORD not in str(info.value) and "127.0.0.1:1" in str(info.value)


def test_password_from_pgpassword(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch):
    """libpq's own PGPASSWORD (or ~/.pgpass) is enough: the DSN in the config needs no secret."""
    database = postgres_server.create_database().rsplit("/", 1)[1]
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    with PostgresStore(postgres_server.dsn(database, password=None)) as store:
        assert store.record_call("1001", name="Ann") is not None


def test_a_restarted_server_is_reconnected_on_the_next_operation(
        postgres_server: PostgresServer, postgres_dsn: str):
    with PostgresStore(postgres_dsn, connect_timeout_s=2) as store, capture_logs() as logs:
        store.record_call("+15551234", name="Alice")
        postgres_server.restart()
        record = store.record_call("+15551234")  # the old connection is dead: reconnect, run once more
        assert record is not None and record.call_count == 2 and record.name == "Alice"

        postgres_server.stop()
        try:
            with pytest.raises(StoreError) as info:
                store.caller("+15551234")
            assert PASSWORD not in str(info.value) and ":***@" in str(info.value)
        finally:
            postgres_server.start()
        caller = store.caller("+15551234")  # back: the next operation works again
        assert caller is not None and caller.call_count == 2
    assert any(e["event"] == "store_retrying" for e in logs)
    assert all(PASSWORD not in repr(e) for e in logs)


def test_newer_schema_is_refused(postgres_dsn: str):
    PostgresStore(postgres_dsn).close()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        PostgresStore(postgres_dsn)


def test_a_role_without_ddl_rights_opens_a_migrated_store(postgres_server: PostgresServer, postgres_dsn: str):
    """The gateway, `voicegate report` and the call-event writer may log in as a role that can only
    read and write rows (PostgreSQL 15 gives no CREATE on schema public by default): opening a
    store whose schema is current must need no DDL, no UPDATE of schema_version."""
    PostgresStore(postgres_dsn).close()  # migrated by the owner
    database = postgres_dsn.rsplit("/", 1)[1]
    role, password = f"{database}_dml", "dml-Pw7"
    postgres_server.admin(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    postgres_server.admin("; ".join([
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON callers, messages, call_events TO {role}",
        f"GRANT SELECT ON schema_version TO {role}",
    ]), database)
    dsn = postgres_dsn.replace(f"voicegate:{PASSWORD}@", f"{role}:{password}@")
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE t (x INTEGER)")  # the role really has no DDL rights

    with PostgresStore(dsn) as store:
        record = store.record_call("+15551234", name="Ann")
        assert record is not None and record.call_count == 1
        assert store.add_call_events([("call-a", 1.0, "call_start", {})]) == 1
        assert store.take_message("call back", caller_id="+15551234") > 0  # identity columns: no sequence grant
    with PostgresStore(dsn) as store:  # and again: still nothing to migrate
        assert store.caller("+15551234") is not None


# --------------------------------------------------------------------------- a slow database


def _with_options(dsn: str, options: str) -> str:
    return f"{dsn}?options={quote(options)}"


def _hold_caller_row(dsn: str, caller_id: str) -> psycopg.Connection[Any]:
    """Another gateway's transaction that holds the caller's row lock until rolled back."""
    conn = psycopg.connect(dsn)
    conn.execute("INSERT INTO callers (caller_id, last_seen_at) VALUES (%s, 0) ON CONFLICT DO NOTHING", (caller_id,))
    conn.commit()
    conn.execute("SELECT 1 FROM callers WHERE caller_id = %s FOR UPDATE", (caller_id,))
    return conn


def _wait_until_blocked(dsn: str, timeout_s: float = 5.0) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone() != (0,):
                return
            time.sleep(0.02)
    raise AssertionError("the store's statement never waited on the row lock")


def test_connection_defaults_bound_a_dead_link_and_the_dsn_wins(postgres_dsn: str):
    with PostgresStore(postgres_dsn) as store:
        params = store._run(lambda cur: cur.connection.info.get_parameters())
        timeout = store._run(lambda cur: cur.execute("SHOW statement_timeout").fetchone())
    assert params["keepalives"] == "1" and params["tcp_user_timeout"] == "5000"
    assert params["keepalives_idle"] == "5" and params["connect_timeout"] == "5"
    assert timeout == ("5s",)

    dsn = _with_options(postgres_dsn, "-c statement_timeout=7000 -c search_path=public") \
        + "&keepalives_idle=30&connect_timeout=9&application_name=ops"
    with PostgresStore(dsn) as store:
        params = store._run(lambda cur: cur.connection.info.get_parameters())
        settings = store._run(lambda cur: cur.execute(
            "SELECT current_setting('statement_timeout'), current_setting('search_path'), "
            "current_setting('application_name')").fetchone())
    assert params["keepalives_idle"] == "30" and params["connect_timeout"] == "9"
    assert params["tcp_user_timeout"] == "5000"  # not in the DSN: ours
    assert settings == ("7s", "public", "ops")


def test_a_statement_timeout_is_raised_at_once_not_retried(postgres_dsn: str):
    """A statement stuck behind another gateway's row lock is cancelled by statement_timeout; the
    store raises then, instead of running it again (which would double the wait under the lock)."""
    PostgresStore(postgres_dsn).close()
    holder = _hold_caller_row(postgres_dsn, "+15551234")
    try:
        with PostgresStore(_with_options(postgres_dsn, "-c statement_timeout=500")) as store, \
                capture_logs() as logs:
            t0 = time.monotonic()
            with pytest.raises(StoreError, match="statement timed out") as info:
                store.record_call("+15551234")
            elapsed = time.monotonic() - t0
            assert 0.45 < elapsed < 0.95, f"{elapsed:.3f} s: one timeout, not two"
            assert PASSWORD not in str(info.value)
            holder.rollback()
            record = store.record_call("+15551234")  # the store goes on; nothing was counted
            assert record is not None and record.call_count == 1
        assert not any(e["event"] == "store_retrying" for e in logs)
    finally:
        holder.close()


def test_behind_a_stuck_operation_other_threads_get_busy_not_a_queue(postgres_dsn: str):
    """One operation stuck on the database holds the store's connection; another thread gives up
    after the lock timeout with "database busy", and close() does not hang on the stuck one."""
    PostgresStore(postgres_dsn).close()
    holder = _hold_caller_row(postgres_dsn, "+15551234")
    store = PostgresStore(postgres_dsn, lock_timeout_s=0.3)
    outcome: list[object] = []
    stuck = threading.Thread(target=lambda: outcome.append(store.record_call("+15551234")))
    try:
        stuck.start()
        _wait_until_blocked(postgres_dsn)
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="database busy"):
            store.caller("+15559999")
        elapsed = time.monotonic() - t0
        assert 0.25 < elapsed < 1.0, f"{elapsed:.3f} s"

        with capture_logs() as logs:
            t0 = time.monotonic()
            store.close()  # gives up on the stuck operation after the lock timeout
            assert time.monotonic() - t0 < 1.0
        assert [e["event"] for e in logs] == ["store_close_busy"]
    finally:
        holder.rollback()
        holder.close()
        stuck.join(10)
    assert not stuck.is_alive()
    assert len(outcome) == 1 and outcome[0] is not None  # the stuck one finished once the row was free
    with pytest.raises(StoreError, match="closed"):
        store.caller("+15551234")


def test_call_events_are_purged_in_bounded_batches(postgres_dsn: str):
    now = 100 * DAY
    with PostgresStore(postgres_dsn) as store:
        old = [(f"old-{n}", now - 40 * DAY + 10 * n + i, "tick", {}) for n in range(5) for i in range(3)]
        store.add_call_events([*old, ("spans", now - 31 * DAY, "call_start", {}),
                               ("spans", now - DAY, "call_end", {}), ("new", now - DAY, "call_start", {})])
        assert store.purge_call_events(30, now=now, batch_events=2) == 15
        assert all(store.call_events(f"old-{n}") == [] for n in range(5))
        assert len(store.call_events("spans")) == 2 and len(store.call_events("new")) == 1

        store.add_call_events(old)
        with capture_logs() as logs:  # out of time after one batch (old-0): the rest waits for the next start
            assert store.purge_call_events(30, now=now, batch_events=2, budget_s=0) == 3
        assert [e["event"] for e in logs] == ["call_events_purge_unfinished"]
        assert store.purge_call_events(30, now=now) == 12


# --------------------------------------------------------------------------- several gateways


def _record_calls(dsn: str, start: multiprocessing.synchronize.Barrier, worker: int) -> None:
    """One 'gateway': opens (and so migrates) the store when the others do, then records calls."""
    start.wait(timeout=30)
    with open_store(dsn) as store:
        for i in range(CALLS_PER_PROCESS):
            store.record_call("+15551234", name=f"gateway-{worker}", at=1000.0 + i)
            store.add_open_request("+15551234", f"request from {worker}-{i % 3}")


def test_two_processes_migrate_and_record_the_same_caller_at_once(postgres_dsn: str):
    """Two gateways start on an empty database at the same moment (one migrates, the other waits
    on the advisory lock) and count calls of one caller concurrently: no error, no lost update."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter, as a second gateway would be
    start = ctx.Barrier(2)
    workers = [ctx.Process(target=_record_calls, args=(postgres_dsn, start, n)) for n in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    with open_store(postgres_dsn) as store:
        record = store.caller("+15551234")
    assert record is not None
    assert record.call_count == 2 * CALLS_PER_PROCESS
    assert record.last_call_at == 1000.0 + CALLS_PER_PROCESS - 1
    assert sorted(record.open_requests) == sorted(f"request from {w}-{i}" for w in range(2) for i in range(3))
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


# --------------------------------------------------------------------------- call events


def test_call_events_round_trip_in_write_order(postgres_dsn: str):
    with PostgresStore(postgres_dsn) as store:
        assert store.add_call_events([
            ("call-a", 10.0, "call_start", {"call_id": "call-a", "remote": "sip:1@x"}),
            ("call-b", 11.0, "call_start", {"call_id": "call-b"}),
            ("call-a", 9.5, "turn", {"turn": 1, "stages": {"first_rtp_ms": 812.5, "llm_first_token_ms": None},
                                     "caller": "nul\x00byte"}),
            ("call-a", 12.0, "call_end", {"reason": "remote_bye"}),
        ]) == 4
        events = store.call_events("call-a")
        assert [e["kind"] for e in events] == ["call_start", "turn", "call_end"]  # write order, not t order
        assert events[1] == {"t": 9.5, "kind": "turn", "turn": 1, "caller": "nulbyte",
                             "stages": {"first_rtp_ms": 812.5, "llm_first_token_ms": None}}
        assert store.call_events("no-such-call") == []
        assert store.add_call_events([]) == 0


def test_call_events_are_purged_a_whole_call_at_a_time(postgres_dsn: str):
    now = 100 * DAY
    with PostgresStore(postgres_dsn) as store:
        store.add_call_events([
            ("old", now - 40 * DAY, "call_start", {}), ("old", now - 40 * DAY + 60, "call_end", {}),
            ("spans", now - 31 * DAY, "call_start", {}), ("spans", now - 29 * DAY, "call_end", {}),
            ("new", now - DAY, "call_start", {}),
        ])
        assert store.purge_call_events(30, now=now) == 2
        assert store.call_events("old") == []
        assert len(store.call_events("spans")) == 2  # its last event is recent: the whole call stays
        assert store.purge_call_events(float("inf"), now=now) == 0
        with pytest.raises(ValueError):
            store.purge_call_events(-1)


def test_operations_after_close_raise_store_error(postgres_dsn: str):
    store = PostgresStore(postgres_dsn)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.caller("1001")


def test_a_statement_error_rolls_back_and_the_store_goes_on(postgres_dsn: str):
    with PostgresStore(postgres_dsn) as store:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE messages ADD CONSTRAINT short CHECK (length(text) < 10)")
        with pytest.raises(StoreError, match="short"):
            store.take_message("this message is far too long")
        assert store.take_message("fits") > 0
        t0 = time.monotonic()
        assert [m.text for m in store.messages()] == ["fits"]
        assert time.monotonic() - t0 < 1.0
