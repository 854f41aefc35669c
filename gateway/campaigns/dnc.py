"""The do-not-call list campaigns check right before each dial: a table in the gateway's database,
and optionally a plain file (one number a line, `#` comments) that another system maintains.

The table is the one the API edits (`/do-not-call`), in the campaigns' storage (`storage.py`):
with a PostgreSQL `database` every gateway shares it.  The file
is read again whenever its modification time changes, so an export dropped in place counts from
the next dial.  A list that cannot be read blocks the dial (the campaign retries the contact
later): calling someone who asked not to be called is worse than calling late.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import structlog

from gateway.campaigns.storage import CampaignStorage
from gateway.store import DoNotCallEntry, Store, StoreError, do_not_call_key

log = structlog.get_logger("campaign")
T = TypeVar("T")


class DoNotCallError(RuntimeError):
    """The list could not be read or written (the message names the database or the file)."""


class DoNotCallList:
    """Safe to share between threads (HTTP workers, campaign threads)."""

    def __init__(self, storage: CampaignStorage, file: Path | None = None):
        self._storage = storage
        self.file = file
        self._file_numbers: frozenset[str] = frozenset()
        self._file_mtime: float | None = None
        self._file_lock = threading.Lock()

    def blocked(self, number: str) -> bool:
        """Whether `number` is on the list (table or file); DoNotCallError if that cannot be known."""
        key = do_not_call_key(number)
        if key is None:
            return False
        if key in self._file_keys():
            return True
        return self._with_store(lambda store: store.on_do_not_call(key))

    def add(self, number: str, note: str | None = None) -> DoNotCallEntry:
        """ValueError for something that is not a number; DoNotCallError if the table cannot be written."""
        return self._with_store(lambda store: store.add_do_not_call(number, note))

    def remove(self, number: str) -> bool:
        return self._with_store(lambda store: store.remove_do_not_call(number))

    def entries(self) -> list[DoNotCallEntry]:
        return self._with_store(lambda store: store.do_not_call())

    def file_numbers(self) -> list[str]:
        return sorted(self._file_keys())

    def close(self) -> None:
        """Close the table's storage; the list then answers DoNotCallError (a campaign dials nobody)."""
        self._storage.close()

    def _with_store(self, work: Callable[[Store], T]) -> T:
        try:
            return self._storage.run(work)
        except StoreError as exc:
            raise DoNotCallError(f"do-not-call list: {exc}") from None

    def _file_keys(self) -> frozenset[str]:
        if self.file is None:
            return frozenset()
        with self._file_lock:
            return self._reload_file(self.file)

    def _reload_file(self, file: Path) -> frozenset[str]:
        try:
            mtime = file.stat().st_mtime
            if mtime != self._file_mtime:
                lines = file.read_text(encoding="utf-8").splitlines()
                keys = (do_not_call_key(line.split("#", 1)[0]) for line in lines)
                self._file_numbers = frozenset(k for k in keys if k is not None)
                self._file_mtime = mtime
                log.info("do_not_call_file_loaded", path=str(file), numbers=len(self._file_numbers))
        except (OSError, UnicodeDecodeError) as exc:
            raise DoNotCallError(f"do-not-call file {file}: {exc}") from None
        return self._file_numbers
