"""Trying the agent without a phone, as the README's quick start does: `voicegate chat` with the
real model on configs/default.yaml's agent, and `voicegate dial` calling a real gateway over
SIP/RTP. Timeouts guard against hangs only (how fast the answer comes: docs/benchmarks.md)."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from tests.rig.gateway import PATIENT_MODEL_TIMEOUT_S, gateway_config

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
    assert turn, out + done.stderr[-3000:]
    assert turn.group(1) != "(no reply)" and 0 < int(turn.group(2)) < 60_000
    gw.wait_log("call_ended", timeout=30)
    heard = [t["caller"] for t in gw.find("turn")]
    assert any("hour" in said.lower() or "open" in said.lower() for said in heard), heard  # the question arrived
    assert len(list((tmp_path / "replies").glob("*/reply-1.wav"))) == 1


ALSA_TEST_PCM = """pcm.vgmic {{
  type asym
  capture.pcm {{ type file; slave.pcm "null"; file "/dev/null"; infile "{infile}"; format "raw" }}
  playback.pcm {{ type file; slave.pcm "null"; file "{outfile}"; format "raw" }}
}}
"""


def feed_microphone(fifo: Path, audio: np.ndarray, stop: threading.Event) -> None:
    """Write `audio` (float, [-1, 1]), then silence, into the capture PCM's FIFO in real time, as a microphone
    delivers it (ALSA's null slave is not paced: the FIFO is the clock)."""
    pcm = np.clip(np.concatenate([audio, np.zeros(-len(audio) % 160)]) * 32767, -32768, 32767)
    frames = pcm.astype("<i2").reshape(-1, 160)
    silence = np.zeros(160, dtype="<i2").tobytes()
    with contextlib.suppress(BrokenPipeError), fifo.open("wb") as pipe:
        start = time.monotonic()
        for i in itertools.count():
            if stop.is_set():
                return
            pipe.write(frames[i].tobytes() if i < len(frames) else silence)
            pipe.flush()
            time.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))


def test_dial_mic_talks_through_an_alsa_device(gateway_factory, tmp_path: Path):
    """--mic through ALSA's real arecord/aplay, on a PCM whose capture is a FIFO fed in real time
    (what a microphone would hear: the greeting's length of silence, then a question) and whose
    playback is a file."""
    from tests.conftest import require_binaries
    from tests.rig.audio import make_speech_wav, read_wav

    require_binaries("arecord", "aplay")
    speech, _ = read_wav(make_speech_wav("What are your opening hours?", tmp_path / "q.wav", pad_after_s=0.0))
    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(ALSA_TEST_PCM.format(infile=fifo, outfile=tmp_path / "speaker.raw"))
    agents = yaml.safe_load(DEFAULT.read_text())["agents"]
    agents["front-desk"]["knowledge"] = [str(ROOT / "configs" / "knowledge" / "harbor-dental.md")]
    agents["front-desk"]["model_timeout_s"] = PATIENT_MODEL_TIMEOUT_S
    gw = gateway_factory(gateway_config(agents=agents, port_range=(43100, 43199)))
    stop = threading.Event()
    mic = threading.Thread(target=feed_microphone, args=(fifo, np.concatenate([np.zeros(6 * 8000), speech]), stop),
                           daemon=True)
    mic.start()
    try:
        done = subprocess.run([sys.executable, "-m", "gateway.cli", "dial", "--config", str(gw.config_path), "--mic",
                               "--mic-device", "vgmic", "--mic-seconds", "30", "--record-dir",
                               str(tmp_path / "replies")],
                              capture_output=True, text=True, timeout=300, cwd=ROOT,
                              env={**os.environ, "HOME": str(home)})
    finally:
        stop.set()
        mic.join(5)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    out = done.stdout
    assert "speak now" in out
    assert re.search(r"^bot: .*front desk", out, re.MULTILINE | re.IGNORECASE), out  # the greeting, heard
    turn = re.search(r"^you: (.+)\nbot: (.+)\n +voice-to-voice latency: (\d+) ms", out, re.MULTILINE)
    assert turn, out + done.stderr[-3000:]
    assert turn.group(2) != "(no reply)" and 0 < int(turn.group(3)) < 60_000, out
    gw.wait_log("call_ended", timeout=30)
    heard = [t["caller"] for t in gw.find("turn")]
    assert any("hour" in said.lower() or "open" in said.lower() for said in heard), heard  # the question arrived
    played = np.frombuffer((tmp_path / "speaker.raw").read_bytes(), dtype="<i2")
    assert np.abs(played).max() > 3000  # the bot's voice went to the speaker


def test_dial_mic_without_a_usable_device_says_so(tmp_path: Path):
    from tests.conftest import require_binaries

    require_binaries("arecord", "aplay")
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "dial", "--config", str(DEFAULT), "--mic",
                           "--mic-device", "no_such_device_here"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--mic: arecord -D no_such_device_here" in done.stderr, done.stderr
