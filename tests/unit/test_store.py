"""The store: caller memory, messages, forgetting, retention, sharing across threads and processes.

The behaviour tests run against both backends (``store`` is parametrized over SQLite and a real
PostgreSQL started by the session fixture in tests/conftest.py); file-level checks are SQLite's.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.store import (
    MAX_OPEN_REQUESTS,
    SCHEMA_VERSION,
    SqliteStore,
    Store,
    StoreError,
    normalize_caller_id,
    open_store,
)

DAY = 86_400.0


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each backend: a SQLite path, or a PostgreSQL DSN (with a password)."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_dsn")
    return str(tmp_path / "data" / "voicegate.db")


@pytest.fixture
def store(database: str):
    with open_store(database) as s:
        yield s


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ('"Alice" <sip:+15551234@pbx>', "+15551234"),
        ("<sip:+15551234@pbx;transport=udp>;tag=abc", "+15551234"),
        ("sip:1001@192.168.1.10:5060", "1001"),
        ("sips:1001@pbx.example.com", "1001"),
        ("SIP:bob@example.com", "bob"),
        ("tel:+1-555-123-4567;phone-context=example.com", "+15551234567"),
        ("+1 (555) 123-4567", "+15551234567"),
        ("0049 30 1234567", "0049301234567"),
        ("1001", "1001"),
        ("+15551234", "+15551234"),  # already normalized: idempotent
        ("sip:+15551234;user=phone@pbx", "+15551234"),
        ('"Anonymous" <sip:anonymous@anonymous.invalid>', None),
        ("sip:Unknown@pbx", None),
        ("anonymous", None),
        ("unknown", None),
        ("restricted", None),
        ("", None),
        ("   ", None),
        ("<sip:@pbx>", None),
        (None, None),
    ],
)
def test_normalize_caller_id(raw: str | None, key: str | None):
    assert normalize_caller_id(raw) == key
    if key is not None:
        assert normalize_caller_id(key) == key


def test_creates_parent_dirs_schema_and_wal(tmp_path: Path):
    path = tmp_path / "a" / "b" / "store.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"callers", "messages", "schema_version"} <= tables
    finally:
        db.close()


def test_reopening_keeps_data_and_does_not_migrate_twice(database: str):
    with open_store(database) as s:
        s.record_call("+15551234", name="Alice")
    with open_store(database) as s:
        record = s.caller("+15551234")
    assert record is not None and record.name == "Alice"


def test_record_call_upserts_and_keeps_name(store: Store):
    assert store.caller("+15551234") is None
    first = store.record_call('"Alice" <sip:+15551234@pbx>', name="Alice Jones", reason="my bill", at=1000.0)
    assert first is not None
    assert (first.caller_id, first.name, first.last_reason, first.last_call_at, first.call_count) == (
        "+15551234",
        "Alice Jones",
        "my bill",
        1000.0,
        1,
    )
    second = store.record_call("sip:+15551234@other", at=2000.0)
    assert second is not None
    assert (second.name, second.last_reason, second.last_call_at, second.call_count) == (
        "Alice Jones",
        "my bill",
        2000.0,
        2,
    )
    third = store.record_call("+15551234", name="Alice Smith", reason="a refund", at=3000.0)
    assert third is not None and (third.name, third.last_reason, third.call_count) == ("Alice Smith", "a refund", 3)
    assert store.caller("tel:+1 555 1234") == third


def test_record_is_frozen(store: Store):
    record = store.record_call("1001")
    assert record is not None
    with pytest.raises(AttributeError):
        record.name = "x"  # type: ignore[misc]


def test_anonymous_callers_are_not_remembered(store: Store):
    assert store.record_call("anonymous", name="X") is None
    store.add_open_request("sip:anonymous@anonymous.invalid", "call back")
    assert store.close_open_requests("unknown") == 0
    assert store.forget("anonymous") == 0
    assert store.caller("anonymous") is None


def test_open_requests(store: Store):
    store.add_open_request("+15551234", "  send the   quote ")
    store.add_open_request("+15551234", "call back about the leak")
    store.add_open_request("+15551234", "send the quote")  # duplicate moves to the end
    store.add_open_request("+15551234", "   ")  # ignored
    record = store.caller("+15551234")
    assert record is not None
    assert record.open_requests == ("call back about the leak", "send the quote")
    assert record.call_count == 0 and record.last_call_at is None  # a request is not a call

    store.record_call("+15551234", name="Bob")
    record = store.caller("+15551234")
    assert record is not None and len(record.open_requests) == 2  # a call does not close them

    assert store.close_open_requests("+15551234") == 2
    record = store.caller("+15551234")
    assert record is not None and record.open_requests == () and record.name == "Bob"
    assert store.close_open_requests("+15550000") == 0


def test_open_requests_are_bounded(store: Store):
    for i in range(MAX_OPEN_REQUESTS + 5):
        store.add_open_request("1001", f"request {i}")
    record = store.caller("1001")
    assert record is not None
    assert len(record.open_requests) == MAX_OPEN_REQUESTS
    assert record.open_requests[-1] == f"request {MAX_OPEN_REQUESTS + 4}"


def test_take_message_and_list(store: Store):
    first = store.take_message(
        "Please call me back about the quote",
        caller_id='"Alice" <sip:+15551234@pbx>',
        caller_name="Alice",
        callback_number="+1 (555) 999-0000",
        call_id="call-1",
        transcript="caller: hi\nagent: hello",
        agent="reception",
        at=100.0,
    )
    second = store.take_message("Leak in the kitchen", caller_id="anonymous", at=200.0)
    assert second > first
    messages = store.messages()
    assert [m.id for m in messages] == [first, second]
    m = messages[0]
    assert (m.created_at, m.caller_id, m.caller_name, m.callback_number, m.call_id, m.agent) == (
        100.0,
        "+15551234",
        "Alice",
        "+15559990000",
        "call-1",
        "reception",
    )
    assert m.transcript == "caller: hi\nagent: hello"
    assert messages[1].caller_id is None and messages[1].transcript is None
    assert [x.id for x in store.messages(since=150.0)] == [second]
    assert [x.id for x in store.messages(since=100.0)] == [first, second]  # inclusive
    with pytest.raises(ValueError):
        store.take_message("   ")


def test_forget_deletes_caller_and_their_messages(store: Store):
    store.record_call("+15551234", name="Alice")
    store.take_message("one", caller_id="+15551234")
    store.take_message("two", caller_id="sip:+15551234@pbx")
    store.take_message("left while anonymous", caller_id="anonymous", callback_number="+1 555 1234")
    store.take_message("someone else", caller_id="+15550000")
    store.record_call("+15550000")

    assert store.forget('"Alice" <sip:+15551234@pbx>') == 4
    assert store.caller("+15551234") is None
    assert [m.text for m in store.messages()] == ["someone else"]
    assert store.caller("+15550000") is not None
    assert store.forget("+15551234") == 0


def test_forget_leaves_no_copy_in_the_file(tmp_path: Path):
    path = tmp_path / "store.db"
    with SqliteStore(path) as s:
        s.record_call("+15551234", name="Zebediah Quuxworth")
        s.take_message("secret-marker-text", caller_id="+15551234")
        s.forget("+15551234")
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"Zebediah" not in data and b"secret-marker-text" not in data


def test_purge_with_fake_now(store: Store):
    now = 100 * DAY
    store.record_call("old", at=now - 40 * DAY)
    store.record_call("recent", at=now - 10 * DAY)
    store.record_call("came-back", at=now - 90 * DAY)
    store.record_call("came-back", at=now - 1 * DAY)
    store.take_message("old message", caller_id="recent", at=now - 31 * DAY)
    store.take_message("new message", caller_id="old", at=now - 29 * DAY)

    assert store.purge(30, now=now) == 2
    assert store.caller("old") is None
    assert store.caller("recent") is not None
    assert store.caller("came-back") is not None
    assert [m.text for m in store.messages()] == ["new message"]
    assert store.purge(30, now=now) == 0
    assert store.purge(float("inf"), now=now) == 0
    assert store.purge(0.5, now=now) == 3
    with pytest.raises(ValueError):
        store.purge(-1, now=now)


def test_concurrent_record_calls_stay_consistent(store: Store):
    threads_n, calls_n = 4, 50
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def worker(i: int) -> None:
        try:
            start.wait()
            for j in range(calls_n):
                store.record_call("+15551234", name=f"T{i}")
                store.record_call(f"thread-{i}", at=float(j))
                if j % 10 == 0:
                    store.take_message(f"{i}-{j}", caller_id=f"thread-{i}")
                    store.caller("+15551234")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    shared = store.caller("+15551234")
    assert shared is not None and shared.call_count == threads_n * calls_n
    for i in range(threads_n):
        own = store.caller(f"thread-{i}")
        assert own is not None and own.call_count == calls_n and own.last_call_at == calls_n - 1
    assert len(store.messages()) == threads_n * calls_n // 10


def test_directory_path_raises_store_error(tmp_path: Path):
    with pytest.raises(StoreError) as info:
        SqliteStore(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_not_a_database_raises_store_error(tmp_path: Path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(StoreError, match="cannot open store"):
        SqliteStore(path)


def test_newer_schema_is_refused(tmp_path: Path):
    path = tmp_path / "store.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(path)


def test_store_error_is_a_runtime_error():
    assert issubclass(StoreError, RuntimeError)


# --------------------------------------------------------------------------- do-not-call list


def test_do_not_call_matches_any_spelling_of_a_number(store: Store):
    first = store.add_do_not_call("0049 (30) 123-4567", "asked on the call", at=1000.0)
    assert first.number == "+49301234567" and first.added_at == 1000.0
    for spelling in ("+49 30 1234567", "sip:+49301234567@pbx", "tel:+49-30-123-4567", "0049301234567"):
        assert store.on_do_not_call(spelling), spelling
    assert not store.on_do_not_call("+49301234568")
    assert not store.on_do_not_call("030 1234567")  # national: no country is assumed


def test_do_not_call_add_again_keeps_the_date_and_takes_a_new_note(store: Store):
    store.add_do_not_call("2001", "first", at=1000.0)
    again = store.add_do_not_call("2001", None, at=2000.0)
    assert (again.added_at, again.note) == (1000.0, "first")
    store.add_do_not_call("2002", at=1500.0)
    assert store.add_do_not_call("2001", "  second\n note ", at=3000.0).note == "second note"
    assert [(e.number, e.note) for e in store.do_not_call()] == [("2001", "second note"), ("2002", None)]
    assert store.remove_do_not_call("sip:2001@pbx") is True
    assert store.remove_do_not_call("2001") is False
    assert [e.number for e in store.do_not_call()] == ["2002"]
    with pytest.raises(ValueError, match="not a number"):
        store.add_do_not_call("anonymous")


def test_do_not_call_outlives_forget_and_purge(store: Store):
    store.add_do_not_call("+15551234", at=0.0)
    store.record_call("+15551234", name="Ann", at=0.0)
    store.forget("+15551234")  # forgetting a caller must not put them back on the call lists
    store.purge(1, now=10 * DAY)
    assert store.on_do_not_call("+1 555 1234")


def older_file(path: Path, version: int, *statements: str) -> Path:
    """A store file as an older gateway left it: today's schema taken back by `statements`."""
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    for statement in (*statements, f"UPDATE schema_version SET version = {version}"):
        db.execute(statement)
    db.commit()
    db.close()
    return path


