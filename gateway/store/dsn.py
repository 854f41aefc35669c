"""Which backend a ``database`` value names, and how to show a PostgreSQL DSN without its password.

Kept free of any database driver so the configuration check can use it: a ``database`` that
starts with ``postgresql://`` or ``postgres://`` is a libpq connection URI, anything else is a
SQLite file path.  A DSN may carry a password (``postgresql://user:secret@host/db`` or
``?password=secret``); every message and log line that names the database goes through
:func:`redact_dsn` so the secret never reaches a log collector or a bug report.

Why not :func:`urllib.parse.urlsplit`: an operator types the password as it is, and a password
with ``/``, ``?``, ``#`` or ``@`` in it ends the URL authority early, so a URL parser finds no
password (or half of one) and the secret would be logged.  Here the userinfo is everything
between ``://`` and the *last* ``@``, so whatever the operator meant as the password is hidden.
An ``@`` in a query parameter then hides more than needed, which is the safe side.  (libpq itself
needs such characters percent-encoded; that is in docs/operations.md.)
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["POSTGRES_SCHEMES", "dsn_password", "is_postgres_dsn", "redact_dsn"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
# libpq splits query parameters only at "&": a "#" is part of the value, so it is hidden too
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
_REDACTED = "***"


def is_postgres_dsn(database: str) -> bool:
    """True for a libpq URI (``postgresql://`` or ``postgres://``), False for a SQLite path."""
    return database.strip().lower().startswith(POSTGRES_SCHEMES)


def _split_userinfo(dsn: str) -> tuple[str, str, str | None, str] | None:
    """``(scheme://user, ":", password, "@rest")`` of a URI whose userinfo has a ``:``, else None.

    The userinfo runs from ``://`` to the last ``@``; the password is what follows its first ``:``.
    """
    scheme = _SCHEME.match(dsn)
    if scheme is None:
        return None
    at = dsn.rfind("@")
    if at < scheme.end():
        return None
    userinfo = dsn[scheme.end():at]
    user, colon, password = userinfo.partition(":")
    if not colon:
        return None
    return dsn[:scheme.end()] + user, colon, password, dsn[at:]


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``: ``postgresql://user:***@host/db``.

    Works on any ``scheme://`` URI (a refused ``mysql://`` value is shown redacted too).
    """
    text = dsn.strip()
    parts = _split_userinfo(text)
    if parts is not None:
        head, colon, _, rest = parts
        text = f"{head}{colon}{_REDACTED}{rest}"
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + _REDACTED, text)


def dsn_password(dsn: str) -> str | None:
    """The password written in ``dsn`` (userinfo or ``?password=``, percent-decoded), or None.

    Used to scrub the secret from driver errors, and by the configuration check, which wants the
    config file private when a password is typed into it.
    """
    text = dsn.strip()
    parts = _split_userinfo(text)
    if parts is not None and parts[2]:
        return unquote(parts[2])
    match = re.search(r"[?&]password=([^&]*)", text, re.IGNORECASE)
    return unquote(match.group(1)) if match and match.group(1) else None
