"""Warm transfer pieces: the state machine on a scripted timeline, its config, hold music, the
bridge between two legs, the briefing sentence and its fallback."""

from __future__ import annotations

import threading
import wave
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from gateway.calls.briefing_leg import LEAD_IN_FRAMES, BriefingAgent
from gateway.calls.media_routes import AudioLink, BridgeRoute, HoldRoute, Side
from gateway.calls.warm_transfer import (
    BRIEF_TIMEOUT_S,
    REFER_TIMEOUT_S,
    WarmAction,
    WarmOutcome,
    WarmState,
    WarmTransfer,
)
from gateway.config import ConfigError, load_config
from gateway.conversation.actions import CallFacts
from gateway.conversation.briefing import Briefer, checked_sentence, template_briefing
from gateway.conversation.hold_music import HoldMusicError, comfort_tone, load_hold_music
from gateway.tools.transfer_options import TransferMode
from rtp.hold_player import HoldPlayer
from rtp.jitter import FrameType, JitterFrame
from tests.unit.test_config import skills_config, write
from tests.unit.test_conversation_skills import orders_server  # noqa: F401  (the slow HTTP service fixture)

A = WarmAction

# -- the state machine, on a scripted timeline ----------------------------------------------------


def run(script: list[tuple[float, str, tuple]]) -> tuple[WarmTransfer, list[tuple[float, list[WarmAction]]],
                                                          list]:
    """Drive one transfer through `(time, event, args)` steps; timers run every 0.5 s between them."""
    transfer = WarmTransfer("billing", 0.0)
    actions: list[tuple[float, list[WarmAction]]] = []
    results = []
    now = 0.0
    for at, event, args in script:
        while now + 0.5 <= at:
            now += 0.5
            got = transfer.timers(now)
            if got:
                actions.append((now, got))
        now = at
        got = getattr(transfer, event)(*((now,) if event in ("answered", "briefed", "timers") else args))
        if got:
            actions.append((now, got))
        result = transfer.take_result()
        if result is not None:
            results.append(result)
    return transfer, actions, results


def test_answered_briefed_and_referred_hangs_up_both_our_legs():
    transfer, actions, results = run([
        (4.0, "answered", ()), (7.5, "briefed", ()),
        (7.6, "refer_status", (202, "Accepted", False)),
        (8.0, "target_ended", (0,)),  # Replaces: the target drops our leg before the final NOTIFY
        (8.2, "refer_status", (200, "OK", True)),
    ])
    assert [a for _, a in actions] == [[A.SEND_REFER], [A.HANG_UP_CALLER, A.HANG_UP_TARGET]]
    assert transfer.state is WarmState.REFERRED
    assert [r.outcome for r in results] == [WarmOutcome.REFERRED] and results[0].ok


def test_a_refused_refer_bridges_the_legs_and_either_end_ends_both():
    transfer, actions, results = run([
        (3.0, "answered", ()), (6.0, "briefed", ()), (6.1, "refer_status", (405, "Method Not Allowed", True)),
        (30.0, "target_ended", (0,)),
    ])
    assert [a for _, a in actions] == [[A.SEND_REFER], [A.BRIDGE], [A.HANG_UP_CALLER]]
    assert [r.outcome for r in results] == [WarmOutcome.BRIDGED]
    assert transfer.state is WarmState.ENDED


def test_no_final_notify_bridges_after_the_refer_timeout():
    _, actions, results = run([(2.0, "answered", ()), (5.0, "briefed", ()), (5.0 + REFER_TIMEOUT_S + 1, "timers", ())])
    bridge_at = [t for t, a in actions if a == [A.BRIDGE]]
    assert bridge_at and 5.0 + REFER_TIMEOUT_S <= bridge_at[0] < 5.0 + REFER_TIMEOUT_S + 0.6
    assert results[0].outcome is WarmOutcome.BRIDGED


