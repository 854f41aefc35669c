"""A dying model costs the caller an apology, never the call or the process.

The gateway's LLM is an OpenAI-compatible server that is down (nothing listens on its port):
the gateway still starts, answers, greets (cached), hears the question (real VAD and Whisper),
and when the LLM request fails the caller hears the apology; RTP keeps flowing and the call
ends normally with the caller's BYE.
"""

from __future__ import annotations

import numpy as np

from tests.integration.test_agent_skills import ASK_AT, agent, speech
from tests.integration.test_barge_in_echo import run_call
from tests.rig.gateway import gateway_config
from tests.rig.ports import free_port_pair, free_udp_port
from tests.rig.rtp_peer import RtpPeer


def test_an_unreachable_llm_server_gets_an_apology_and_the_call_goes_on(gateway_factory, tmp_path):
    config = gateway_config(agents={"front-desk": agent()}, rtp={"inactivity_timeout_s": 60})
    config["models"] = {"llm": {"engine": "openai", "base_url": f"http://127.0.0.1:{free_udp_port()}/v1",
                                "model": "down", "timeout_s": 2}}
    gw = gateway_factory(config, wait=False)
    gw.wait_log("gateway_ready", timeout=90)
    assert gw.find("llm_warm_up_failed")
    question = speech("What are your opening hours?", tmp_path)
    peer = RtpPeer(free_port_pair())
    peer.play_at(ASK_AT, question)
    run_call(gw, tmp_path, peer, seconds=14)  # the caller's BYE ended it, as planned
    assert gw.wait_log("reply_failed", timeout=5)
    apology = gw.wait_log("bot_phrase", why="model_error", timeout=5)
    assert "sorry" in apology["text"].lower()
    ended = gw.wait_log("call_ended", timeout=10)
    assert ended["reason"].startswith("remote_bye")
    ticks = sorted(peer.received)
    assert np.diff(ticks[50:-50]).max() <= 3  # RTP never stopped
    assert gw.process.poll() is None  # and the gateway is still up
