"""Which backend a ``database`` value names, and how to show a PostgreSQL DSN without its password.

Kept free of any database driver so the configuration check can use it: a ``database`` that
starts with ``postgresql://`` or ``postgres://`` is a libpq connection URI, anything else is a
SQLite file path.  A DSN may carry a password (``postgresql://user:secret@host/db`` or
``?password=secret``); every message and log line that names the database goes through
:func:`redact_dsn` so the secret never reaches a log collector or a bug report.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

__all__ = ["POSTGRES_SCHEMES", "dsn_password", "is_postgres_dsn", "redact_dsn"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_USERINFO_PASSWORD = re.compile(r"^([a-z]+://[^:@/?#]*):[^@/?#]*@", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_REDACTED = "***"


def is_postgres_dsn(database: str) -> bool:
    """True for a libpq URI (``postgresql://`` or ``postgres://``), False for a SQLite path."""
    return database.strip().lower().startswith(POSTGRES_SCHEMES)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``: ``postgresql://user:***@host/db``.

    Works on any ``scheme://`` URI (a refused ``mysql://`` value is shown redacted too).
    """
    text = _USERINFO_PASSWORD.sub(lambda m: f"{m.group(1)}:{_REDACTED}@", dsn.strip(), count=1)
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + _REDACTED, text)


def dsn_password(dsn: str) -> str | None:
    """The password written in ``dsn`` (userinfo or ``?password=``), to scrub it from driver errors."""
    try:
        parts = urlsplit(dsn.strip())
        if parts.password:
            return unquote(parts.password)
    except ValueError:
        pass
    match = re.search(r"[?&]password=([^&#]*)", dsn, re.IGNORECASE)
    return unquote(match.group(1)) if match and match.group(1) else None