def test_a_briefing_that_never_ends_still_connects():
    _, actions, _ = run([(2.0, "answered", ()), (2.0 + BRIEF_TIMEOUT_S + 1, "timers", ())])
    assert actions[0][1] == [A.SEND_REFER] and actions[0][0] >= 2.0 + BRIEF_TIMEOUT_S


@pytest.mark.parametrize(("code", "outcome"), [(486, WarmOutcome.BUSY), (487, WarmOutcome.NO_ANSWER),
                                               (603, WarmOutcome.REJECTED), (408, WarmOutcome.UNREACHABLE)])
def test_a_target_that_does_not_answer_takes_the_caller_off_hold(code, outcome):
    transfer, actions, results = run([(20.0, "target_ended", (code,))])
    assert actions == [(20.0, [A.UNHOLD_CALLER])]  # the leg is gone already: nothing to hang up
    assert results[0].outcome is outcome and not results[0].ok
    assert transfer.state is WarmState.FAILED


def test_a_target_that_hangs_up_during_the_briefing_fails_the_transfer():
    _, actions, results = run([(2.0, "answered", ()), (3.0, "target_ended", (0,))])
    assert actions == [(3.0, [A.UNHOLD_CALLER])]
    assert results[0].outcome is WarmOutcome.TARGET_HUNG_UP


def test_the_caller_leaving_ends_the_target_leg_or_completes_an_accepted_refer():
    _, actions, results = run([(5.0, "caller_ended", ())])
    assert actions == [(5.0, [A.HANG_UP_TARGET])] and results[0].outcome is WarmOutcome.CALLER_LEFT
    _, actions, results = run([(1.0, "answered", ()), (2.0, "briefed", ()),
                               (2.1, "refer_status", (100, "Accepted", False)),  # pjsua's report of the 202
                               (2.5, "caller_ended", ())])
    assert results[0].outcome is WarmOutcome.REFERRED


def test_a_refer_that_fails_after_the_target_left_gives_the_caller_back():
    _, actions, results = run([(1.0, "answered", ()), (2.0, "briefed", ()), (2.5, "target_ended", (0,)),
                               (3.0, "refer_status", (603, "Declined", True))])
    assert actions[-1] == (3.0, [A.UNHOLD_CALLER]) and results[0].outcome is WarmOutcome.TARGET_HUNG_UP


def test_the_outcome_is_reported_once():
    transfer = WarmTransfer("billing", 0.0)
    transfer.target_ended(486)
    assert transfer.take_result() is not None
    transfer.caller_ended()
    assert transfer.take_result() is None


# -- config ----------------------------------------------------------------------------------------

WARM = ('transfer: {targets: {billing: "sip:2003@pbx.example.com", operator: "sip:2000@pbx.example.com"}}',
        'transfer: {mode: warm, ring_timeout_s: 15, hold_music: HOLD, '
        'targets: {billing: "sip:2003@pbx.example.com", operator: {uri: "sip:2000@pbx.example.com", mode: blind}}}')


def hold_wav(path: Path, rate: int = 16000, channels: int = 2) -> Path:
    t = np.arange(rate) / rate
    pcm = (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(pcm, channels).tobytes())
    return path


def test_today_s_transfer_yaml_stays_blind(tmp_path):
    tools = load_config(write(tmp_path, skills_config(tmp_path)), env={"CRM_TOKEN": "t"}).agents["front-desk"].tools
    assert {t.mode for t in tools.transfer_plans.values()} == {TransferMode.BLIND}
    assert tools.transfer_targets["operator"] == "sip:2000@pbx.example.com"


def test_warm_options_per_tool_and_per_target(tmp_path):
    hold_wav(tmp_path / "hold.wav")
    text = skills_config(tmp_path).replace(WARM[0], WARM[1].replace("HOLD", "hold.wav"))  # relative to the config
    tools = load_config(write(tmp_path, text), env={"CRM_TOKEN": "t"}).agents["front-desk"].tools
    billing, operator = tools.transfer_plans["billing"], tools.transfer_plans["operator"]
    assert billing.mode is TransferMode.WARM and billing.ring_timeout_s == 15
    assert billing.hold_music == str(tmp_path / "hold.wav")
    assert operator.mode is TransferMode.BLIND and operator.uri == "sip:2000@pbx.example.com"
    assert tools.transfer_targets == {"billing": "sip:2003@pbx.example.com", "operator": "sip:2000@pbx.example.com"}


