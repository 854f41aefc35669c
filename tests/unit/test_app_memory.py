"""Caller memory at start-up: a database that is away costs the memory, not the gateway."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from gateway.app import _open_memory
from gateway.store import StoreError, open_store


def _gateway_parts(database: str) -> tuple[SimpleNamespace, SimpleNamespace]:
    """The config and the shared services, as far as _open_memory reads them."""
    config = SimpleNamespace(memory=SimpleNamespace(database=database, retention_days=30.0, enabled=True))
    return config, SimpleNamespace(store=None, closed=threading.Event())


def test_a_database_away_at_start_up_is_opened_in_the_background_once_it_is_back(tmp_path):
    config, services = _gateway_parts("postgresql://vg:hunter2@db.invalid/vg")
    attempts = []

    def flaky_open(database: str):
        attempts.append(database)
        if len(attempts) < 3:
            raise StoreError("store postgresql://vg:***@db.invalid/vg: connection refused")
        return open_store(tmp_path / "memory.db")

    _open_memory(config, services, flaky_open, retry_s=0.05)
    assert services.store is None  # the gateway goes on without memory at once
    deadline = time.monotonic() + 5
    while services.store is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert services.store is not None and len(attempts) == 3
    services.store.record_call("+15551234", name="Ann")
    assert services.store.caller("+15551234").name == "Ann"
    services.closed.set()
    services.store.close()


def test_retrying_stops_when_the_gateway_stops():
    config, services = _gateway_parts("postgresql://vg@db.invalid/vg")
    attempts = []

    def never(database: str):
        attempts.append(database)
        raise StoreError("down")

    _open_memory(config, services, never, retry_s=0.05)
    time.sleep(0.2)
    services.closed.set()
    time.sleep(0.15)
    seen = len(attempts)
    time.sleep(0.2)
    assert len(attempts) == seen and services.store is None
