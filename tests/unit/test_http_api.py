"""HTTP API over real sockets on 127.0.0.1: probes, metrics, bearer auth, calls, campaigns, limits, logs."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog

from gateway.campaigns.book import CampaignBook
from gateway.campaigns.dnc import DoNotCallList
from gateway.campaigns.outcomes import EndedCall
from gateway.campaigns.policy import read_defaults
from gateway.campaigns.storage import CampaignStorage
from gateway.http_api import MAX_BODY, HttpApi
from gateway.metrics import Metrics
from gateway.store import SqliteStore

TOKEN = "s3cret-token-never-logged"


@dataclass
class FakeControl:
    ready: bool = True
    calls: dict[str, dict[str, object]] = field(default_factory=dict)
    originated: list[tuple[str, str | None, dict[str, str], str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def list_calls(self) -> list[dict[str, object]]:
        with self.lock:
            return list(self.calls.values())

    def hangup(self, call_id: str) -> bool:
        with self.lock:
            return self.calls.pop(call_id, None) is not None

    def originate(self, to: str, agent: str | None, variables: Mapping[str, str], account: str | None) -> str:
        if agent == "nobody":
            raise ValueError("unknown agent 'nobody'")
        with self.lock:
            self.originated.append((to, agent, dict(variables), account))
            call_id = f"call-{len(self.originated)}@gw"
            self.calls[call_id] = {"call_id": call_id, "direction": "outbound", "agent": agent, "remote": to,
                                   "started_at": "2024-01-01T00:00:00Z", "state": "ringing"}
            return call_id

    def wait_ended(self, call_id: str, timeout: float) -> bool:
        return True

    def ended_call(self, call_id: str) -> EndedCall | None:
        remote = str(self.calls[call_id]["remote"]) if call_id in self.calls else ""
        code = 486 if remote.startswith("busy") else 200
        return EndedCall(call_id, code, "remote_bye" if code == 200 else "not_answered: Busy Here", code == 200, 2.5)

    def readiness(self) -> dict[str, object]:
        return {"ready": self.ready and not self.draining, "models_loaded": self.ready,
                "registrations": {"sip:2001@pbx": "registered"}, "draining": self.draining}

    draining: bool = False

    def drain(self) -> int:
        self.draining = True
        return len(self.calls)


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        return json.loads(self.body)


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


def start_api(control: FakeControl, token: str | None = TOKEN) -> HttpApi:
    api = HttpApi(("127.0.0.1", 0), token, control, Metrics())
    api.start()
    return api


@pytest.fixture
def api(control: FakeControl) -> Iterator[HttpApi]:
    api = start_api(control)
    yield api
    api.stop()


def request(api: HttpApi, method: str, path: str, payload: object = None, *, token: str | None = TOKEN,
            data: bytes | None = None) -> Reply:
    if payload is not None:
        data = json.dumps(payload).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{api.port}{path}", data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Reply(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, err.headers, err.read())


# --- probes and metrics -----------------------------------------------------------------------------


def test_healthz_needs_no_auth(api: HttpApi) -> None:
    reply = request(api, "GET", "/healthz", token=None)
    assert reply.status == 200 and reply.json() == {"status": "ok"}


def test_readyz_follows_readiness(api: HttpApi, control: FakeControl) -> None:
    assert request(api, "GET", "/readyz", token=None).status == 200
    control.ready = False
    reply = request(api, "GET", "/readyz", token=None)
    assert reply.status == 503
    assert reply.json()["registrations"] == {"sip:2001@pbx": "registered"}


def test_drain_needs_the_token_then_readyz_and_originate_say_503(api: HttpApi, control: FakeControl) -> None:
    control.originate("2002", None, {}, None)
    assert request(api, "POST", "/drain", token=None).status == 401
    assert not control.draining
    reply = request(api, "POST", "/drain")
    assert reply.status == 202 and reply.json() == {"draining": True, "active_calls": 1}
    ready = request(api, "GET", "/readyz", token=None)
    assert ready.status == 503 and ready.json()["draining"] is True
    refused = request(api, "POST", "/calls", {"to": "2003"})
    assert refused.status == 503 and "draining" in refused.json()["error"]
    refused = request(api, "POST", "/campaigns", {"csv": "to\n2004\n"})
    assert refused.status == 503 and "draining" in refused.json()["error"]
    assert request(api, "GET", "/calls").status == 200  # the calls still up can be listed (and hung up)


def test_readyz_is_503_when_readiness_raises(api: HttpApi, control: FakeControl, monkeypatch) -> None:
    monkeypatch.setattr(control, "readiness", lambda: 1 / 0)
    reply = request(api, "GET", "/readyz", token=None)
    assert reply.status == 503 and reply.json()["ready"] is False


def test_metrics_exposition_after_calls(api: HttpApi) -> None:
    api.metrics.call_started("inbound")
    api.metrics.call_ended("inbound", "completed")
    reply = request(api, "GET", "/metrics", token=None)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert b"voicegate_active_calls" in reply.body
    assert b'voicegate_calls_total{direction="inbound",outcome="completed"} 1.0' in reply.body


# --- auth -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x", ""])
def test_control_api_rejects_missing_or_wrong_token(api: HttpApi, token: str | None) -> None:
    reply = request(api, "GET", "/calls", token=token)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert "error" in reply.json()


def test_control_api_accepts_the_token(api: HttpApi, control: FakeControl) -> None:
    control.originate("2001", "sales", {}, None)
    reply = request(api, "GET", "/calls")
    assert reply.status == 200
    assert reply.json()["calls"][0]["call_id"] == "call-1@gw"


def test_control_api_disabled_without_token(control: FakeControl) -> None:
    api = start_api(control, token=None)
    try:
        reply = request(api, "GET", "/calls", token="anything")
        assert reply.status == 403 and "http.token" in reply.json()["error"]
        assert request(api, "GET", "/healthz", token=None).status == 200
    finally:
        api.stop()


def test_empty_token_is_refused_at_construction(control: FakeControl) -> None:
    with pytest.raises(ValueError, match="http.token"):
        HttpApi(("127.0.0.1", 0), " ", control, Metrics())


# --- calls ------------------------------------------------------------------------------------------


def test_originate_passes_variables_agent_and_account(api: HttpApi, control: FakeControl) -> None:
    reply = request(api, "POST", "/calls", {"to": "+4930123", "agent": "sales", "account": "trunk",
                                            "variables": {"name": "Ada", "order": 42, "vip": True}})
    assert reply.status == 201 and reply.json() == {"call_id": "call-1@gw"}
    assert control.originated == [("+4930123", "sales", {"name": "Ada", "order": "42", "vip": "true"}, "trunk")]


@pytest.mark.parametrize(
    ("payload", "data", "message"),
    [
        ({"to": "2001", "agent": "nobody"}, None, "unknown agent 'nobody'"),
        (None, b"{not json", "not valid JSON"),
        (None, b"[1, 2]", "JSON object"),
        ({"agent": "sales"}, None, "'to' is required"),
        ({"to": "2001", "variables": {"x": {"nested": 1}}}, None, "variable 'x'"),
        ({"to": "2001", "variables": ["a"]}, None, "'variables'"),
    ],
)
def test_originate_bad_input_is_400(api: HttpApi, payload: object, data: bytes | None, message: str) -> None:
    reply = request(api, "POST", "/calls", payload, data=data)
    assert reply.status == 400
    assert message in reply.json()["error"]


def test_hangup_known_and_unknown_call(api: HttpApi, control: FakeControl) -> None:
    call_id = control.originate("2001", None, {}, None)
    assert request(api, "DELETE", "/calls/call-1%40gw").status == 200
    assert call_id not in control.calls
    reply = request(api, "DELETE", "/calls/nope")
    assert reply.status == 404 and "nope" in reply.json()["error"]


# --- routing and limits -----------------------------------------------------------------------------


def test_unknown_path_404_and_wrong_method_405(api: HttpApi) -> None:
    assert request(api, "GET", "/nothing-here").status == 404
    reply = request(api, "PUT", "/calls", {"to": "1"})
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, POST"
    assert request(api, "POST", "/healthz", {}, token=None).status == 405


def test_body_over_one_mib_is_413(api: HttpApi, control: FakeControl) -> None:
    reply = request(api, "POST", "/calls", data=b"x" * (MAX_BODY + 1))
    assert reply.status == 413 and "error" in reply.json()
    assert control.originated == []


def test_connection_stays_usable_after_unread_body(api: HttpApi) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        conn.request("POST", "/calls", body=b'{"to": "2001"}')  # no token: 401, body never parsed
        first = conn.getresponse()
        first.read()
        conn.request("GET", "/healthz")
        second = conn.getresponse()
        assert (first.status, second.status) == (401, 200)
        assert json.loads(second.read()) == {"status": "ok"}
    finally:
        conn.close()


# --- campaigns --------------------------------------------------------------------------------------


def test_campaign_lifecycle(api: HttpApi, control: FakeControl) -> None:
    csv_text = "to,name\n2001,Ada\n2002,Bob\n2003,Cy\n"
    reply = request(api, "POST", "/campaigns",
                    {"agent": "sales", "csv": csv_text, "concurrency": 2, "calls_per_second": 50})
    assert reply.status == 202
    campaign_id = reply.json()["campaign_id"]
    deadline = time.monotonic() + 5
    while True:
        status = request(api, "GET", f"/campaigns/{campaign_id}").json()
        if not status["running"] or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert status["completed"] == 3 and status["total"] == 3
    assert sorted(o[0] for o in control.originated) == ["2001", "2002", "2003"]
    assert control.originated[0][1] == "sales" and control.originated[0][2] == {"name": "Ada"}
    stopped = request(api, "DELETE", f"/campaigns/{campaign_id}")
    assert stopped.status == 200 and stopped.json()["stopped"] is True
    assert request(api, "GET", "/campaigns/unknown").status == 404


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"csv": "name\nAda\n"}, "'to'"),
        ({"csv": ""}, "'csv' is required"),
        ({"csv": "to\n2001\n", "concurrency": 0}, "'concurrency'"),
        ({"csv": "to\n2001\n", "concurrency": 1.5}, "integer"),
        ({"csv": "to\n2001\n", "calls_per_second": 0}, "'calls_per_second'"),
    ],
)
def test_campaign_bad_input_is_400(api: HttpApi, payload: dict[str, object], message: str) -> None:
    reply = request(api, "POST", "/campaigns", payload)
    assert reply.status == 400 and message in reply.json()["error"]


def test_campaign_needs_the_token(api: HttpApi) -> None:
    assert request(api, "POST", "/campaigns", {"csv": "to\n1\n"}, token=None).status == 401


def wait_finished(api: HttpApi, campaign_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while True:
        status = request(api, "GET", f"/campaigns/{campaign_id}").json()
        if not status["running"] or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def test_campaign_policy_from_the_request_over_the_yaml_defaults(control: FakeControl) -> None:
    defaults = read_defaults({"timezone": "Europe/Berlin", "max_attempts": 2, "retry": {"busy": [3600]}})
    api = HttpApi(("127.0.0.1", 0), TOKEN, control, Metrics(), CampaignBook(defaults))
    api.start()
    try:
        reply = request(api, "POST", "/campaigns", {"csv": "to\nbusy-1\n2002\n", "calls_per_second": 50,
                                                    "retry": {"busy": 0.2}})
        assert reply.status == 202
        assert reply.json()["policy"] == {"max_attempts": 2, "retry": {"busy": [0.2]}, "calling_hours": [],
                                          "timezone": "Europe/Berlin"}
        campaign_id = reply.json()["campaign_id"]
        status = wait_finished(api, campaign_id)
        assert status["outcomes"] == {"answered": 1, "busy": 1} and status["started"] == 3
        contacts = request(api, "GET", f"/campaigns/{campaign_id}/results").json()["contacts"]
        assert [(c["to"], c["outcome"], c["attempts"], c["timezone"]) for c in contacts] == [
            ("busy-1", "busy", 2, "Europe/Berlin"), ("2002", "answered", 1, "Europe/Berlin")]
        assert contacts[1]["duration_s"] == 2.5 and contacts[1]["call_id"] == "call-2@gw"
        download = request(api, "GET", f"/campaigns/{campaign_id}/results.csv")
        assert download.status == 200 and download.headers["Content-Type"].startswith("text/csv")
        assert f'filename="campaign-{campaign_id}.csv"' in download.headers["Content-Disposition"]
        assert download.body.decode().splitlines()[1].startswith("1,busy-1,,Europe/Berlin,done,busy,,2,2.5,call-3@gw")
        assert request(api, "GET", "/campaigns/nope/results.csv").status == 404
        assert request(api, "GET", f"/campaigns/{campaign_id}/results", token=None).status == 401
    finally:
        api.stop()


@pytest.mark.parametrize(("payload", "message"), [
    ({"retry": {"answered": [1]}}, "'retry.answered'"),
    ({"calling_hours": [{"start": "20:00", "end": "08:00"}]}, "'calling_hours[0].end'"),
    ({"timezone": "Moon/Base"}, "'timezone'"),
    ({"csv": "to,timezone\n2001,Moon/Base\n"}, "row 1 (2001)"),
])
def test_campaign_bad_policy_is_400_naming_the_key(api: HttpApi, payload: dict[str, object], message: str) -> None:
    reply = request(api, "POST", "/campaigns", {"csv": "to\n2001\n", **payload})
    assert reply.status == 400 and message in reply.json()["error"], reply.json()


def test_do_not_call_api_adds_lists_and_removes(control: FakeControl, tmp_path: Path) -> None:
    storage = CampaignStorage(lambda: SqliteStore(tmp_path / "vg.db"))
    dnc = DoNotCallList(storage)
    api = HttpApi(("127.0.0.1", 0), TOKEN, control, Metrics(), CampaignBook(do_not_call=dnc, storage=storage))
    api.start()
    try:
        assert request(api, "POST", "/do-not-call", {"number": "+49 30 123-4567"}, token=None).status == 401
        added = request(api, "POST", "/do-not-call", {"numbers": ["+49 30 123-4567", "0044 20 7946 0000"],
                                                      "note": "asked on the call"})
        assert added.status == 201 and added.json() == {"added": ["+49301234567", "+442079460000"]}
        assert request(api, "POST", "/do-not-call", {"number": "anonymous"}).status == 400
        assert request(api, "POST", "/do-not-call", {"numbers": []}).status == 400
        listed = request(api, "GET", "/do-not-call").json()
        assert [(e["number"], e["note"]) for e in listed["numbers"]] == [
            ("+49301234567", "asked on the call"), ("+442079460000", "asked on the call")]
        reply = request(api, "POST", "/campaigns", {"csv": "to\n0049301234567\n2002\n", "calls_per_second": 50})
        status = wait_finished(api, reply.json()["campaign_id"])
        assert status["outcomes"] == {"answered": 1, "do_not_call": 1}
        assert [o[0] for o in control.originated] == ["2002"]
        assert request(api, "DELETE", "/do-not-call/%2B49301234567").status == 200
        assert request(api, "DELETE", "/do-not-call/+49301234567").status == 404
        assert [e["number"] for e in request(api, "GET", "/do-not-call").json()["numbers"]] == ["+442079460000"]
    finally:
        api.stop()
    assert request_refused_after_stop(dnc)


def request_refused_after_stop(dnc: DoNotCallList) -> bool:
    """The API closes its list when it stops: nothing dials on a closed list."""
    try:
        dnc.blocked("2001")
    except Exception as exc:  # DoNotCallError
        return "closed" in str(exc)
    return False


def test_campaign_results_outlive_the_api_that_ran_it(control: FakeControl, tmp_path: Path) -> None:
    def book() -> CampaignBook:
        return CampaignBook(storage=CampaignStorage(lambda: SqliteStore(tmp_path / "vg.db")))

    api = HttpApi(("127.0.0.1", 0), TOKEN, control, Metrics(), book())
    api.start()
    try:
        reply = request(api, "POST", "/campaigns", {"csv": "to\nbusy-1\n2002\n", "calls_per_second": 50,
                                                    "max_attempts": 1})
        campaign_id = reply.json()["campaign_id"]
        live = wait_finished(api, campaign_id)
        results = request(api, "GET", f"/campaigns/{campaign_id}/results").json()
        csv_text = request(api, "GET", f"/campaigns/{campaign_id}/results.csv").body
    finally:
        api.stop()
    again = HttpApi(("127.0.0.1", 0), TOKEN, control, Metrics(), book())  # a restarted gateway
    again.start()
    try:
        kept = request(again, "GET", f"/campaigns/{campaign_id}").json()
        assert kept["kept"] is True and kept["running"] is False
        same = ("total", "done", "outcomes")
        assert {k: kept[k] for k in same} == {k: live[k] for k in same}
        assert request(again, "GET", f"/campaigns/{campaign_id}/results").json() == results
        assert request(again, "GET", f"/campaigns/{campaign_id}/results.csv").body == csv_text
        assert request(again, "DELETE", f"/campaigns/{campaign_id}").status == 404  # nothing runs here to stop
        assert request(again, "GET", "/campaigns/unknown/results").status == 404
    finally:
        again.stop()


def test_no_do_not_call_list_is_503(api: HttpApi) -> None:
    assert request(api, "GET", "/do-not-call").status == 503


# --- logging ----------------------------------------------------------------------------------------


def test_token_never_appears_in_logs(api: HttpApi, capfd: pytest.CaptureFixture[str]) -> None:
    with structlog.testing.capture_logs() as logs:
        request(api, "GET", "/calls")
        request(api, "GET", "/calls", token=TOKEN + "-wrong")
        request(api, "POST", "/calls", {"to": "2001", "variables": {"x": "y"}})
        request(api, "GET", f"/calls?token={TOKEN}")
        request(api, "GET", "/healthz", token=None)
    out, err = capfd.readouterr()
    assert TOKEN not in repr(logs) and TOKEN not in out and TOKEN not in err
    assert "Bearer" not in repr(logs)
    requests = [e for e in logs if e["event"] == "http_request"]
    assert [(e["method"], e["path"], e["status"]) for e in requests] == [
        ("GET", "/calls", 200), ("GET", "/calls", 401), ("POST", "/calls", 201), ("GET", "/calls", 200),
    ]
    assert all(e["client"] == "127.0.0.1" for e in requests)


def test_campaign_pause_resume_cancel_and_the_list(control: FakeControl, tmp_path: Path) -> None:
    book = CampaignBook(storage=CampaignStorage(lambda: SqliteStore(tmp_path / "vg.db")), owner="here:5080")
    api = HttpApi(("127.0.0.1", 0), TOKEN, control, Metrics(), book)
    api.start()
    try:
        reply = request(api, "POST", "/campaigns", {"csv": "to\n2001\n2002\n2003\n", "calls_per_second": 0.2})
        campaign_id = reply.json()["campaign_id"]
        deadline = time.monotonic() + 20
        while not control.originated and time.monotonic() < deadline:
            time.sleep(0.02)
        paused = request(api, "POST", f"/campaigns/{campaign_id}/pause")
        assert paused.status == 200 and paused.json()["state"] == "paused", paused.json()
        assert request(api, "POST", f"/campaigns/{campaign_id}/pause").status == 409
        listed = request(api, "GET", "/campaigns").json()["campaigns"]
        assert [(c["campaign_id"], c["state"], c["here"]) for c in listed] == [(campaign_id, "paused", True)]
        time.sleep(6)  # past the next call's turn (5 s at 0.2 calls per second): paused, so no call
        assert [o[0] for o in control.originated] == ["2001"]
        assert request(api, "POST", f"/campaigns/{campaign_id}/resume").json()["state"] == "running"
        deadline = time.monotonic() + 20
        while len(control.originated) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        cancelled = request(api, "DELETE", f"/campaigns/{campaign_id}").json()
        assert cancelled["state"] == "cancelled" and cancelled["stopped"] is True
        assert request(api, "POST", f"/campaigns/{campaign_id}/resume").status == 409
        assert request(api, "POST", "/campaigns/nope/pause").status == 404
        time.sleep(6)
        assert [o[0] for o in control.originated] == ["2001", "2002"]  # cancelled: the third never called
        assert SqliteStore(tmp_path / "vg.db").campaign(campaign_id).state == "cancelled"
    finally:
        api.stop()