@pytest.mark.parametrize(("option", "key", "expected"), [
    ("mode: cold", "agents.front-desk.tools[0].transfer.mode", "blind or warm"),
    ("ring_timeout_s: 0", "agents.front-desk.tools[0].transfer.ring_timeout_s", "seconds from 1 to 120"),
    ("hold_music: nope.wav", "agents.front-desk.tools[0].transfer.hold_music", "an existing 16-bit PCM WAV file"),
    ("music: x", "agents.front-desk.tools[0]", "'music' is none of them"),
])
def test_warm_option_errors_name_the_key(tmp_path, option, key, expected):
    text = skills_config(tmp_path).replace("transfer: {targets:", f"transfer: {{{option}, targets:")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={"CRM_TOKEN": "t"})
    assert err.value.key == key and expected in str(err.value), str(err.value)


def test_agent_hold_music_is_a_file_or_tone(tmp_path):
    text = skills_config(tmp_path).replace('    greeting: "Hello"\n', '    greeting: "Hello"\n    hold_music: tone\n')
    assert load_config(write(tmp_path, text), env={"CRM_TOKEN": "t"}).agents["front-desk"].conversation.hold_music \
        == "tone"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text.replace("hold_music: tone", "hold_music: gone.wav")), env={"CRM_TOKEN": "t"})
    assert err.value.key == "agents.front-desk.hold_music"


# -- hold music and the media routes -------------------------------------------------------------


def test_hold_music_is_read_at_8_khz_mono_and_loops(tmp_path):
    pcm = load_hold_music(str(hold_wav(tmp_path / "h.wav", rate=16000, channels=2)))
    assert abs(len(pcm) - 8000) <= 2 and pcm.dtype == np.int16
    player = HoldPlayer(pcm)
    frames = [player.next_frame().pcm for _ in range(60)]  # 1.2 s of a 1 s loop: it wraps
    assert all(len(f) == 160 for f in frames)
    joined = np.concatenate(frames)
    assert np.array_equal(joined[len(pcm):len(pcm) + 160], pcm[:160])


def test_unreadable_hold_music_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    with pytest.raises(HoldMusicError, match="bad.wav"):
        load_hold_music(str(bad))


def test_the_comfort_tone_is_soft_and_not_silent():
    tone = comfort_tone().astype(float)
    assert 0 < np.abs(tone).max() < 0.1 * 32767 and len(tone) == 3 * 8000


def frame(value: int, kind: FrameType = FrameType.NORMAL) -> JitterFrame:
    return JitterFrame(kind, np.full(160, value, dtype=np.int16))


def test_hold_route_sends_the_loop_whatever_the_caller_says():
    route = HoldRoute(HoldPlayer(np.arange(320, dtype=np.int16)))
    assert np.array_equal(route.exchange(frame(999)).pcm, np.arange(160))
    assert np.array_equal(route.exchange(frame(999)).pcm, np.arange(160, 320))


def test_a_bridge_relays_each_frame_once_whichever_leg_ticks_first():
    link = AudioLink()
    caller, target = BridgeRoute(link, Side.CALLER), BridgeRoute(link, Side.TARGET)
    heard_by_target, heard_by_caller = [], []
    for tick in range(10):
        legs = [(caller, 100 + tick, heard_by_caller), (target, 200 + tick, heard_by_target)]
        for route, value, heard in legs if tick % 3 else reversed(legs):
            out = route.exchange(frame(value))
            if out is not None:
                heard.append(int(out.pcm[0]))
    for route, heard in ((caller, heard_by_caller), (target, heard_by_target)):  # the last frames in flight
        while (out := route.exchange(frame(0, FrameType.EMPTY))) is not None:  # nothing received: nothing sent
            heard.append(int(out.pcm[0]))
    assert heard_by_target == list(range(100, 110))  # every frame once, in order
    assert heard_by_caller == list(range(200, 210))


