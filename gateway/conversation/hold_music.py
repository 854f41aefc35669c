"""What a caller on hold hears: a configured WAV in a loop, or a soft built-in tone.

Why the gateway plays it and not a PBX's music-on-hold: we own the caller's RTP path, and a hold
by re-INVITE (a=sendonly) would make a PBX play its own music (or silence) for a transfer it
knows nothing of. The audio is read once per file (on first use, on the tool's thread; never on
the media clock), brought to the line's 8 kHz, and a `HoldPlayer` hands it out 20 ms at a time on the media
clock (rtp/hold_player.py), so the loop costs one slice per tick.

The fallback, when no file is configured, is a comfort tone rather than silence: a caller who
hears nothing for 20 s hangs up thinking the line died. Two soft notes (-24 dBFS, 440 then 554 Hz,
faded in and out) every 3 s.
"""

from __future__ import annotations

import functools
import wave

import numpy as np

from rtp.hold_player import FRAME
from rtp.outbound import OutboundFrame
from rtp.resample import resample

LINE_RATE = OutboundFrame.PCM_RATE
_TONE_LEVEL = 0.063  # -24 dBFS: audible, never loud


class HoldMusicError(ValueError):
    """A hold music file that cannot be played (not a WAV, not 16-bit PCM, empty)."""


@functools.lru_cache(maxsize=8)
def load_hold_music(path: str | None) -> np.ndarray:
    """The 8 kHz int16 loop for `path` (any rate, mono or stereo 16-bit PCM WAV); the built-in
    tone for None. Cached: a second transfer with the same music reads nothing."""
    if path is None:
        return comfort_tone()
    try:
        with wave.open(path, "rb") as w:
            if w.getsampwidth() != 2:
                raise HoldMusicError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
            channels, rate = w.getnchannels(), w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    except (OSError, EOFError, wave.Error) as exc:
        raise HoldMusicError(f"{path}: not a readable WAV file ({exc})") from None
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate != LINE_RATE:
        pcm = resample(pcm, rate, LINE_RATE)
    if len(pcm) < FRAME:
        raise HoldMusicError(f"{path}: shorter than 20 ms")
    return pcm


def comfort_tone() -> np.ndarray:
    """3 s: two 250 ms notes, then silence (the built-in hold sound)."""
    def note(freq: float) -> np.ndarray:
        t = np.arange(int(0.25 * LINE_RATE)) / LINE_RATE
        fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.03)
        return np.sin(2 * np.pi * freq * t) * fade * _TONE_LEVEL

    gap = np.zeros(int(0.05 * LINE_RATE))
    rest = np.zeros(3 * LINE_RATE - 2 * len(note(440)) - len(gap))
    signal = np.concatenate([note(440.0), gap, note(554.37), rest])
    return np.round(signal * 32767).astype(np.int16)
