"""Several gateways, one on-prem LLM server: llama.cpp's OpenAI-compatible server (the
`llama_cpp.server` of llama-cpp-python) serves the default Qwen model to two gateway processes,
each with a caller asking a question at the same time. Both callers get their answer.

Each gateway keeps speech-to-text and text-to-speech local (they are per call and cheap); only the
LLM is shared, which is how a site grows past one machine's LLM capacity.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading

import pytest

from models.registry import resolve_llm
from tests.integration.test_agent_skills import ASK_AT, agent, speech
from tests.integration.test_barge_in_echo import start_call
from tests.rig.gateway import gateway_config
from tests.rig.ports import free_port_pair, free_udp_port
from tests.rig.rtp_peer import RtpPeer
from tests.unit.models.test_openai_compat import _wait_http

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("sse_starlette") is None,
    reason="llama-cpp-python[server] extras not installed",
)

INSTRUCTIONS = """You are the receptionist of Harbor Dental, answering the phone. Answer in one short sentence.
Facts:
- Opening hours: Monday to Friday, 8 am to 5 pm. Closed on weekends."""


@pytest.fixture
def llm_server(tmp_path):
    port = free_udp_port()
    log_path = tmp_path / "llama_cpp_server.log"
    with open(log_path, "wb") as log:  # a file: the server logs a lot and would block on a full pipe
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_llm()), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "qwen",
             # by default a new request interrupts the one being generated: two gateways would
             # cut each other's answers off (measured: empty replies); queue them instead
             "--interrupt_requests", "False"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_http(f"http://127.0.0.1:{port}/v1/models", proc, timeout=60)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            proc.wait(10)


def test_two_gateways_share_one_llm_server(gateway_factory, llm_server, tmp_path):
    gateways = []
    for i in range(2):
        config = gateway_config(agents={"front-desk": agent(instructions=INSTRUCTIONS)},
                                rtp={"inactivity_timeout_s": 60},
                                port_range=(42000 + 200 * i, 42199 + 200 * i))
        config["models"] = {"llm": {"engine": "openai", "base_url": llm_server, "model": "qwen", "timeout_s": 30}}
        gw = gateway_factory(config, wait=False)
        gateways.append(gw)
    for gw in gateways:
        gw.wait_log("gateway_ready", timeout=120)
    question = speech("What are your opening hours?", tmp_path)
    peers, calls = [], []
    for i, gw in enumerate(gateways):
        peer = RtpPeer(free_port_pair())
        peer.play_at(ASK_AT, question)
        peers.append(peer)
        # 30 s: two gateways and the LLM server share 2 cores; on a busy machine the reply (whose
        # `turn` line is written when it ends) must still finish inside the call
        calls.append(start_call(gw, tmp_path / f"call{i}", peer, seconds=30))
    for call in calls:
        call.join(120)
    for peer in peers:
        peer.stop()
    for call, gw in zip(calls, gateways, strict=True):
        assert call.result["sipp"].ok, call.result["sipp"].describe()
        turns = [t for t in gw.find("turn") if t["caller"] and not t["cancelled"]]
        assert turns and turns[0]["bot"], gw.find("turn")
        assert any(w in turns[0]["bot"].lower() for w in ("monday", "friday", "8", "eight")), turns[0]
        assert not gw.find("reply_failed")
    assert threading.active_count() < 200