# -- the briefing ----------------------------------------------------------------------------------


class StubLlm:
    def __init__(self, text: str, delay_s: float = 0.0):
        self.text, self.delay_s = text, delay_s

    def stream_chat(self, messages, *, max_tokens=256, temperature=0.7, stop=(), cancel=None, affinity=None):
        for word in self.text.split(" "):
            if cancel is not None and cancel.is_set():
                return
            if self.delay_s:
                threading.Event().wait(self.delay_s)
            yield word + " "


def facts(name: str | None = None) -> CallFacts:
    return CallFacts("+15551234", name, transcript=lambda: "My invoice shows a double charge.\n"
                                                          "Please transfer me to billing.")


def test_the_template_names_the_caller_and_their_request_not_the_transfer_ask():
    assert template_briefing(facts("John Smith"), "billing") == \
        "I have John Smith on the line, who said: My invoice shows a double charge."
    assert template_briefing(CallFacts(None), "billing") == "I have a caller on the line for billing."
    assert "1 5 5 5 1 2 3 4" in template_briefing(facts(), "billing")


@pytest.mark.parametrize(("text", "expected"), [
    ("I have John Smith on the line about an invoice. Thanks!", "I have John Smith on the line about an invoice."),
    ('"A caller about a double charge on an invoice"', "A caller about a double charge on an invoice."),
    ("CALL transfer(target=billing)", None), ("Hi.", None), ("Who is calling about the invoice?", None), ("", None),
    ("I'd like a quote for twenty office chairs.", None), ("I have a question about invoice 4471.", None),
    ("I have Anna Berg on the line about her appointment.", "I have Anna Berg on the line about her appointment."),
])
def test_the_model_s_sentence_is_checked(text, expected):
    assert checked_sentence(text) == expected


def test_a_sentence_with_a_reason_the_caller_never_gave_is_not_used():
    only_transfer = CallFacts("2002", None, transcript=lambda: "Please transfer me to billing.")
    briefer = Briefer(StubLlm("The caller is on the line about an invoice."), lambda t: np.zeros(0, np.int16),
                      only_transfer, _Log(), deadline_s=5.0)
    assert briefer.text("billing", threading.Event()) == ("I have a caller from 2 0 0 2 on the line for billing.",
                                                          "template")
    grounded = Briefer(StubLlm("I have John Smith on the line about a double charge."), lambda t: np.zeros(0, np.int16),
                       facts("John Smith"), _Log(), deadline_s=5.0)
    assert grounded.text("billing", threading.Event())[1] == "llm"


def test_the_briefer_uses_the_llm_in_time_and_the_template_when_late():
    def speak(text: str) -> np.ndarray:
        return np.zeros(800, dtype=np.int16)

    stopped = threading.Event()
    quick = Briefer(StubLlm("I have John Smith on the line about an invoice."), speak, facts("John Smith"),
                    _Log(), deadline_s=2.0)
    assert quick.text("billing", stopped) == ("I have John Smith on the line about an invoice.", "llm")
    slow = Briefer(StubLlm("I have John Smith on the line about an invoice.", delay_s=0.1), speak,
                   facts("John Smith"), _Log(), deadline_s=0.3)
    text, source = slow.text("billing", stopped)
    assert source == "template" and text.startswith("I have John Smith on the line")
    future = quick.start("billing", stopped)
    assert len(future.result(timeout=30)) == 800


class _Log:
    def __getattr__(self, name):
        return lambda *a, **k: None


