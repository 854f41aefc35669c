"""Knowledge, tools, keypad and caller memory in the conversation agent, on a fake clock."""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.agents.base import RecordKind
from gateway.config import DtmfAction
from gateway.conversation.intents import asks_for_transfer, is_information_question, transfer_target
from gateway.conversation.settings import ConversationSettings
from gateway.conversation.skills import AgentSkills
from gateway.knowledge import KnowledgeBase
from gateway.store import open_store
from gateway.tools import load_tools
from tests.unit.conversation_fakes import silence_frames, speech_frames
from tests.unit.test_conversation import Harness

SETTINGS = ConversationSettings(greeting="Hello there.", instructions="Be brief.", reprompt_after_s=60,
                                hangup_after_s=120, agent_name="desk")
TARGETS = {"billing": "sip:2003@pbx.test", "operator": "sip:2000@pbx.test"}


def skills(tmp_path: Path | None = None, tools: list | None = None) -> AgentSkills:
    knowledge = None
    if tmp_path is not None:
        (tmp_path / "kb.md").write_text("# Harbor Dental\n\n## Hours\n\nWe are open Monday to Friday, 8 am to 5 pm.\n")
        knowledge = KnowledgeBase([tmp_path / "kb.md"])
        knowledge.build()
    return AgentSkills("desk", "Be brief.", load_tools(tools or [{"transfer": {"targets": TARGETS}}]), knowledge)


def phrases(h: Harness) -> list[str]:
    return [p.text for p in h.phrases()] + [" ".join(t.spoken) for t in h.turns()]


def test_a_plain_transfer_request_plays_the_notice_then_transfers_without_the_llm(harness):
    h = harness(settings=SETTINGS, skills=skills())
    h.run(silence_frames(2.0))
    h.run(speech_frames(4, 1.5))
    end = h.clock()
    h.run(silence_frames(4.0))
    assert h.transfers and h.transfers[0][1] == TARGETS["billing"]
    notice = h.first_audio_after(end)
    assert notice is not None and notice < h.transfers[0][0]  # the caller heard the notice first
    assert h.turns()[0].spoken == ["Transferring you to billing now."]
    assert not any("transfer me" in m[-1].content for m in h.models.llm.prompts)  # no LLM turn


def test_a_failed_transfer_is_spoken(harness):
    h = harness(settings=SETTINGS, skills=skills(), transfer_ok=False)
    h.run(silence_frames(2.0))
    h.run(speech_frames(4, 1.5))
    h.run(silence_frames(6.0))
    assert [p.why for p in h.phrases()][-1] == "transfer_failed"
    assert not h.hangups


def test_a_question_the_knowledge_cannot_answer_gets_the_fixed_answer(harness, tmp_path):
    h = harness(settings=SETTINGS, skills=skills(tmp_path))
    h.run(silence_frames(2.0))
    h.run(speech_frames(5, 1.5))
    h.run(silence_frames(3.0))
    assert SETTINGS.unknown_answer in phrases(h)
    assert not h.models.llm.prompts


def test_retrieved_facts_go_with_the_callers_message_not_the_system_prompt(harness, tmp_path):
    h = harness(settings=SETTINGS, skills=skills(tmp_path))
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.5))
    h.run(silence_frames(3.0))
    prompt = h.models.llm.prompts[-1]
    assert "Monday to Friday" in prompt[-1].content and "what are your opening hours" in prompt[-1].content
    assert "Monday" not in prompt[0].content
    turn = h.turns()[0]
    assert turn.caller_text == "what are your opening hours"  # the history keeps the caller's own words


class SlowOrders(http.server.BaseHTTPRequestHandler):
    delay_s = 0.3

    def do_GET(self):  # noqa: N802
        time.sleep(self.delay_s)
        body = b'{"order": "42", "status": "shipped"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def orders_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowOrders)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_http_tool_is_acknowledged_at_once_and_its_result_spoken_after(harness, orders_server):
    tools = [{"http": {"name": "order_status", "description": "Look up an order", "method": "GET",
                       "url": orders_server + "/orders/{order_id}",
                       "parameters": {"order_id": {"type": "string", "description": "order number"}}}}]
    call = 'CALL {"tool": "order_status", "arguments": {"order_id": "42"}}'
    h = harness(settings=SETTINGS, skills=skills(tools=tools),
                llm={"script": {"order 42": call, "lookup found": "Your order has shipped."}})
    h.run(silence_frames(2.0))
    h.run(speech_frames(6, 1.5))
    h.run(silence_frames(3.0))
    assert SETTINGS.acknowledgement in phrases(h)  # the model said nothing before its call: we did
    deadline = time.monotonic() + 5
    while not h.tool_outcomes() and time.monotonic() < deadline:
        h.run(silence_frames(0.2))
    h.run(silence_frames(2.0))
    outcome = h.tool_outcomes()[0].outcome
    assert outcome.ok and "shipped" in outcome.text
    assert "shipped" in h.models.llm.prompts[-1][-1].content
    assert any("shipped" in p for p in phrases(h))  # the model's sentence, or the result read out


def test_an_llm_transfer_the_caller_did_not_ask_for_is_not_executed(harness):
    call = 'Sure. CALL {"tool": "transfer", "arguments": {"target": "billing"}}'
    h = harness(settings=SETTINGS, skills=skills(), llm={"script": {"opening hours": call}})
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.5))
    h.run(silence_frames(4.0))
    assert not h.transfers
    assert h.turns()[0].action is None  # refused: nothing to run once the reply has played


