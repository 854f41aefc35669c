"""The caller's utterance as the models hear it: 16 kHz float audio, wideband where the line was.

Whisper and the smart-turn model both take 16 kHz. On a G.711 call the utterance is 8 kHz and is
resampled up (nothing above 4 kHz to recover). On a G.722 call the utterance carries the decoded
16 kHz frames (`Utterance.wide`) and those are used as they are: that is the point of wideband
(the consonants above 3.4 kHz that whisper misheard on the narrow line). Frames with no 16 kHz
version (echo-cancelled at 8 kHz while the bot talked) are resampled run by run, so one utterance
may mix both; each run is resampled in one piece, so only a run's two ends see a filter edge.
"""

from __future__ import annotations

import numpy as np

from gateway.conversation.events import Utterance
from rtp.resample import int16_to_float, resample

MODEL_RATE = 16000
LINE_RATE = 8000


def utterance_audio16k(utterance: Utterance, last_frames: int | None = None) -> np.ndarray:
    """The utterance (or its last `last_frames` 20 ms frames) as float32 in [-1, 1] at 16 kHz."""
    frames = utterance.frames if last_frames is None else utterance.frames[-last_frames:]
    if not frames:
        return np.zeros(MODEL_RATE // 50, dtype=np.float32)
    wide = utterance.wide if last_frames is None else utterance.wide[-last_frames:]
    if len(wide) != len(frames) or all(w is None for w in wide):
        return int16_to_float(resample(np.concatenate(frames), LINE_RATE, MODEL_RATE))
    parts: list[np.ndarray] = []
    narrow_run: list[np.ndarray] = []
    for pcm, pcm16k in zip(frames, wide, strict=True):
        if pcm16k is None:
            narrow_run.append(pcm)
            continue
        if narrow_run:
            parts.append(resample(np.concatenate(narrow_run), LINE_RATE, MODEL_RATE))
            narrow_run = []
        parts.append(pcm16k)
    if narrow_run:
        parts.append(resample(np.concatenate(narrow_run), LINE_RATE, MODEL_RATE))
    return int16_to_float(np.concatenate(parts))
