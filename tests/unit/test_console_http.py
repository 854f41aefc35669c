"""The web console over real sockets on 127.0.0.1: login gate, sessions, CSRF, roles, pages, live stream.

The gateway side is test_http_api's FakeControl (no SIP here); records are written by the real
CallRecorder, the store is a real SQLite file, campaigns run through the real control API.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from gateway.agents.base import RecordKind
from gateway.console import CallFeed, Console, ConsoleSources, Credentials
from gateway.http_api import HttpApi
from gateway.metrics import Metrics
from gateway.records import CallRecorder
from gateway.store import open_store
from tests.unit.test_http_api import TOKEN, FakeControl

PASSWORD = "console-admin-pw-1"
VIEWER = "console-viewer-pw-1"


class Browser:
    """A cookie-keeping HTTP client (what a browser does for the console, minus the rendering)."""

    def __init__(self, port: int):
        self.port = port
        self.cookie: str | None = None

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        all_headers = dict(headers or {})
        if self.cookie:
            all_headers["Cookie"] = self.cookie
        body = None
        if form is not None:
            body = urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        got = {k.lower(): v for k, v in response.getheaders()}
        conn.close()
        if "set-cookie" in got:
            self.cookie = got["set-cookie"].split(";", 1)[0]
        return response.status, got, text

    def login(self, password: str) -> int:
        return self.request("POST", "/console/login", {"password": password, "next": "/"})[0]

    def csrf(self) -> str:
        _, _, text = self.request("GET", "/console/health")
        match = re.search(r'data-csrf="([^"]+)"', text)
        assert match, text[:500]
        return match.group(1)


@pytest.fixture
def env(tmp_path: Path):
    control = FakeControl()
    feed = CallFeed()
    store = open_store(str(tmp_path / "memory.db"))
    records = tmp_path / "records"
    records.mkdir()
    sources = ConsoleSources(control=control, metrics=Metrics(), credentials=Credentials(TOKEN, PASSWORD, VIEWER),
                             feed=feed, records=records, store=lambda: store, agents=("front-desk",))
    api = HttpApi(("127.0.0.1", 0), TOKEN, control, sources.metrics, console=Console(sources))
    api.start()
    try:
        yield api, control, feed, store, records
    finally:
        api.stop()
        store.close()


def test_nothing_is_reachable_without_a_session(env):
    api, control, *_ = env
    control.calls["c1"] = {"call_id": "c1", "remote": "sip:2002@pbx", "agent": "front-desk", "started_at": 0}
    anonymous = Browser(api.port)
    for path in ("/", "/console/history", "/console/messages", "/console/callers", "/console/campaigns",
                 "/console/health", "/console/history/c1"):
        status, headers, _ = anonymous.request("GET", path)
        assert status == 303 and headers["location"].startswith("/console/login?next="), path
    assert anonymous.request("GET", "/console/events")[0] == 401
    assert anonymous.request("GET", "/console/audio/c1")[0] == 401
    assert anonymous.request("POST", "/console/calls/c1/hangup", {"csrf": "x"})[0] == 401
    assert anonymous.request("POST", "/console/callers/2002/forget", {"csrf": "x"})[0] == 401
    assert "c1" in control.calls
    forged = Browser(api.port)
    forged.cookie = "voicegate_session=not-a-session"
    assert forged.request("GET", "/")[0] == 303
    status, _, page = anonymous.request("GET", "/console/login")
    assert status == 200 and 'type="password"' in page


def test_login_sets_a_secure_session_cookie_and_wrong_passwords_fail(env):
    api, *_ = env
    browser = Browser(api.port)
    assert browser.login("wrong password") == 401 and browser.cookie is None
    status, headers, _ = browser.request("POST", "/console/login", {"password": PASSWORD, "next": "/console/health"})
    assert status == 303 and headers["location"] == "/console/health"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert browser.request("GET", "/")[0] == 200
    behind_tls = Browser(api.port)
    status, headers, _ = behind_tls.request("POST", "/console/login", {"password": TOKEN},
                                            headers={"X-Forwarded-Proto": "https"})
    assert status == 303 and "Secure" in headers["set-cookie"]
    for target in ("//evil.example/", "https://evil.example/"):
        _, headers, _ = Browser(api.port).request("POST", "/console/login", {"password": PASSWORD, "next": target})
        assert headers["location"] == "/"
    csrf = browser.csrf()
    assert browser.request("POST", "/console/logout", {"csrf": csrf})[0] == 303
    assert browser.request("GET", "/")[0] == 303


def test_posts_need_the_csrf_token_same_origin_and_the_admin_role(env):
    api, control, *_ = env
    control.calls["c1"] = {"call_id": "c1", "remote": "sip:2002@pbx", "agent": "front-desk", "started_at": 0}
    admin = Browser(api.port)
    assert admin.login(PASSWORD) == 303
    csrf = admin.csrf()
    assert admin.request("POST", "/console/calls/c1/hangup", {})[0] == 403
    assert admin.request("POST", "/console/calls/c1/hangup", {"csrf": "guess"})[0] == 403
    cross = admin.request("POST", "/console/calls/c1/hangup", {"csrf": csrf}, headers={"Origin": "http://evil.example"})
    assert cross[0] == 403 and "c1" in control.calls
    viewer = Browser(api.port)
    assert viewer.login(VIEWER) == 303
    status, _, page = viewer.request("GET", "/")
    assert status == 200 and "Hang up" not in page
    assert viewer.request("POST", "/console/calls/c1/hangup", {"csrf": viewer.csrf()})[0] == 403
    assert "c1" in control.calls
    status, headers, _ = admin.request("POST", "/console/calls/c1/hangup", {"csrf": csrf},
                                       headers={"Origin": f"http://127.0.0.1:{api.port}"})
    assert status == 303 and "c1" not in control.calls
    assert admin.request("POST", "/console/calls/c1/hangup", {"csrf": csrf})[0] == 404


def test_pages_send_a_strict_content_security_policy(env):
    api, *_ = env
    browser = Browser(api.port)
    browser.login(PASSWORD)
    _, headers, _ = browser.request("GET", "/")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    status, headers, js = browser.request("GET", "/console/static/console.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript") and "EventSource" in js


def test_the_live_stream_sends_the_calls_then_transcript_events_as_they_are_recorded(env):
    api, control, feed, *_ = env
    control.calls["c1"] = {"call_id": "c1", "remote": "sip:2002@pbx", "agent": "front-desk",
                           "started_at": time.time(), "state": "confirmed"}
    feed.record("c1", RecordKind.CALLER_SPEECH, {"start": 1.0, "end": 2.0, "text": "Before I looked"})
    browser = Browser(api.port)
    browser.login(TOKEN)
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.request("GET", "/console/events", headers={"Cookie": browser.cookie})
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    events = _read_events(response, until="ready")
    assert [name for name, _ in events] == ["calls", "caller", "ready"]
    assert events[0][1][0]["call_id"] == "c1" and events[1][1]["text"] == "Before I looked"
    feed.record("c1", RecordKind.BOT_SPEECH, {"start": 3.0, "end": 4.0, "text": "We open at 8.", "interrupted": False})
    feed.record("c1", RecordKind.TURN, {"turn": 1, "caller": "x", "bot": "y", "speech_end": 2.0,
                                        "stages": {"first_rtp_ms": 812.5}, "cancelled": False})
    events = _read_events(response, until="turn")
    assert [name for name, _ in events] == ["bot", "turn"]
    assert events[1][1]["stages"]["first_rtp_ms"] == 812.5
    del control.calls["c1"]
    feed.call_ended("c1", "remote_bye")
    events = _read_events(response, until="calls")
    assert events[-2:] == [("ended", {"call_id": "c1", "reason": "remote_bye"}), ("calls", [])]
    response.close()
    conn.close()
    deadline = time.monotonic() + 30  # found at the second keepalive write after the browser left (~10 s)
    while feed.subscribers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert feed.subscribers == 0  # the browser went away: its subscription is gone


def _read_events(response, until: str) -> list[tuple[str, object]]:
    events: list[tuple[str, object]] = []
    name = None
    while True:
        line = response.fp.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name is not None:
            events.append((name, json.loads(line[6:])))
            if name == until:
                return events


def test_history_call_page_timeline_and_audio_from_a_real_record(env):
    api, _, _, _, records = env
    t0 = time.time()
    with CallRecorder(records, "abc@host", audio=True, clock=lambda: t0) as recorder:
        recorder.event("call_start", call_id="abc@host", direction="inbound", remote="sip:+15551234@pbx",
                       agent="front-desk")
        recorder.event("caller_speech", start=t0 + 1, end=t0 + 2, text="When do you <b>open</b>?")
        recorder.event("turn", turn=1, caller="When do you open?", bot="At 8.", speech_end=t0 + 2,
                       stages={"transcript_final_ms": 200, "llm_first_token_ms": 400, "first_rtp_ms": 900})
        recorder.event("bot_speech", start=t0 + 2.9, end=t0 + 4, text="At 8.", interrupted=False)
        for _ in range(50):
            recorder.audio(np.zeros(160, np.int16), np.zeros(160, np.int16))
        recorder.event("call_end", reason="remote_bye: Normal", code=200, duration_s=5.0)
    browser = Browser(api.port)
    browser.login(PASSWORD)
    status, _, page = browser.request("GET", "/console/history?caller=5551234&outcome=remote_bye")
    assert status == 200 and "sip:+15551234@pbx" in page and "/console/history/abc%40host" in page
    _, _, page = browser.request("GET", "/console/history?caller=nobody")
    assert "No call matches" in page
    assert browser.request("GET", "/console/history?date=yesterday")[0] == 400
    status, _, page = browser.request("GET", "/console/history/abc%40host")
    assert status == 200 and "<svg" in page and 'id="recording"' in page
    assert "&lt;b&gt;open&lt;/b&gt;" in page and "<b>open</b>" not in page  # caller words are escaped
    assert "900 ms" in page
    status, headers, _ = browser.request("GET", "/console/audio/abc%40host")
    assert status == 200 and headers["content-type"] == "audio/wav" and int(headers["content-length"]) > 44
    assert browser.request("GET", "/console/history/nope")[0] == 404


def test_messages_and_caller_memory_view_and_forget(env):
    api, _, _, store, _ = env
    store.record_call("sip:+15551234@pbx", name="Ann", reason="a cleaning")
    store.take_message("Please call back about the quote", caller_id="sip:+15551234@pbx", caller_name="Ann",
                       callback_number="+15551234", call_id="call-9", transcript="...", agent="front-desk")
    browser = Browser(api.port)
    browser.login(PASSWORD)
    _, _, page = browser.request("GET", "/console/messages")
    assert "Please call back about the quote" in page
    _, _, page = browser.request("GET", "/console/callers?caller=%2B15551234")
    assert "Ann" in page and "a cleaning" in page and "Forget this caller" in page
    status, _, page = browser.request("POST", "/console/callers/%2B15551234/forget", {"csrf": browser.csrf()})
    assert status == 200 and 'id="forgotten"' in page
    assert store.caller("+15551234") is None and store.messages() == []


def test_campaigns_run_through_the_control_api(env):
    api, control, *_ = env
    browser = Browser(api.port)
    browser.login(PASSWORD)
    status, headers, _ = browser.request("POST", "/console/campaigns", {
        "csrf": browser.csrf(), "csv": "to,name\n2002,Ann\n2003,Bob\n", "agent": "", "concurrency": "2",
        "calls_per_second": "20"})
    assert status == 303 and headers["location"].startswith("/console/campaigns/"), headers
    detail = headers["location"]
    campaign_id = detail.rsplit("/", 1)[1]
    deadline = time.monotonic() + 10
    while len(control.originated) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(o[0] for o in control.originated) == ["2002", "2003"]
    _, _, page = browser.request("GET", "/console/campaigns")
    assert f'href="{detail}"' in page and '<dd data-fact="contacts">2</dd>' in page
    deadline = time.monotonic() + 10
    while page.count("<td>done</td>") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        _, _, page = browser.request("GET", detail)
    assert "<td>Ann</td><td>2002</td><td>done</td><td>answered</td>" in page, page  # name, number, status, outcome
    assert 'href="/console/history/call-1%40gw"' in page or 'href="/console/history/call-2%40gw"' in page
    status, headers, csv_text = browser.request("GET", f"{detail}/results.csv")
    assert status == 200 and headers["content-type"].startswith("text/csv"), headers
    assert f'filename="campaign-{campaign_id}.csv"' in headers["content-disposition"]
    assert csv_text.splitlines()[0].startswith("row,to,") and len(csv_text.splitlines()) == 3
    status, _, page = browser.request("POST", "/console/campaigns", {"csrf": browser.csrf(), "csv": ""})
    assert status == 400 and "csv" in page
    status, _, page = browser.request("POST", f"{detail}/pause", {"csrf": browser.csrf()})
    assert status == 409 and "finished" in page  # the API's refusal, shown as is
    assert browser.request("GET", "/console/campaigns/nope")[0] == 404


def test_a_campaigns_live_stream_sends_its_results_then_done(env):
    api, control, *_ = env
    browser = Browser(api.port)
    browser.login(VIEWER)  # a read-only login may watch
    admin = Browser(api.port)
    admin.login(PASSWORD)
    _, headers, _ = admin.request("POST", "/console/campaigns", {
        "csrf": admin.csrf(), "csv": "to\n2001\n2002\n", "calls_per_second": "20"})
    detail = headers["location"]
    _, _, page = browser.request("GET", detail)
    assert 'class="campaign-view"' in page and "Pause" not in page  # no buttons for a viewer
    status, headers, text = browser.request("GET", f"{detail}/events")  # ends by itself: the campaign finishes
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [block for block in text.split("\n\n") if block.startswith("event:")]
    assert events[-1].startswith("event: done") and '"state":"finished"' in events[-1], events[-1]
    latest: dict[int, dict] = {}  # each event carries only the contacts that changed
    for block in events[:-1]:
        latest.update((c["row"], c) for c in json.loads(block.split("data: ", 1)[1])["contacts"])
    assert [(c["to"], c["status"], c["outcome"]) for _, c in sorted(latest.items())] == [
        ("2001", "done", "answered"), ("2002", "done", "answered")], latest
    assert browser.request("POST", f"{detail}/stop", {"csrf": browser.csrf()})[0] == 403  # viewer: no actions


def test_health_page_shows_readiness_registrations_and_metrics(env):
    api, *_ = env
    api.metrics.voice_to_voice(0.8)
    browser = Browser(api.port)
    browser.login(VIEWER)
    status, _, page = browser.request("GET", "/console/health")
    assert status == 200 and 'id="readiness"' in page and "sip:2001@pbx" in page and "800 ms over 1" in page


def test_the_console_is_off_without_any_credential(tmp_path):
    control = FakeControl()
    sources = ConsoleSources(control=control, metrics=Metrics(), credentials=Credentials(None, None, None))
    api = HttpApi(("127.0.0.1", 0), None, control, sources.metrics, console=Console(sources))
    api.start()
    try:
        status, _, page = Browser(api.port).request("GET", "/")
        assert status == 403 and "http.console_password" in page
        assert Browser(api.port).login("anything at all") == 401
    finally:
        api.stop()


def test_console_config_keys(tmp_path):
    from gateway.config import ConfigError, load_config
    from tests.unit.test_config import CONTRACT, write

    env = {"FRONT_DESK_PASSWORD": "s3cret", "CONSOLE_PW": "a-long-console-pw", "VIEW_PW": "a-long-viewer-pw"}
    text = CONTRACT + ("http:\n  listen: 127.0.0.1:8080\n  console_password: ${CONSOLE_PW}\n"
                       "  console_viewer_password: ${VIEW_PW}\n  console_session_hours: 2\n")
    http = load_config(write(tmp_path, text), env=env).http
    assert (http.console_password, http.console_viewer_password, http.console_session_hours) == \
        ("a-long-console-pw", "a-long-viewer-pw", 2.0)
    with pytest.raises(ConfigError, match=r"http\.console_password.*12 characters"):
        load_config(write(tmp_path, CONTRACT + "http:\n  console_password: ${PW}\n"), env={**env, "PW": "short"})
    with pytest.raises(ConfigError, match=r"http\.console_session_hours"):
        load_config(write(tmp_path, CONTRACT + "http:\n  console_session_hours: 0\n"), env=env)
    path = write(tmp_path, CONTRACT + "http:\n  console_password: typed-into-the-file\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"http\.console_password.*chmod 600"):
        load_config(path, env=env)