def test_a_keypad_action_transfers_without_the_llm(harness):
    settings = replace(SETTINGS, dtmf={"0": DtmfAction(transfer="operator")})
    h = harness(settings=settings, skills=skills())
    h.run(silence_frames(2.0))
    h.agent.on_dtmf("0")
    h.run(silence_frames(3.0))
    assert h.transfers and h.transfers[0][1] == TARGETS["operator"]


def test_unbound_keys_become_one_turn_for_the_llm(harness):
    h = harness(settings=SETTINGS, skills=skills())
    h.run(silence_frames(2.0))
    for digit in "123":
        h.agent.on_dtmf(digit)
        h.run(silence_frames(0.2))
    h.run(silence_frames(3.0))
    assert "1 2 3" in h.models.llm.prompts[-1][-1].content


def test_a_returning_caller_is_greeted_by_name(harness, tmp_path):
    store = open_store(tmp_path / "memory.db")
    h = harness(settings=SETTINGS, skills=skills(), store=store, remote_uri="<sip:+15551234@pbx.test>",
                llm={"script": {}})
    h.agent.controller.history.caller_lines.append("hi my name is John Smith and I'm calling about a cleaning")
    h.close()
    assert store.caller("+15551234").name == "John Smith"
    h2 = harness(settings=SETTINGS, skills=skills(), store=store, remote_uri="\"J\" <sip:+15551234@pbx.test>")
    h2.run(silence_frames(1.0))
    assert h2.phrases()[0].text == "Welcome back, John Smith! How can I help you today?"


class _StuckStore:
    """A caller store whose server does not answer (a shared database under a lock, a dead link)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def caller(self, caller_id):
        self.release.wait(5)
        return None

    def record_call(self, *args, **kwargs):
        return None


def test_a_database_that_does_not_answer_never_delays_the_greeting_past_half_a_second(harness):
    store = _StuckStore()
    h = harness(settings=SETTINGS, skills=skills(), store=store, remote_uri="<sip:+15551234@pbx.test>")
    h.run(silence_frames(0.2))
    time.sleep(0.8)  # real time: the lookup is real work on a real thread, only the media clock is fake
    h.run(silence_frames(1.0))
    assert not store.release.is_set()  # the database still has not answered ...
    assert h.phrases()[0].why == "greeting"  # ... and the caller was greeted all the same
    assert h.log.find("caller_memory_slow")  # (an operator's log line is what this promises)
    store.release.set()


def test_intents():
    assert transfer_target("could you put me through to billing please", TARGETS) == "billing"
    assert transfer_target("I want to talk to a real person", TARGETS) == "operator"
    assert transfer_target("what does billing do", TARGETS) is None
    assert asks_for_transfer("I have a question about my bill, billing please", "billing")
    assert not asks_for_transfer("what are your opening hours", "billing")
    assert is_information_question("Do you sell car insurance?")
    assert is_information_question("what time do you close")
    assert not is_information_question("can you take a message for doctor smith")
    assert not is_information_question("my name is John")


def test_a_failing_model_costs_an_apology_not_the_call(harness):
    h = harness(settings=SETTINGS, skills=skills(), llm={"fail": True})
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.5))
    h.run(silence_frames(3.0))
    assert [p.why for p in h.phrases()][-1] == "model_error"
    assert not h.hangups  # the call goes on


@pytest.mark.parametrize("models", [{"stt": {"fail": True}},
                                    {"tts": {"fail_on": "You asked"}, "llm": {"reply_words": 400}}],
                         ids=["stt-server-gone", "tts-server-gone"])
def test_a_failing_speech_server_costs_an_apology_not_the_call(harness, models):
    h = harness(settings=SETTINGS, skills=skills(), **models)
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.5))
    h.run(silence_frames(6.0))  # the LLM's 400 words would take 12 s: a dead speaker stops it
    assert RecordKind.MODEL_ERROR in h.records
    assert [p.why for p in h.phrases()][-1] == "model_error"
    assert not h.hangups


def test_a_hanging_model_is_cut_off_with_an_apology(harness):
    h = harness(settings=replace(SETTINGS, model_timeout_s=2.0), skills=skills(), llm={"first_token_s": 60.0})
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.5))
    h.run(silence_frames(4.0))
    assert RecordKind.MODEL_ERROR in h.records
    assert [p.why for p in h.phrases()][-1] == "model_timeout"
    assert not h.hangups


def test_a_tool_call_opening_a_plain_answer_gets_the_fact_not_one_moment(harness, tmp_path):
    """A plain question whose reply opens with a call no check could pass: no "one moment, please"
    promising what never comes; the model is stopped and the retrieved fact said."""
    call = 'CALL {"tool": "transfer", "arguments": {"target": "billing"}}'
    h = harness(settings=SETTINGS, skills=skills(tmp_path), llm={"script": {"opening hours": call}})
    h.run(silence_frames(2.0))
    h.run(speech_frames(1, 1.5))
    h.run(silence_frames(4.0))
    said = phrases(h)
    assert not any(SETTINGS.acknowledgement in p for p in said), said
    assert any("Monday to Friday" in p for p in said), said
    assert not h.transfers and h.turns()[0].action is None
