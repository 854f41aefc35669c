"""The campaigns page: upload a CSV, watch progress and results, stop a campaign.

Campaigns go through the control API itself (`POST /campaigns`, `GET`/`DELETE /campaigns/{id}`,
and `GET /campaigns` when the gateway offers a list), called in-process with the gateway's token
through `HttpApi.dispatch`, so the console shows whatever the API reports and never depends on
how campaigns run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from email.message import Message
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from gateway.console.auth import Session
from gateway.console.html import action_button, csrf_field, esc, table
from gateway.http_api import Body, HttpError, Response

# (method, path, JSON payload or None) -> (status, JSON answer): the control API, in-process
ControlApi = Callable[[str, str, Mapping[str, object] | None], tuple[int, Any]]
Dispatch = Callable[[str, str, Message, Body], tuple[Response, bool]]


def control_api(dispatch: Dispatch, token: str) -> ControlApi:
    """The control API as a function, through the server's own dispatch (auth, validation and all)."""

    def call(method: str, path: str, payload: Mapping[str, object] | None) -> tuple[int, Any]:
        headers = Message()
        headers["Authorization"] = f"Bearer {token}"
        raw = json.dumps(payload).encode() if payload is not None else b""
        headers["Content-Length"] = str(len(raw))
        pending = [raw]
        response, _ = dispatch(method, path, headers, Body(headers, lambda n: pending.pop() if pending else b""))
        try:
            return int(response.status), json.loads(response.body or b"null")
        except json.JSONDecodeError:
            return int(response.status), None

    return call


# --------------------------------------------------------------------------- campaigns


class CampaignDesk:
    """The campaigns started from this console (the API may not list them), newest last; shared by
    the HTTP worker threads, behind its lock."""

    KEPT = 50

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._lock = threading.Lock()

    def remember(self, campaign_id: str) -> None:
        with self._lock:
            if campaign_id not in self._ids:
                self._ids.append(campaign_id)
                del self._ids[:-self.KEPT]

    def known(self, api: ControlApi) -> list[str]:
        """The API's own list when it has one, then the ones started here, newest first."""
        status, answer = api("GET", "/campaigns", None)
        listed: list[str] = []
        if status == HTTPStatus.OK and isinstance(answer, dict) and isinstance(answer.get("campaigns"), list):
            listed = [str(c.get("campaign_id")) for c in answer["campaigns"] if isinstance(c, dict)]
        with self._lock:
            mine = self._ids[::-1]
        return list(dict.fromkeys(listed + mine))


def campaigns_body(api: ControlApi | None, desk: CampaignDesk, agents: tuple[str, ...], session: Session) -> str:
    if api is None:
        return '<p class="empty">Campaigns need the control API: set <code>http.token</code>.</p>'
    form = ""
    if session.can_act:
        options = "".join(f'<option value="{esc(a)}">{esc(a)}</option>' for a in agents)
        form = (f'<form method="post" action="/console/campaigns" class="campaign">{csrf_field(session)}'
                f'<label>CSV file <input type="file" id="csv-file" accept=".csv,text/csv"></label>'
                f'<label>CSV (first column or "to": the number) <textarea name="csv" rows="5" required>'
                f'</textarea></label>'
                f'<label>Agent <select name="agent"><option value="">the account\'s</option>{options}</select></label>'
                f'<label>Concurrent calls <input type="number" name="concurrency" value="1" min="1" max="100"></label>'
                f'<label>Calls per second <input type="number" name="calls_per_second" value="1" min="0.01" '
                f'max="50" step="0.01"></label><button type="submit">Start campaign</button></form>')
    cards = []
    for campaign_id in desk.known(api):
        status, answer = api("GET", f"/campaigns/{quote(campaign_id, safe='')}", None)
        if status != HTTPStatus.OK or not isinstance(answer, dict):
            continue
        stop = action_button(session, f"/console/campaigns/{quote(campaign_id, safe='')}/stop", "Stop",
                             css="danger") if answer.get("running") else ""
        cards.append(f'<article class="campaign" data-campaign-id="{esc(campaign_id)}">'
                     f"<h2>Campaign {esc(campaign_id)} {stop}</h2>{_campaign_status(answer)}</article>")
    return form + ("".join(cards) or '<p class="empty">No campaign yet.</p>')


def _campaign_status(answer: Mapping[str, Any]) -> str:
    """Whatever the API reports: numbers and flags as facts, a progress bar, lists of rows as tables."""
    scalars = {k: v for k, v in answer.items() if not isinstance(v, dict | list) and k != "campaign_id"}
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in scalars.items())
    total, done = answer.get("total"), answer.get("completed", 0)
    bar = ""
    if isinstance(total, int) and total > 0 and isinstance(done, int):
        bar = f'<progress max="{total}" value="{done}">{done}/{total}</progress>'
    tables = []
    for key, value in answer.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for row in value for k in row))
            rows = [[esc(_cell(row.get(c))) for c in columns] for row in value]
            tables.append(f"<h3>{esc(key)}</h3>" + table(columns, rows, css="campaign-rows"))
    return f'{bar}<dl class="facts">{dl}</dl>' + "".join(tables)


def _cell(value: object) -> str:
    return json.dumps(value) if isinstance(value, dict | list) else ("" if value is None else str(value))




def start(api: ControlApi, desk: CampaignDesk, form: Mapping[str, str]) -> None:
    """Start a campaign from the page's form; the API's own error (bad CSV, draining) is shown as is."""
    payload: dict[str, object] = {"csv": form.get("csv", "")}
    if form.get("agent"):
        payload["agent"] = form["agent"]
    try:
        payload["concurrency"] = int(form.get("concurrency") or 1)
        payload["calls_per_second"] = float(form.get("calls_per_second") or 1)
    except ValueError:
        raise HttpError(HTTPStatus.BAD_REQUEST, "concurrency and calls per second must be numbers") from None
    status, answer = api("POST", "/campaigns", payload)
    _raise_for(status, answer)
    desk.remember(str(answer["campaign_id"]))


def stop(api: ControlApi, campaign_id: str) -> None:
    status, answer = api("DELETE", f"/campaigns/{quote(campaign_id, safe='')}", None)
    _raise_for(status, answer)


def _raise_for(status: int, answer: object) -> None:
    if status >= 400:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise HttpError(status, str(error or f"the campaign API answered {status}"))
