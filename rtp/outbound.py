"""What a session's listener hands back to send: one 20 ms frame, at 8 kHz and, if it has it, 16 kHz.

Why two rates in one frame: on a wideband (G.722) call the far end should hear the sender's own
16 kHz audio (a TTS voice resampled once from its own rate), not an 8 kHz copy raised back to 16 kHz,
which has nothing above 4 kHz. Yet what works at 8 kHz beside the encoder (the echo canceller's
reference, the recorder, the agent's echo guard) must keep getting the very 8 kHz frame it gets on a
G.711 call. So the frame carries both, each field at a fixed, stated rate, and the session picks what
the negotiated codec takes: ``pcm`` on G.711 (byte-for-byte what it sent before), ``wideband`` on
G.722 when present, ``pcm`` raised to 16 kHz otherwise (rtp/wideband.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

__all__ = ["OutboundFrame", "fit_frame"]

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, eq=False)
class OutboundFrame:
    """20 ms to send: ``pcm`` at 8 kHz (160 samples), ``wideband`` the same 20 ms at 16 kHz (320
    samples) or None when the sender only has narrowband audio (an echo of a G.711 caller)."""

    PCM_RATE: ClassVar[int] = 8000
    WIDEBAND_RATE: ClassVar[int] = 16000

    pcm: Pcm
    wideband: Pcm | None = None


def fit_frame(pcm: np.ndarray, samples: int) -> Pcm:
    """`pcm` as exactly `samples` int16 samples: cut or zero-padded, so that a sender's wrong-sized
    frame never breaks the stream (the usual case, a right-sized int16 frame, is returned as is)."""
    arr = np.asarray(pcm)
    if arr.shape == (samples,) and arr.dtype == np.int16:
        return arr
    out = np.zeros(samples, dtype=np.int16)
    flat = arr.reshape(-1)[:samples]
    out[: len(flat)] = flat.astype(np.int16, copy=False)
    return out
