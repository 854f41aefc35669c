"""The sample business the benchmarks talk to: Harbor Dental's front desk.

One place for the agent's instructions and the caller's scripted questions, so the latency
benchmarks ask the same things, and a helper that turns a line of text into 8 kHz caller speech
with espeak-ng (the same voice every run).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np

from tests.rig.gateway import gateway_config

INSTRUCTIONS = """You are the receptionist of Harbor Dental, answering the phone. Keep every answer to one
or two short sentences. Facts:
- Opening hours: Monday to Friday, 8 am to 5 pm. Closed on weekends.
- Address: 12 Harbor Street, next to the ferry terminal.
- A cleaning costs 90 dollars.
- Dr. Smith and Dr. Patel are the dentists.
If you do not know something, say so and offer to take a message."""
VOICE = os.environ.get("BENCH_ESPEAK", "-v en-us -s 140").split()  # the clearest to Whisper tiny.en
GREETING = "Harbor Dental, this is the front desk. How can I help?"
QUESTIONS = [
    "What are your opening hours?",
    "Where is your office?",
    "How much does a cleaning cost?",
    "Which dentists work there?",
    "Are you open on Saturday?",
    "Is there parking near the office?",
    "Can I book a cleaning for next week?",
    "Do you take new patients?",
    "What time do you close on Friday?",
    "Is Doctor Patel a woman or a man?",
    "Can you take a message for Doctor Smith?",
    "Thank you, that is all.",
]


def front_desk_config(*, end_of_turn_ms: int = 400, max_calls: int = 2, inactivity_timeout_s: int = 60,
                      turn_model: str = "none") -> dict[str, Any]:
    """The gateway config the call benchmarks run: this front desk, default models, info logs, and
    re-prompt/hang-up timers long enough that a benchmark's pauses never trigger them. A short
    `inactivity_timeout_s` ends a call soon after its scripted caller stops sending."""
    agents = {"front-desk": {"type": "conversation", "greeting": GREETING, "instructions": INSTRUCTIONS,
                             "reprompt_after_s": 60, "hangup_after_s": 120, "end_of_turn_ms": end_of_turn_ms,
                             "turn_model": turn_model}}
    config = gateway_config(agents=agents, rtp={"inactivity_timeout_s": inactivity_timeout_s}, max_calls=max_calls)
    config["logging"] = {"level": "info"}
    return config


def speech(text: str) -> np.ndarray:
    """`text` spoken by espeak-ng, as 8 kHz mono int16."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", *VOICE, "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True)
        with wave.open(str(out)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def frame_levels(pcm: np.ndarray) -> list[float]:
    """dBFS of each 20 ms frame (160 samples at 8 kHz)."""
    frames = len(pcm) // 160
    return [20 * float(np.log10(max(1e-9, np.sqrt(np.mean((pcm[i * 160:(i + 1) * 160] / 32768.0) ** 2)))))
            for i in range(frames)]


def last_active_end(pcm: np.ndarray, threshold_dbfs: float = -40.0) -> int:
    """Sample index just after the last 20 ms frame louder than `threshold_dbfs` (the speech end)."""
    active = [i for i, level in enumerate(frame_levels(pcm)) if level > threshold_dbfs]
    return (active[-1] + 1) * 160 if active else 0