def test_a_version_1_file_gets_the_campaign_tables(tmp_path: Path):
    path = older_file(tmp_path / "store.db", 1, "DROP TABLE do_not_call", "DROP TABLE campaign_contacts",
                      "DROP TABLE campaigns")
    with SqliteStore(path) as store:
        store.add_do_not_call("2001")
        assert store.on_do_not_call("2001")
        store.save_campaign_contacts("c", [(1, {"to": "2001"})])
        assert store.campaign_contacts("c") == [{"to": "2001"}]


def test_campaign_results_are_kept_per_row_and_purged_with_the_callers(store: Store):
    store.save_campaign_contacts("c1", [(2, {"to": "2002", "status": "pending"}), (1, {"to": "2001"})], at=0.0)
    store.save_campaign_contacts("c1", [(2, {"to": "2002", "status": "done", "outcome": "busy"})], at=5 * DAY)
    store.save_campaign_contacts("c2", [(1, {"to": "3001"})], at=5 * DAY)
    assert store.campaign_contacts("c1") == [{"to": "2001"}, {"to": "2002", "status": "done", "outcome": "busy"}]
    assert store.campaign_contacts("nope") == []
    assert store.purge(2, now=6 * DAY) == 1  # row 1 of c1, unchanged since day 0
    assert [r["to"] for r in store.campaign_contacts("c1")] == ["2002"]


