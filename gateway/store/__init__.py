"""The gateway's database: what it remembers about callers, the messages it took, the campaigns'
do-not-call list and results, and (on PostgreSQL) the events of every call.

Two backends behind one API (:class:`Store`):

* SQLite (:mod:`gateway.store.sqlite`), the embedded default: one file, one gateway;
* PostgreSQL (:mod:`gateway.store.postgres`), for several gateways that must share what they
  know: a caller who told gateway A their name is greeted by name on gateway B.

:func:`open_store` picks one from the configuration's ``database`` value: a ``postgresql://``
or ``postgres://`` URI is PostgreSQL, anything else a SQLite file path.
"""

from __future__ import annotations

from pathlib import Path

from gateway.store.base import (
    MAX_OPEN_REQUESTS,
    MAX_REQUEST_CHARS,
    CallerRecord,
    DoNotCallEntry,
    MessageRecord,
    Store,
    StoreError,
)
from gateway.store.caller_ids import do_not_call_key, normalize_caller_id
from gateway.store.campaign_rows import CampaignContactRow, CampaignRecord
from gateway.store.dsn import is_postgres_dsn, redact_dsn
from gateway.store.sqlite import SCHEMA_VERSION, SqliteStore

__all__ = [
    "MAX_OPEN_REQUESTS",
    "MAX_REQUEST_CHARS",
    "SCHEMA_VERSION",
    "CallerRecord",
    "CampaignContactRow",
    "CampaignRecord",
    "DoNotCallEntry",
    "MessageRecord",
    "SqliteStore",
    "Store",
    "StoreError",
    "do_not_call_key",
    "is_postgres_dsn",
    "normalize_caller_id",
    "open_store",
    "redact_dsn",
]


def open_store(database: str | Path) -> Store:
    """The store ``database`` names (a PostgreSQL URI or a SQLite path), opened and migrated.

    Raises :class:`StoreError` if it cannot be reached, opened or migrated.
    """
    if isinstance(database, str) and is_postgres_dsn(database):
        from gateway.store.postgres import PostgresStore  # psycopg only where PostgreSQL is used

        return PostgresStore(database)
    return SqliteStore(database)
