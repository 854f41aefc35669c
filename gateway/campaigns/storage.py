"""The database campaigns use: the do-not-call table and each contact's latest result.

Opened here, on first use, as a store of its own (the `database` of the config): an echo-only
gateway opens no caller memory, and a campaign's check or write must not queue behind the calls'
caller lookups.  With a PostgreSQL `database` every gateway shares both.  Once closed (the API
stopped), every use fails: a campaign still running then dials nobody (its do-not-call check
cannot be made) instead of reopening the database behind the shutdown's back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from gateway.store import Store, StoreError

T = TypeVar("T")


class CampaignStorage:
    """Safe to share between threads (HTTP workers, campaign threads)."""

    def __init__(self, open_store: Callable[[], Store]):
        self._open_store = open_store
        self._store: Store | None = None
        self._closed = False
        self._lock = threading.Lock()

    def run(self, work: Callable[[Store], T]) -> T:
        """`work` on the store, opened if need be; StoreError if it cannot be opened, is closed, or fails."""
        with self._lock:
            if self._closed:
                raise StoreError("campaign storage is closed")
            if self._store is None:
                self._store = self._open_store()
            store = self._store
        return work(store)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
        if store is not None:
            store.close()
