"""One PostgreSQL connection behind one lock, shared by a store's threads: connect, run a short
transaction, reconnect once, give up in bounded time.

Split out of :mod:`gateway.store.postgres` so the store reads as its SQL; why one connection and
not a pool, and every timeout below, is explained in that module's docstring ("Connections",
"Failures", "Slow or unreachable database", "Secrets").
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict
from psycopg.errors import QueryCanceled

from gateway.store.base import StoreError
from gateway.store.dsn import dsn_password, redact_dsn

log = structlog.get_logger("store")
T = TypeVar("T")

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 5_000  # a call-path operation: a caller lookup, a call count, a message
LOCK_TIMEOUT_S = 5.0
# libpq parameters that bound a dead link (see gateway.store.postgres); a DSN's own value wins
_LINK_DEFAULTS = {
    "keepalives": "1",
    "keepalives_idle": "5",  # seconds idle before the first probe
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "5000",  # ms that sent data (or a probe) may stay unacknowledged
}


class PgConnection:
    """The connection, opened on first use and again after it was lost; safe to share between threads."""

    def __init__(self, dsn: str, *, connect_timeout_s: int = CONNECT_TIMEOUT_S,
                 lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.where = redact_dsn(dsn)
        self._dsn = dsn
        self._secret = dsn_password(dsn)
        self._connect_timeout_s = connect_timeout_s
        self._lock_timeout_s = lock_timeout_s
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False

    def close(self) -> None:
        """Close the connection; if an operation still holds it (a stuck statement), do not wait
        for it past the lock timeout: that operation drops the connection when it ends."""
        self._closed = True
        if not self._lock.acquire(timeout=self._lock_timeout_s):
            log.warning("store_close_busy", database=self.where)
            return
        try:
            self._drop()
        finally:
            self._lock.release()

    def _message(self, exc: BaseException) -> str:
        """The driver's message without the password (a malformed DSN is echoed back by libpq)."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self._secret:
            text = text.replace(self._secret, "***")
        return text.replace(self._dsn, self.where)

    def _open(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._dsn, **self._connect_args())
        except (psycopg.Error, ValueError) as exc:
            raise StoreError(f"{self.where}: cannot connect: {self._message(exc)}") from None

    def _connect_args(self) -> dict[str, str]:
        """Our libpq defaults for the parameters the DSN does not set.

        psycopg's keyword arguments override the DSN, so only the missing ones are passed: an
        operator's ``?connect_timeout=`` or ``?keepalives_idle=`` is honoured.  ``options`` is
        merged instead, ours first, so a DSN's ``-c statement_timeout=...`` wins and its other
        options (``-c search_path=...``) are kept.
        """
        given = conninfo_to_dict(self._dsn)
        defaults = {**_LINK_DEFAULTS, "connect_timeout": str(self._connect_timeout_s), "application_name": "voicegate"}
        args = {key: value for key, value in defaults.items() if key not in given}
        args["options"] = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} {given.get('options') or ''}".strip()
        return args

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def run(self, work: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """``work`` in one transaction under the lock; reconnect and run again once if the connection
        was lost before COMMIT (the server rolled the transaction back, so nothing is counted twice).

        The lock is waited for at most ``lock_timeout_s``: behind a stuck operation, a call thread
        gets "database busy" (no memory this time) instead of queueing for the stuck one's timeout.
        """
        if not self._lock.acquire(timeout=self._lock_timeout_s):
            raise StoreError(f"{self.where}: database busy: another operation has held the connection "
                             f"for over {self._lock_timeout_s:g} s")
        try:
            if self._closed:
                raise StoreError(f"{self.where}: store is closed")
            return self._run_locked(work)
        finally:
            if self._closed:  # close() gave up waiting for this operation: it drops the connection
                self._drop()
            self._lock.release()

    def _run_locked(self, work: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """:meth:`run` once the lock is held."""
        for attempt in (1, 2):
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._drop()
                self._conn = self._open()
            conn = self._conn
            committing = False
            try:
                with conn.cursor() as cursor:
                    result = work(cursor)
                committing = True
                conn.commit()
                return result
            except QueryCanceled as exc:  # statement_timeout: stuck once, likely stuck again
                self._rollback_or_drop(conn)
                raise StoreError(f"{self.where}: statement timed out: {self._message(exc)}") from None
            except psycopg.OperationalError as exc:  # connection lost, server shutting down, deadlock
                self._rollback_or_drop(conn)
                if attempt == 1 and not committing:
                    log.warning("store_retrying", database=self.where, error=self._message(exc))
                    continue
                raise StoreError(f"{self.where}: {self._message(exc)}") from None
            except psycopg.Error as exc:
                self._rollback_or_drop(conn)
                raise StoreError(f"{self.where}: {self._message(exc)}") from None
            except BaseException:
                self._rollback_or_drop(conn)
                raise
        raise AssertionError("unreachable")

    def _rollback_or_drop(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            self._drop()
            return
        try:
            conn.rollback()
        except psycopg.Error:
            self._drop()
