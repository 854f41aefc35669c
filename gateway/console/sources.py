"""What the console reads from the running gateway, and the request a page handler gets.

Why a small bundle of callables instead of the `Gateway` itself: the console stays a reader of
snapshots (the control API's `GatewayControl`, the metrics registry, the record files, the
caller store, the media clock's statistics) and never reaches into SIP or call objects, so it can
be tested with a few plain values and cannot hold anything that belongs to another thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from gateway.console.auth import Credentials, Session
from gateway.console.feed import CallFeed
from gateway.http_api import Body, GatewayControl, HttpError
from gateway.metrics import Metrics

if TYPE_CHECKING:
    from gateway.store import Store
    from rtp.clock import ClockStats


@dataclass(frozen=True)
class ConsoleSources:
    control: GatewayControl
    metrics: Metrics
    credentials: Credentials
    feed: CallFeed = field(default_factory=CallFeed)
    records: Path | None = None  # recording.directory
    database: str | None = None  # a PostgreSQL DSN: records of calls other gateways took
    store: Callable[[], Store | None] = lambda: None  # caller memory and messages (None: no memory)
    clock_stats: Callable[[], ClockStats] | None = None
    agents: tuple[str, ...] = ()
    session_ttl_s: float = 12 * 3600.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    session: Session | None
    form: dict[str, str] = field(default_factory=dict)  # a POST's fields (read once, before the CSRF check)


def query_of(raw: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def read_form(headers: Message, body: Body) -> dict[str, str]:
    """An urlencoded POST body (the console's forms); 415 for anything else."""
    kind = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HttpError(415, "expected a form (application/x-www-form-urlencoded)")
    try:
        text = body.raw().decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "the form is not UTF-8") from None
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
