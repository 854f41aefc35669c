"""One campaign's page: its progress, each contact's result (with a link to the call's page in the
history), pause / resume / cancel, the results as a CSV download, and live updates by Server-Sent
Events.

Everything comes from the control API in-process (`campaigns.ControlApi`): the page shows what
`GET /campaigns/{id}` and `GET /campaigns/{id}/results` report, so it cannot disagree with the API.
The live stream polls those two once a second on its own HTTP worker thread and sends the contacts
only when something changed; /console/static/console.js redraws the table with the same columns
as `result_cells` here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from gateway.console.auth import Session
from gateway.console.campaigns import CampaignDesk, ControlApi, RawApi, raise_for
from gateway.console.html import action_button, csrf_field, duration, esc, table
from gateway.console.stream import KEEPALIVE_S, POLL_S, RETRY_MS, sse
from gateway.http_api import HttpError, Response

COLUMNS = ("#", "contact", "number", "status", "outcome", "AMD", "attempts", "duration", "next attempt", "call")
CONTACTS_PER_S = 2000  # a stream reads all results at most every total/this seconds (see campaign_stream)
MAX_CARDS = 30  # the newest; each card asks the API (and, for a kept campaign, the store) for its counts
FINAL_STATES = frozenset({"finished", "cancelled"})
_ACTIONS = {"running": (("pause", "Pause", ""), ("stop", "Cancel", "danger")),
            "paused": (("resume", "Resume", ""), ("stop", "Cancel", "danger"))}


def status_of(api: ControlApi, campaign_id: str) -> dict[str, Any]:
    """`GET /campaigns/{id}`; the API's error (404 unknown, 503 store) as an HttpError."""
    status, answer = api("GET", f"/campaigns/{quote(campaign_id, safe='')}", None)
    raise_for(status, answer)
    return answer if isinstance(answer, dict) else {}


def contacts_of(api: ControlApi, campaign_id: str) -> list[dict[str, Any]]:
    """`GET /campaigns/{id}/results`: every contact's result, in list order."""
    status, answer = api("GET", f"/campaigns/{quote(campaign_id, safe='')}/results", None)
    raise_for(status, answer)
    return answer.get("contacts", []) if isinstance(answer, dict) else []


def snapshot(api: ControlApi, campaign_id: str) -> dict[str, Any]:
    """{"status": ..., "contacts": [...]} from the API."""
    return {"status": status_of(api, campaign_id), "contacts": contacts_of(api, campaign_id)}


def campaigns_body(api: ControlApi | None, desk: CampaignDesk, agents: tuple[str, ...], session: Session) -> str:
    """The upload form and one card per campaign (this process's and those kept in the store)."""
    if api is None:
        return '<p class="empty">Campaigns need the control API: set <code>http.token</code>.</p>'
    form = ""
    if session.can_act:
        options = "".join(f'<option value="{esc(a)}">{esc(a)}</option>' for a in agents)
        form = (f'<form method="post" action="/console/campaigns" class="campaign" id="campaign-form">'
                f'{csrf_field(session)}'
                f'<label>CSV file <input type="file" id="csv-file" accept=".csv,text/csv"></label>'
                f'<label>CSV (a "to" or "number" column: the number; "timezone" optional; every other column '
                f'is a call variable) <textarea name="csv" id="csv-text" rows="5" required></textarea></label>'
                f'<label>Agent <select name="agent"><option value="">the account\'s</option>{options}</select></label>'
                f'<label>Concurrent calls <input type="number" name="concurrency" value="1" min="1" max="100"></label>'
                f'<label>Calls per second <input type="number" name="calls_per_second" value="1" min="0.01" '
                f'max="50" step="0.01"></label><button type="submit" id="start-campaign">Start campaign</button>'
                f'</form>')
    cards = []
    for campaign_id in desk.known(api)[:MAX_CARDS]:
        status, answer = api("GET", f"/campaigns/{quote(campaign_id, safe='')}", None)
        if status != HTTPStatus.OK or not isinstance(answer, dict):
            continue
        href = f"/console/campaigns/{quote(campaign_id, safe='')}"
        cards.append(f'<article class="campaign" data-campaign-id="{esc(campaign_id)}">'
                     f'<h2><a href="{href}">Campaign {esc(campaign_id)}</a></h2>{progress(answer, live=False)}'
                     f'</article>')
    return form + ("".join(cards) or '<p class="empty">No campaign yet.</p>')


def campaign_body(api: ControlApi, campaign_id: str, session: Session) -> str:
    view = snapshot(api, campaign_id)
    status, contacts = view["status"], view["contacts"]
    quoted = quote(campaign_id, safe="")
    state = str(status.get("state") or ("running" if status.get("running") else "finished"))
    buttons = "".join(action_button(session, f"/console/campaigns/{quoted}/{action}", label, css=css,
                                    confirm="Cancel this campaign for good?" if action == "stop" else "")
                      for action, label, css in _ACTIONS.get(state, ()) if status.get("kept") is not True)
    rows = [result_cells(c) for c in contacts]
    return (f'<section class="campaign-view" data-campaign-id="{esc(campaign_id)}">'
            f'<p class="status" id="stream-status">Live updates: connecting…</p>'
            f'<p>{buttons} <a id="results-csv" href="/console/campaigns/{quoted}/results.csv" download>'
            f'Download the results (CSV)</a></p>{progress(status)}'
            f'<h2>Contacts</h2>{table(COLUMNS, rows, css="results", empty="No contacts.")}</section>')


