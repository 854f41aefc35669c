"""Trying the agent without a phone, as the README's quick start does: `voicegate chat` with the
real model on configs/default.yaml's agent, and `voicegate dial` calling a real gateway over
SIP/RTP. Timeouts guard against hangs only (how fast the answer comes: docs/benchmarks.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.rig.gateway import gateway_config

ROOT = Path(__file__).parents[2]
DEFAULT = ROOT / "configs" / "default.yaml"


def voicegate(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_chat_piped_answers_from_the_knowledge_and_shows_a_dry_run_tool():
    done = voicegate("chat", "--config", str(DEFAULT),
                     stdin="What are your opening hours?\nWhere are you located?\nThanks, goodbye.\n")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "\033[" not in out  # piped: no colours
    bot = re.findall(r"^bot: (.*)$", out, re.MULTILINE)
    assert bot[0] == "Harbor Dental, this is the front desk. How can I help?"  # the greeting
    assert re.search(r"^  retrieved.*:\n    - .*Monday to Friday, 8 am to 5 pm", out, re.MULTILINE), out
    assert re.search(r"monday|8 am|eight", bot[1], re.IGNORECASE), out  # said from the knowledge file
    assert re.search(r"harbor street|ferry", bot[2], re.IGNORECASE), out
    assert "tool (dry run, --live-tools to run it): hangup()" in out
    assert out.rstrip().endswith("hangup()")  # the goodbye ends the chat


def test_dial_speaks_a_question_and_prints_the_answer_with_its_latency(gateway_factory, tmp_path: Path):
    agents = yaml.safe_load(DEFAULT.read_text())["agents"]
    agents["front-desk"]["knowledge"] = [str(ROOT / "configs" / "knowledge" / "harbor-dental.md")]
    gw = gateway_factory(gateway_config(agents=agents, port_range=(43000, 43099)))
    done = voicegate("dial", "--config", str(gw.config_path), "--say", "What are your opening hours?",
                     "--record-dir", str(tmp_path / "replies"), timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    out = done.stdout
    assert f"calling sip:voicegate@127.0.0.1:{gw.sip_port}" in out
    assert re.search(r"^bot: .*front desk", out, re.MULTILINE | re.IGNORECASE), out  # the greeting, heard
    turn = re.search(r"^you: What are your opening hours\?\nbot: (.+)\n +voice-to-voice latency: (\d+) ms", out,
                     re.MULTILINE)
    assert turn, out
    assert turn.group(1) != "(no reply)" and 0 < int(turn.group(2)) < 60_000
    gw.wait_log("call_ended", timeout=30)
    heard = [t["caller"] for t in gw.find("turn")]
    assert any("hour" in said.lower() or "open" in said.lower() for said in heard), heard  # the question arrived
    assert len(list((tmp_path / "replies").glob("*/reply-1.wav"))) == 1