def test_forget_deletes_the_callers_campaign_results(store: Store):
    store.save_campaign_contacts("c1", [(1, {"to": "sip:+1 555 1234@pbx"}), (2, {"to": "2002"})])
    assert store.forget("+15551234") == 1
    assert store.campaign_contacts("c1") == [{"to": "2002"}]


# --------------------------------------------------------------------------- campaigns that survive a restart


def test_campaigns_are_kept_with_owner_state_and_spec(store: Store):
    store.save_campaign("c1", "host:5080", "running", {"concurrency": 2, "policy": {"max_attempts": 3}}, at=10.0)
    store.save_campaign("c2", "other:5080", "paused", {"concurrency": 1}, at=20.0)
    store.save_campaign("c1", "host:5080", "running", {"concurrency": 3}, at=30.0)  # again: created_at stays
    c1 = store.campaign("c1")
    assert c1 is not None
    assert (c1.owner, c1.state, c1.created_at, c1.updated_at, c1.spec) == (
        "host:5080", "running", 10.0, 30.0, {"concurrency": 3})
    assert [c.campaign_id for c in store.campaigns()] == ["c2", "c1"]  # newest first
    assert [c.campaign_id for c in store.campaigns(owner="host:5080")] == ["c1"]
    assert [c.campaign_id for c in store.campaigns(states=["paused", "finished"])] == ["c2"]
    assert store.set_campaign_state("c1", "finished", at=40.0) is True
    assert store.set_campaign_state("nope", "finished") is False
    assert store.campaign("c1").state == "finished"
    assert store.campaign("nope") is None