def progress(status: Mapping[str, Any], live: bool = True) -> str:
    """The state, a progress bar over the contacts done, and the counts the API gives (`live`: the one
    campaign page, whose script finds the bar by its id)."""
    total, done = status.get("total"), status.get("done", 0)
    bar = ""
    if isinstance(total, int) and total > 0 and isinstance(done, int):
        bar_id = ' id="campaign-progress"' if live else ""
        bar = f'<progress{bar_id} max="{total}" value="{done}">{done}/{total}</progress>'
    outcomes = status.get("outcomes") if isinstance(status.get("outcomes"), dict) else {}
    facts = [("state", status.get("state")), ("contacts", total), ("done", done),
             ("calls up", status.get("active")), ("waiting to retry", status.get("scheduled")),
             ("not tried yet", status.get("not_attempted")), ("calls placed", status.get("started")),
             ("outcomes", ", ".join(f"{k}: {v}" for k, v in outcomes.items()) or "-")]
    dl = "".join(f'<dt>{esc(k)}</dt><dd data-fact="{esc(k)}">{esc("-" if v is None else v)}</dd>' for k, v in facts)
    return f'<div class="campaign-progress">{bar}<dl class="facts">{dl}</dl></div>'


def result_cells(contact: Mapping[str, Any]) -> list[str]:
    """One contact's row (HTML cells); console.js builds the same from the live stream's JSON."""
    call_id = contact.get("call_id")
    link = (f'<a class="call-link" href="/console/history/{quote(str(call_id), safe="")}">call &amp; transcript</a>'
            if call_id else "")
    next_at = str(contact.get("next_attempt_at") or "").replace("T", " ").replace("+00:00", " UTC")
    return [esc(contact.get("row")), esc(contact.get("name") or ""), esc(contact.get("to")),
            esc(contact.get("status")), esc(contact.get("outcome") or ""), esc(contact.get("amd") or ""),
            esc(contact.get("attempts")), duration(contact.get("duration_s")), esc(next_at), link]


def csv_download(raw: RawApi, campaign_id: str) -> Response:
    """The API's CSV as the console's download (the API needs the token, which a browser does not send)."""
    response = raw("GET", f"/campaigns/{quote(campaign_id, safe='')}/results.csv", None)
    if response.status >= 400:
        try:
            message = json.loads(response.body).get("error")
        except (ValueError, AttributeError):
            message = None
        raise HttpError(response.status, str(message or f"the campaign API answered {response.status}"))
    return Response(HTTPStatus.OK, response.body, response.content_type,
                    {"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'})


def campaign_stream(api: ControlApi, campaign_id: str, closed: threading.Event) -> Iterator[bytes]:
    """`progress` events ({"status", "contacts": the contacts that changed}) when something changed;
    `done` once the campaign is over.

    Why the results are not read every second: they are every contact's result through the API
    (~0.44 s of CPU for 10,000 contacts, docs/benchmarks.md), so they are read again only when the
    counts changed and at most every `total / CONTACTS_PER_S` seconds (5 s for 10,000 contacts); the
    counts, which are cheap, go out every second.  Only changed contacts are sent: a long list goes
    out whole once when the page opens, not at every change.
    """
    yield f"retry: {RETRY_MS}\n\n".encode()
    shown: dict[str, Any] | None = None  # the counts of the last progress event
    read: dict[str, Any] | None = None  # the counts when the contacts were last read
    sent: dict[object, Any] = {}
    read_at = last_sent = float("-inf")
    while not closed.is_set():
        try:
            counts = status_of(api, campaign_id)
            over = _over(counts)
            total = counts.get("total") if isinstance(counts.get("total"), int) else 0
            changed: list[dict[str, Any]] = []
            if counts != read and (over or time.monotonic() - read_at >= max(POLL_S, total / CONTACTS_PER_S)):
                read, read_at = counts, time.monotonic()
                changed = [c for c in contacts_of(api, campaign_id) if sent.get(c.get("row")) != c]
                sent.update((c.get("row"), c) for c in changed)
        except HttpError as exc:
            yield sse("failed", {"error": str(exc)})
            return
        if changed or counts != shown:
            yield sse("progress", {"status": counts, "contacts": changed})
            shown, last_sent = counts, time.monotonic()
        elif time.monotonic() - last_sent >= KEEPALIVE_S:
            yield b": keepalive\n\n"
            last_sent = time.monotonic()
        if over:
            yield sse("done", {"state": counts.get("state")})
            return
        closed.wait(POLL_S)


def _over(status: Mapping[str, Any]) -> bool:
    """Nothing more will change: finished or cancelled with no call up, or kept and not resumable here."""
    if status.get("state") in FINAL_STATES and not status.get("active"):
        return True
    return status.get("kept") is True and status.get("state") not in ("running", "paused")
