"""`voicegate chat` without the LLM: which agent it picks, what a tool does dry and live."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gateway.chat import Chat, pick_agent, show_call
from gateway.config import ConfigError, parse_config
from gateway.conversation.planner import TurnPlan
from gateway.conversation.text_reply import Route, TextReply
from gateway.store import open_store
from gateway.tools import ToolCall

INSTRUCTIONS = "You are the front desk of Harbor Dental.\n- Opening hours: Monday to Friday, 8 am to 5 pm."


def config(default: str | None = "desk"):
    return parse_config({"sip": {"listen": "127.0.0.1:5080", **({"default_agent": default} if default else {})},
                         "agents": {"line": {"type": "echo"},
                                    "desk": {"type": "conversation", "instructions": INSTRUCTIONS,
                                             "tools": ["take_message", "hangup"]}}}, source="gw.yaml")


def test_the_default_agent_is_chatted_with_unless_another_is_named():
    assert pick_agent(config(), "gw.yaml", None).name == "desk"
    assert pick_agent(config(default="line"), "gw.yaml", None).name == "desk"  # the first that can talk


def test_an_echo_or_unknown_agent_is_a_config_error_naming_the_choices():
    for name in ("line", "nobody"):
        with pytest.raises(ConfigError) as err:
            pick_agent(config(), "gw.yaml", name)
        assert "gw.yaml" in str(err.value) and f"agents.{name}" in str(err.value) and "'desk'" in str(err.value)


def chat(tmp_path: Path, live: bool) -> tuple[Chat, io.StringIO]:
    cfg = config()
    out = io.StringIO()
    store = open_store(tmp_path / "vg.db") if live else None
    return Chat(cfg, cfg.agents["desk"], llm=None, live_tools=live, store=store, out=out), out


def test_a_dry_run_prints_the_call_and_runs_nothing(tmp_path: Path):
    c, out = chat(tmp_path, live=False)
    try:
        c._tool(ToolCall("take_message", {"message": "I will be late", "name": "John"}), "tell them I'm late")
    finally:
        c.close()
    assert out.getvalue().strip() == ("tool (dry run, --live-tools to run it): "
                                      "take_message(message='I will be late', name='John')")


def test_a_live_message_is_stored_by_the_agents_own_executor(tmp_path: Path):
    c, out = chat(tmp_path, live=True)
    try:
        c._tool(ToolCall("take_message", {"message": "I will be late", "name": "John"}), "tell them I'm late")
        messages = c.store.messages()
    finally:
        c.close()
        c.store.close()
    assert [(m.text, m.caller_name) for m in messages] == [("I will be late", "John")]
    assert "tool ok: message" in out.getvalue()


def test_the_facts_shown_are_the_ones_given_to_the_model():
    plan = TurnPlan(content="Facts:\n- Hours: 8 to 5\n- Parking: free\n\nCaller: when are you open?")
    reply = TextReply(Route.LLM_FACTS, ["We are open 8 to 5."], plan=plan)
    assert reply.facts == "- Hours: 8 to 5\n- Parking: free"
    assert TextReply(Route.LLM, ["Hi."], plan=TurnPlan(content="hello")).facts is None
    assert show_call(ToolCall("hangup", {})) == "hangup()"


def test_a_live_http_tool_runs_and_its_result_is_told(tmp_path: Path):
    """A real HTTP server on loopback and the small test model (SmolLM2): the lookup runs, and its
    result is told the way a call tells it (the model's sentence if the agent's check passes it,
    else the fallback line; which one is the model's business, not the chat's)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from models.llama import LlamaConfig, LlamaCppLlm
    from models.registry import resolve_test_llm

    asked: list[str] = []

    class Orders(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            asked.append(self.path)
            body = json.dumps({"status": "shipped"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Orders)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tool = {"http": {"name": "order_status", "description": "Look up an order", "method": "GET",
                     "url": f"http://127.0.0.1:{server.server_port}/orders/{{order_id}}",
                     "parameters": {"order_id": {"type": "string", "description": "The order number"}}}}
    cfg = parse_config({"sip": {"listen": "127.0.0.1:5080"},
                        "agents": {"desk": {"type": "conversation", "instructions": INSTRUCTIONS, "tools": [tool]}}},
                       source="gw.yaml")
    llm = LlamaCppLlm(LlamaConfig(model_path=str(resolve_test_llm()), n_ctx=2048, n_threads=2))
    out = io.StringIO()
    c = Chat(cfg, cfg.agents["desk"], llm, live_tools=True, out=out)
    try:
        c._tool(ToolCall("order_status", {"order_id": "5521"}), "can you check order 5521")
    finally:
        c.close()
        llm.close()
        server.shutdown()
    assert asked == ["/orders/5521"]
    lines = out.getvalue().splitlines()
    assert lines[0].strip() == "tool: order_status(order_id='5521')" and lines[1].strip().startswith("tool ok:")
    assert len(lines) == 3 and lines[-1].startswith("bot: ") and len(lines[-1]) > len("bot: ") + 3, lines


def test_a_dictated_message_is_stored_in_the_callers_words_with_no_model(tmp_path: Path):
    c, out = chat(tmp_path, live=True)  # llm=None: the message route must not need it
    try:
        reply = c.turn("could you tell the dentist I'll be ten minutes late, my number is 555 0173")
        messages = c.store.messages()
    finally:
        c.close()
        c.store.close()
    assert reply.route is Route.FIXED and reply.call is not None and reply.call.name == "take_message"
    assert [(m.text, m.callback_number) for m in messages] == [  # the store keeps the number's digits
        ("could you tell the dentist I'll be ten minutes late, my number is 555 0173", "5550173")]
