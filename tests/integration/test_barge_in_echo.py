"""Barge-in and echo on a real call: SIPp signals, a scripted RTP peer plays the caller.

The peer reacts to the bot in real time (it interrupts one second into the bot's reply) and can
return the bot's own audio like a line echo (-10 dB, 60 ms), which must not make the bot
interrupt itself.
"""

from __future__ import annotations

import subprocess
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import SCENARIOS
from tests.rig.gateway import PATIENT_MODEL_TIMEOUT_S, gateway_config
from tests.rig.ports import free_port_pair
from tests.rig.rtp_peer import RtpPeer, rms_dbfs
from tests.rig.sipp import run_sipp

# Long answers on purpose: the caller must be able to interrupt one second into a reply.
INSTRUCTIONS = """You are the receptionist of Harbor Dental, answering the phone.
Facts:
- Opening hours: Monday to Friday, 8 am to 5 pm. Closed on weekends.
- Address: 12 Harbor Street, next to the ferry terminal.
- Services: cleanings, fillings, crowns, root canals, whitening, braces, implants and emergency care.
Answer every question in detail, in at least four sentences."""


def speech(text: str, workdir: Path) -> np.ndarray:
    raw, out = workdir / f"{abs(hash(text))}.raw.wav", workdir / f"{abs(hash(text))}.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True)
    with wave.open(str(out)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def start_call(gw, tmp_path, peer: RtpPeer, seconds: float, scenario_name: str = "external_media.xml",
               timeout_s: float = 30.0) -> threading.Thread:
    """SIPp's side of a call whose media is `peer` (`scenario_name`: external_media.xml, or another
    scenario with the same [peer_port] and [call_ms] fields, e.g. refuse_refer.xml)."""
    scenario = (SCENARIOS / scenario_name).read_text()
    scenario = scenario.replace("[peer_port]", str(peer.port)).replace("[call_ms]", str(int(seconds * 1000)))
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / scenario_name
    path.write_text(scenario)
    result = {}
    seen = len(gw.find("call_media"))

    def run():
        result["sipp"] = run_sipp(path, f"127.0.0.1:{gw.sip_port}", tmp_path / "sipp", service="voicegate",
                                  timeout=seconds + timeout_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.result = result
    thread.start()
    deadline = time.monotonic() + 15
    while len(gw.find("call_media")) <= seen and time.monotonic() < deadline:
        time.sleep(0.02)
    media = gw.find("call_media")[seen] if len(gw.find("call_media")) > seen else gw.wait_log("call_media", 0.1)
    peer.start(media["local_port"])
    return thread


def run_call(gw, tmp_path, peer: RtpPeer, seconds: float, timeout: float = 60.0) -> None:
    """One whole call: SIPp signals and hangs up after `seconds`; `peer` plays and records the media."""
    call = start_call(gw, tmp_path, peer, seconds)
    call.join(timeout)
    peer.stop()
    assert call.result["sipp"].ok, call.result["sipp"].describe()


@pytest.fixture
def conversation_gateway(gateway_factory):
    agents = {"front-desk": {"type": "conversation", "greeting": "Harbor Dental, how can I help?",
                             "instructions": INSTRUCTIONS, "max_reply_tokens": 200, "hangup_after_s": 120,
                             "reprompt_after_s": 60, "model_timeout_s": PATIENT_MODEL_TIMEOUT_S}}
    gw = gateway_factory(gateway_config(agents=agents, rtp={"inactivity_timeout_s": 60}))
    gw.wait_log("gateway_ready", timeout=90)
    return gw


def first_bot_onset(peer: RtpPeer, after_tick: int, until_tick: int) -> int | None:
    run = 0
    for tick in range(after_tick, until_tick):
        run = run + 1 if peer.bot_active(tick) else 0
        if run == 3:
            return tick - 2
    return None


def test_barge_in_silences_the_bot_and_the_next_reply_answers_the_new_question(conversation_gateway, tmp_path):
    gw = conversation_gateway
    question = speech("Can you tell me everything about your clinic?", tmp_path)
    interruption = speech("What time do you open?", tmp_path)
    state: dict[str, int] = {}
    ask_at = 150  # 3 s: after the greeting

    def react(peer: RtpPeer, tick: int) -> None:
        if "onset" not in state and tick > ask_at + len(question) // 160 + 10:
            onset = first_bot_onset(peer, ask_at + len(question) // 160, tick)
            if onset is not None:
                state["onset"] = onset
        # Interrupt at least 1 s into the bot's reply, while it is talking: on a busy machine the
        # reply can pause between clauses, and a caller talking into that pause is no barge-in.
        if "onset" in state and "interrupt" not in state and tick >= state["onset"] + 50 and all(
                peer.bot_active(t) for t in range(tick - 10, tick)):
            state["interrupt"] = tick + 1
            peer.play_at(state["interrupt"], interruption)

    peer = RtpPeer(free_port_pair(), on_tick=react)
    peer.play_at(ask_at, question)
    run_call(gw, tmp_path, peer, seconds=22)
    assert "interrupt" in state, "the bot never started its reply"
    # the caller's actual onset: first loud frame of the interruption
    loud = [i for i in range(len(interruption) // 160) if rms_dbfs(interruption[i * 160:(i + 1) * 160]) > -40]
    onset_tick = state["interrupt"] + loud[0]
    talking = sum(peer.bot_active(t) for t in range(onset_tick - 10, onset_tick))
    assert talking >= 5, "bot was not talking at the caller's onset"
    stopped = next(t for t in range(onset_tick, onset_tick + 100) if not any(
        peer.bot_active(u) for u in range(t, t + 5)))
    stop_ms = (stopped - onset_tick) * 20
    # Sized for a busy machine (160 ms seen under load); the ~100 ms target is a figure to
    # benchmark, not to time in a shared CI run.
    assert stop_ms <= 300, f"bot audio went on {stop_ms} ms after the caller's onset"
    barge = gw.wait_log("barge_in")
    assert barge["onset_to_silence_ms"] <= 200
    turns = gw.find("turn")
    last = turns[-1]
    # the new question is the turn the bot replied to, not the first one again; what whisper makes of
    # it ("What time do you open?" came back as "I'm going to open" and "What kind do you know when?"
    # on loaded machines) is the listening benchmark's business (issue 12), not this test's
    assert last["caller"] and "everything" not in last["caller"].lower(), last
    assert last["bot"], last
    # the next reply was heard: bot audio after the interruption ended
    later = first_bot_onset(peer, onset_tick + len(interruption) // 160, max(peer.received))
    assert later is not None


def test_the_bots_own_echo_does_not_interrupt_it(conversation_gateway, tmp_path):
    gw = conversation_gateway
    question = speech("Can you tell me everything about your clinic?", tmp_path)
    peer = RtpPeer(free_port_pair(), echo_delay_s=0.06, echo_gain_db=-10)
    peer.play_at(150, question)
    run_call(gw, tmp_path, peer, seconds=20)
    assert not gw.find("barge_in"), gw.find("barge_in")
    turns = [t for t in gw.find("turn") if t["caller"]]
    assert turns and not turns[0]["cancelled"]
    assert len(turns[0]["bot"].split()) > 15  # the long reply went on