def test_campaign_contacts_keep_their_dialling_details_and_forget_removes_them(store: Store):
    contact = {"to": "sip:+1 555 1234@pbx", "timezone": "Europe/Berlin", "variables": {"name": "Ann"}}
    store.save_campaign_contact_list("c1", [(1, contact, {"row": 1, "status": "calling"}),
                                            (2, {"to": "2002"}, {"row": 2, "status": "pending"})])
    store.save_campaign_contact_list("c1", [(2, {"to": "2002"}, {"row": 2, "status": "done"})])
    rows = store.campaign_contact_rows("c1")
    assert [(r.row, r.contact, r.result["status"]) for r in rows] == [
        (1, contact, "calling"), (2, {"to": "2002"}, "done")]
    assert store.campaign_contacts("c1")[1] == {"row": 2, "status": "done"}  # the results API reads the same rows
    assert store.forget("+15551234") == 1  # the forgotten person's name and number leave with the row
    assert [r.row for r in store.campaign_contact_rows("c1")] == [2]


def test_campaigns_are_purged_with_their_results(store: Store):
    store.save_campaign("old", "h:1", "finished", {}, at=0.0)
    store.save_campaign("new", "h:1", "running", {}, at=5 * DAY)
    store.purge(2, now=6 * DAY)
    assert [c.campaign_id for c in store.campaigns()] == ["new"]


def test_a_version_2_file_gets_the_campaign_state(tmp_path: Path):
    path = older_file(tmp_path / "store.db", 2, "DROP TABLE campaigns",
                      "ALTER TABLE campaign_contacts DROP COLUMN contact",
                      "INSERT INTO campaign_contacts VALUES ('c', 1, '2001', 0, '{\"row\": 1}')")
    with SqliteStore(path) as store:
        assert [(r.row, r.contact, r.result) for r in store.campaign_contact_rows("c")] == [(1, None, {"row": 1})]
        store.save_campaign("c", "h:1", "running", {})
        assert store.campaign("c").state == "running"
