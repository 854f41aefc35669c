"""HTTP tools against a real local HTTP server: every failure is a result the agent can talk about, no secret leaks."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.tools import HttpToolConfig, ToolResult, run_http_tool
from gateway.tools.http_tool import MAX_TEXT_CHARS

TOKEN = "s3cr3t-crm-token-0042"
ENV = {"CRM_TOKEN": TOKEN}


class Api(BaseHTTPRequestHandler):
    """A small CRM: records what it received in ``server.seen`` and answers by path."""

    server: "ApiServer"

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        seen = {
            "method": self.command,
            "path": url.path,
            "query": parse_qs(url.query),
            "headers": dict(self.headers),
            "body": body.decode() if body else None,
        }
        self.server.seen.append(seen)
        if url.path.startswith("/orders/"):
            order = {"order": url.path.rsplit("/", 1)[1], "status": "shipped", "items": [1, 2]}
            self._send(200, json.dumps(order, indent=4).encode(), "application/json")
        elif url.path == "/tickets":
            self._send(201, json.dumps({"created": json.loads(body)}).encode(), "application/json; charset=utf-8")
        elif url.path == "/missing":
            self._send(404, b'{"error": "no such order"}', "application/json")
        elif url.path == "/boom":
            self._send(500, b"Internal Server Error", "text/plain")
        elif url.path == "/forbidden":  # a careless API that echoes the credentials it rejected
            self._send(403, f"bad token: {self.headers.get('Authorization')}".encode(), "text/plain")
        elif url.path == "/slow":
            time.sleep(1.0)
            self._send(200, b"late", "text/plain")
        elif url.path == "/binary":
            self._send(200, b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "application/octet-stream")
        elif url.path == "/latin1":
            self._send(200, "Caf\u00e9 ouvert".encode("latin-1"), "text/plain; charset=iso-8859-1")
        elif url.path == "/big":
            self._send(200, json.dumps({"rows": ["x" * 100] * 100}).encode(), "application/json")
        elif url.path == "/redirect-away":  # same server, other host name: must not get the token
            self._redirect(f"http://localhost:{self.server.server_port}/echo")
        elif url.path == "/redirect-file":
            self._redirect("file:///etc/passwd")
        elif url.path == "/echo":
            self._send(200, json.dumps(seen["headers"]).encode(), "application/json")
        else:
            self._send(404, b"", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # the client gave up on /slow: expected
        pass

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Api)
        self.seen: list[dict] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    server = ApiServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def tool(url: str, **kw) -> HttpToolConfig:
    kw.setdefault("parameters", {"order_id": {"type": "string", "description": "The order number"}})
    return HttpToolConfig(name=kw.pop("name", "order_status"), description="Look up an order", url=url, **kw)


def assert_no_secret(result: ToolResult) -> None:
    assert TOKEN not in repr(result)


def test_get_with_path_param_and_query(api):
    config = tool(
        api.base + "/orders/{order_id}",
        headers={"Authorization": "Bearer ${CRM_TOKEN}"},
        parameters={"order_id": {}, "verbose": {"type": "boolean"}, "lang": {}},
        required=["order_id"],
    )
    result = run_http_tool(config, {"order_id": "A 17/3", "verbose": True, "lang": "en"}, env=ENV)
    assert result.ok and result.status == 200 and result.error is None
    assert result.text == '{"order":"A%2017%2F3","status":"shipped","items":[1,2]}'  # compact JSON for the model
    seen = api.seen[-1]
    assert seen["path"] == "/orders/A%2017%2F3"  # quoted: a "/" in the value cannot change the path
    assert seen["query"] == {"verbose": ["true"], "lang": ["en"]}
    assert seen["headers"]["Authorization"] == f"Bearer {TOKEN}"  # expanded at call time
    assert 0 < result.elapsed_ms < 5000
    assert_no_secret(result)


def test_post_sends_the_other_arguments_as_json(api):
    config = tool(
        api.base + "/tickets",
        method="POST",
        parameters={"subject": {}, "priority": {"type": "integer"}},
    )
    result = run_http_tool(config, {"subject": "Broken läptop", "priority": "2"}, env=ENV)
    assert result.ok and result.status == 201
    seen = api.seen[-1]
    assert seen["method"] == "POST" and seen["headers"]["Content-Type"] == "application/json"
    assert json.loads(seen["body"]) == {"subject": "Broken läptop", "priority": 2}
    assert json.loads(result.text) == {"created": {"subject": "Broken läptop", "priority": 2}}


def test_put_and_delete(api):
    put = run_http_tool(tool(api.base + "/tickets", method="PUT", parameters={"id": {}}), {"id": "7"})
    assert put.ok and json.loads(api.seen[-1]["body"]) == {"id": "7"}
    delete = run_http_tool(tool(api.base + "/orders/{order_id}", method="DELETE"), {"order_id": "9"})
    assert delete.ok and api.seen[-1]["method"] == "DELETE" and api.seen[-1]["body"] is None


def test_404_is_a_result_with_the_body(api):
    result = run_http_tool(tool(api.base + "/missing", parameters={}), {})
    assert not result.ok and result.status == 404
    assert result.error == "order_status: HTTP 404 Not Found"
    assert result.text == '{"error": "no such order"}'  # the API's explanation helps the model answer


def test_500_is_a_result(api):
    result = run_http_tool(tool(api.base + "/boom", parameters={}), {})
    assert (result.ok, result.status, result.error) == (False, 500, "order_status: HTTP 500 Internal Server Error")


def test_slow_endpoint_times_out_on_time(api):
    started = time.monotonic()
    result = run_http_tool(tool(api.base + "/slow", parameters={}, timeout_s=0.3), {})
    took = time.monotonic() - started
    assert not result.ok and result.status is None
    assert result.error == "order_status: timed out after 0.3 s"
    assert 0.25 < took < 0.8, took


def test_cancel_returns_at_once(api):
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    started = time.monotonic()
    result = run_http_tool(tool(api.base + "/slow", parameters={}, timeout_s=5), {}, cancel=cancel)
    assert not result.ok and result.error == "order_status: cancelled"
    assert time.monotonic() - started < 0.5


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = run_http_tool(tool(f"http://127.0.0.1:{port}/orders/{{order_id}}"), {"order_id": "1"})
    assert not result.ok and result.status is None
    assert result.error == "order_status: connection refused"


def test_missing_env_var_is_a_result_and_nothing_is_sent(api):
    config = tool(api.base + "/orders/{order_id}", headers={"Authorization": "Bearer ${CRM_TOKEN}"})
    result = run_http_tool(config, {"order_id": "1"}, env={})
    assert not result.ok and result.error == "order_status: environment variable CRM_TOKEN is not set"
    assert api.seen == []


def test_secrets_never_reach_error_text_or_repr(api):
    config = tool(api.base + "/forbidden", headers={"Authorization": "Bearer ${CRM_TOKEN}"}, parameters={})
    result = run_http_tool(config, {}, env=ENV)
    assert api.seen[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"  # the server did get it
    assert not result.ok and result.status == 403
    assert result.text == "bad token: ***"  # the model might read the body aloud
    assert_no_secret(result)
    literal = tool(api.base + "/forbidden", headers={"X-Api-Key": TOKEN}, parameters={})
    assert TOKEN not in repr(literal)
    assert_no_secret(run_http_tool(literal, {}))


def test_token_in_the_url_is_scrubbed(api):
    config = tool(api.base + "/missing?key=${CRM_TOKEN}", parameters={})
    result = run_http_tool(config, {}, env={"CRM_TOKEN": TOKEN})
    assert api.seen[-1]["query"] == {"key": [TOKEN]}
    assert result.status == 404
    assert_no_secret(result)


def test_redirect_to_another_host_drops_credentials(api):
    config = tool(api.base + "/redirect-away", headers={"Authorization": "Bearer ${CRM_TOKEN}"}, parameters={})
    result = run_http_tool(config, {}, env=ENV)
    assert result.ok, result
    assert "Authorization" not in json.loads(result.text)
    assert_no_secret(result)


def test_redirect_to_file_is_refused(api):
    result = run_http_tool(tool(api.base + "/redirect-file", parameters={}), {})
    assert not result.ok and "root:" not in result.text


def test_binary_body_is_an_error(api):
    result = run_http_tool(tool(api.base + "/binary", parameters={}), {})
    assert not result.ok and result.status is None
    assert result.error == "order_status: the response body is not valid UTF-8 text"


def test_declared_charset_is_honoured(api):
    result = run_http_tool(tool(api.base + "/latin1", parameters={}), {})
    assert result.ok and result.text == "Caf\u00e9 ouvert"


def test_long_bodies_are_truncated_for_the_model(api):
    result = run_http_tool(tool(api.base + "/big", parameters={}), {})
    assert result.ok and len(result.text) <= MAX_TEXT_CHARS
    assert result.text.startswith('{"rows":["xxx') and result.text.endswith("...[truncated]")


def test_invalid_arguments_are_a_result(api):
    result = run_http_tool(tool(api.base + "/orders/{order_id}"), {"order": "1"})
    assert not result.ok and result.error.startswith("order_status: unknown argument 'order'")
    assert api.seen == []


def test_only_http_urls_and_the_host_is_not_the_models_choice(api):
    with pytest.raises(ValueError, match="http:// or https://"):
        tool("file:///etc/passwd", parameters={})
    with pytest.raises(ValueError, match="host cannot be an argument"):
        tool("http://{order_id}.crm.local/x")
    with pytest.raises(ValueError, match="http:// or https://"):
        tool("${BASE}/orders/{order_id}")  # the scheme would come from the environment


def test_host_from_the_environment(api):
    config = tool("http://${CRM_HOST}/orders/{order_id}")
    result = run_http_tool(config, {"order_id": "5"}, env={"CRM_HOST": f"127.0.0.1:{api.server_port}"})
    assert result.ok and api.seen[-1]["path"] == "/orders/5"
