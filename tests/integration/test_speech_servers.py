"""STT and TTS on OpenAI-compatible servers (``models.stt/tts.engine: openai``), on real calls.

The STT server is faster-whisper-server from PyPI serving our own tiny.en weights; the TTS
server is tests/rig/speech_server.py (real HTTP, our piper voice). The caller is SIPp for
signalling with the scripted RTP peer, as in test_model_faults.py, so what the caller hears and
whether RTP ever stopped are measured at the caller's end.

* A question is transcribed by the server and answered; the server is then killed: the next
  question costs the caller one apology, the operator one ``stt_server_down`` line naming the
  server; RTP keeps flowing and the call ends with the caller's BYE.
* An STT server down at start: the gateway starts, says so once (``stt_warm_up_failed``) and
  /readyz reports it; a TTS server down at start: the gateway refuses to start, naming it.
* The bot speaks through the TTS server; killed mid-call, the next reply is one apology (cached
  at start-up, so it still plays) and the call goes on.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.integration.test_agent_skills import ASK_AT, agent, speech, speech_end_tick
from tests.integration.test_barge_in_echo import first_bot_onset, start_call
from tests.rig.gateway import gateway_config
from tests.rig.ports import free_port_pair, free_tcp_port
from tests.rig.rtp_peer import MAX_STALL_MS, RtpPeer
from tests.rig.speech_server import SpeechServerProcess
from tests.rig.stt_server import SttServer

INSTRUCTIONS = ("You are the receptionist of Harbor Dental, answering the phone. Answer in one short sentence.\n"
                "- Opening hours: Monday to Friday, 8 am to 5 pm.")
SECOND_AT = ASK_AT + 750  # 15 s later: the first answer has been heard and the server killed


def _ask_twice(gw, tmp_path, kill, first: str, second: str) -> RtpPeer:
    """A call with two questions; `kill()` once the first turn is logged, before the second is asked."""
    q1, q2 = speech(first, tmp_path), speech(second, tmp_path)
    peer = RtpPeer(free_port_pair())
    peer.play_at(ASK_AT, q1)
    peer.play_at(SECOND_AT, q2)
    call = start_call(gw, tmp_path / "call", peer, seconds=34)
    deadline = time.monotonic() + SECOND_AT * 0.02 - 1.0  # the first turn's line, written once its reply settled
    while not _caller_turns(gw) and time.monotonic() < deadline:
        time.sleep(0.1)
    kill()
    call.join(90)
    peer.stop()
    assert call.result["sipp"].ok, call.result["sipp"].describe()
    turns = _caller_turns(gw)
    assert turns, f"no turn before the server was killed: {gw.find('turn')}"
    peer.first_turn = turns[0]  # type: ignore[attr-defined]
    return peer


def _caller_turns(gw) -> list[dict]:
    return [t for t in gw.find("turn") if t.get("caller")]


def _rtp_never_stopped(peer: RtpPeer) -> None:
    ticks = sorted(peer.received)
    assert peer.longest_gap_ms(ticks[50], ticks[-50]) <= MAX_STALL_MS


def test_a_question_is_transcribed_by_the_stt_server_and_its_death_costs_one_apology(gateway_factory, tmp_path):
    with SttServer(tmp_path / "stt") as server:
        config = gateway_config(agents={"front-desk": agent(instructions=INSTRUCTIONS)},
                                rtp={"inactivity_timeout_s": 60})
        config["models"] = {"stt": {"engine": "openai", "base_url": server.base_url, "model": "whisper-1",
                                    "timeout_s": 10}}
        gw = gateway_factory(config, wait=False)
        gw.wait_log("gateway_ready", timeout=120)
        assert not gw.find("stt_warm_up_failed")
        peer = _ask_twice(gw, tmp_path, server.kill, "What are your opening hours?", "Do you have parking?")
    first = peer.first_turn  # type: ignore[attr-defined]
    # the server's own transcript (faster-whisper's 30 s-window pipeline with tiny.en heard
    # "Well, you're opening out, Aaron." once): the path is under test, not tiny.en's ear
    assert "opening" in first["caller"].lower(), first
    assert first["bot"], first
    failed = gw.wait_log("reply_failed", timeout=30)
    assert f"STT server {server.base_url}" in failed["error"], failed
    apology = gw.wait_log("bot_phrase", why="model_error", timeout=30)
    assert "sorry" in apology["text"].lower()
    assert len(gw.find("bot_phrase", why="model_error")) == 1  # the turn the dead server cost
    down = gw.find("stt_server_down")  # one clear line for the operator, however many requests failed
    assert len(down) == 1 and down[0]["url"] == server.base_url and down[0]["level"] == "error", down
    end = speech_end_tick(SECOND_AT, speech("Do you have parking?", tmp_path))
    assert first_bot_onset(peer, end, max(peer.received)) is not None  # the caller heard the apology
    assert gw.wait_log("call_ended", timeout=10)["reason"].startswith("remote_bye")
    _rtp_never_stopped(peer)
    assert gw.process.poll() is None


def test_an_stt_server_down_at_start_is_said_once_and_readyz_tells(gateway_factory):
    url = f"http://127.0.0.1:{free_tcp_port()}/v1"
    http_port = free_tcp_port()
    config = gateway_config(agents={"front-desk": agent()})
    config["http"] = {"listen": f"127.0.0.1:{http_port}"}
    config["models"] = {"stt": {"engine": "openai", "base_url": url, "timeout_s": 2}}
    gw = gateway_factory(config, wait=False)
    gw.wait_log("gateway_ready", timeout=120)
    failed = gw.find("stt_warm_up_failed")
    assert len(failed) == 1 and f"cannot connect to STT server {url}" in failed[0]["error"], failed
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=10)
    body = json.loads(info.value.read())
    assert body["ready"] is False and body["model_servers"] == {"stt": f"unreachable: {url}"}, body


def test_a_tts_server_down_at_start_stops_the_gateway_with_its_address(gateway_factory):
    url = f"http://127.0.0.1:{free_tcp_port()}/v1"
    config = gateway_config(agents={"front-desk": agent()})
    config["models"] = {"tts": {"engine": "openai", "base_url": url, "voice": "joe"}}
    gw = gateway_factory(config, wait=False)
    assert gw.wait_exit(timeout=120) == 1
    failed = gw.find("gateway_start_failed")
    assert failed and f"cannot connect to TTS server {url}" in failed[0]["error"], gw.lines[-5:]


def test_the_bot_speaks_through_the_tts_server_and_its_death_costs_one_apology(gateway_factory, tmp_path):
    with SpeechServerProcess(tmp_path / "tts") as server:
        # The second question must reach the model and the TTS: "Do you have parking?" came back
        # "You have power, King.", which earns a repeat request or the don't-know answer, both
        # fixed phrases, cached, that never ask the dead server. Hearing is test_hearing_call's.
        config = gateway_config(agents={"front-desk": agent(instructions=INSTRUCTIONS, repeat_request="")},
                                rtp={"inactivity_timeout_s": 60})
        config["models"] = {"tts": {"engine": "openai", "base_url": server.base_url, "voice": "joe",
                                    "timeout_s": 10}}
        gw = gateway_factory(config, wait=False)
        gw.wait_log("gateway_ready", timeout=120)
        peer = _ask_twice(gw, tmp_path, server.kill, "What are your opening hours?",
                          "And your opening hours on Friday?")
    first = peer.first_turn  # type: ignore[attr-defined]
    assert first["bot"], first
    q1_end = speech_end_tick(ASK_AT, speech("What are your opening hours?", tmp_path))
    assert first_bot_onset(peer, q1_end, SECOND_AT) is not None  # the server's speech reached the caller
    failed = gw.wait_log("reply_failed", timeout=30)
    assert f"TTS server {server.base_url}" in failed["error"], failed
    # at the first clause's failure (the LLM is stopped then), not at the 8 s watchdog
    apology = gw.wait_log("bot_phrase", why="model_error", timeout=30)
    assert "sorry" in apology["text"].lower()
    assert len(gw.find("bot_phrase", why="model_error")) == 1 and not gw.find("bot_phrase", why="model_timeout")
    assert len(gw.find("tts_server_down")) == 1
    assert gw.wait_log("call_ended", timeout=10)["reason"].startswith("remote_bye")
    _rtp_never_stopped(peer)
    assert gw.process.poll() is None
