"""The console's way to campaigns: the control API, called in-process, and the actions of the pages.

Campaigns go through the control API itself (`POST /campaigns`, `GET /campaigns`, `GET`/`DELETE
/campaigns/{id}`, `POST /campaigns/{id}/pause|resume`, the results as JSON and CSV), called with the
gateway's token through `HttpApi.dispatch`, so the console shows whatever the API reports and never
depends on how campaigns run.  The pages themselves are rendered by campaign_page.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from email.message import Message
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from gateway.http_api import Body, HttpError, Response

# (method, path, JSON payload or None) -> the API's response, in-process
RawApi = Callable[[str, str, Mapping[str, object] | None], Response]
# the same, answered as (status, JSON answer)
ControlApi = Callable[[str, str, Mapping[str, object] | None], tuple[int, Any]]
Dispatch = Callable[[str, str, Message, Body], tuple[Response, bool]]


def control_raw(dispatch: Dispatch, token: str) -> RawApi:
    """The control API as a function, through the server's own dispatch (auth, validation and all)."""

    def call(method: str, path: str, payload: Mapping[str, object] | None) -> Response:
        headers = Message()
        headers["Authorization"] = f"Bearer {token}"
        raw = json.dumps(payload).encode() if payload is not None else b""
        headers["Content-Length"] = str(len(raw))
        pending = [raw]
        response, _ = dispatch(method, path, headers, Body(headers, lambda n: pending.pop() if pending else b""))
        return response

    return call


def control_api(raw: RawApi) -> ControlApi:
    def call(method: str, path: str, payload: Mapping[str, object] | None) -> tuple[int, Any]:
        response = raw(method, path, payload)
        try:
            return int(response.status), json.loads(response.body or b"null")
        except json.JSONDecodeError:
            return int(response.status), None

    return call


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


def start(api: ControlApi, desk: CampaignDesk, form: Mapping[str, str]) -> str:
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
    raise_for(status, answer)
    campaign_id = str(answer["campaign_id"])
    desk.remember(campaign_id)
    return campaign_id


def act(api: ControlApi, campaign_id: str, action: str) -> None:
    """`stop` (cancel for good), `pause` or `resume`; the API's refusal (409: already finished) as is."""
    path = f"/campaigns/{quote(campaign_id, safe='')}"
    status, answer = api("DELETE", path, None) if action == "stop" else api("POST", f"{path}/{action}", None)
    raise_for(status, answer)


def raise_for(status: int, answer: object) -> None:
    if status >= 400:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise HttpError(status, str(error or f"the campaign API answered {status}"))
