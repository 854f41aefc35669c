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