def test_the_briefing_leg_waits_for_the_answer_and_the_audio_then_reports_once():
    future: Future[np.ndarray] = Future()
    events: list[str] = []
    agent = BriefingAgent(future, lambda: events.append("answered"), lambda: events.append("briefed"))
    agent.on_start()
    sent = []
    for tick in range(LEAD_IN_FRAMES + 20):
        agent.on_audio(frame(0))
        if tick == LEAD_IN_FRAMES + 5:
            future.set_result(np.full(400, 1000, dtype=np.int16))  # 50 ms: three frames, the last padded
        out = agent.next_frame()
        sent.append(out)
    spoken = [f for f in sent if f is not None]
    assert len(spoken) == 3 and all(len(f.pcm) == 160 for f in spoken)
    assert sent.index(spoken[0]) >= LEAD_IN_FRAMES  # never over the target's "Hello?"
    assert events == ["answered", "briefed"]


# -- the tool side: which transfer, and hold music around a slow tool ------------------------------

def executor(tools_yaml: list, calls: list, hold_music: str = "", llm_text: str = "I have a caller about a bill."):
    import queue

    from gateway.agents.base import CallContext
    from gateway.conversation.actions import ToolExecutor
    from gateway.tools import load_tools

    def warm(request, done):
        calls.append(("warm", request))
        done(True, "referred: 200 OK")

    context = CallContext(call_id="t", direction="inbound", local_uri="", remote_uri="", agent_name="t",
                          hangup=lambda r: None, send_dtmf=lambda d: None,
                          transfer=lambda uri, done: (calls.append(("blind", uri)), done(True, "200 OK")),
                          warm_transfer=warm, hold=lambda loop: calls.append(("hold", loop)), log=_Log())
    briefer = Briefer(StubLlm(llm_text), lambda text: np.zeros(160, dtype=np.int16), facts(), _Log())
    posted: queue.Queue = queue.Queue()
    return ToolExecutor(context, load_tools(tools_yaml), None, "t", facts(), posted.put, threading.Event(),
                        briefer, hold_music), posted


def test_a_warm_target_is_handed_to_the_call_side_with_its_music_and_briefing(tmp_path):
    from gateway.tools import ToolCall

    calls: list = []
    tools = [{"transfer": {"mode": "warm", "ring_timeout_s": 9,
                           "targets": {"billing": "sip:2003@pbx", "sales": {"uri": "sip:2004@pbx", "mode": "blind"}}}}]
    run_tools, posted = executor(tools, calls)
    run_tools.start(ToolCall("transfer", {"target": "billing"}))
    outcome = posted.get(timeout=10).outcome
    kind, request = calls[0]
    assert kind == "warm" and request.uri == "sip:2003@pbx" and request.ring_timeout_s == 9
    assert np.array_equal(request.hold_music, comfort_tone())
    assert len(request.briefing.result(timeout=10)) == 160
    assert outcome.ok and outcome.text.startswith("referred") and not run_tools.transferring.is_set()
    run_tools.start(ToolCall("transfer", {"target": "sales"}))
    posted.get(timeout=10)
    assert calls[-1] == ("blind", "sip:2004@pbx")


def test_a_slow_http_tool_plays_hold_music_until_it_answers(tmp_path, orders_server):  # noqa: F811
    from gateway.tools import ToolCall

    calls: list = []
    tools = [{"http": {"name": "order_status", "description": "Look up an order", "method": "GET",
                       "url": f"{orders_server}/orders/{{order_id}}",
                       "parameters": {"order_id": {"type": "string", "description": "The order"}}}}]
    run_tools, posted = executor(tools, calls, hold_music=str(hold_wav(tmp_path / "h.wav")))
    run_tools.start(ToolCall("order_status", {"order_id": "42"}))
    outcome = posted.get(timeout=10).outcome
    assert outcome.ok and "shipped" in outcome.text
    assert [kind for kind, _ in calls] == ["hold", "hold"]
    assert calls[0][1] is not None and len(calls[0][1]) > 7000 and calls[1][1] is None  # on, then off
