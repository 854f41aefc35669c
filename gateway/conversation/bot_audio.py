"""The bot's speech as the playout queue takes it: the line's 8 kHz audio, and 16 kHz for a wideband line.

Why both: on a G.722 call the caller should hear the voice as the TTS made it, up to 7 kHz, so the
wideband copy is resampled once from the TTS's own rate (piper: 22.05 kHz -> 16 kHz), never from the
8 kHz copy. The 8 kHz copy is still what everything beside the codec works on (echo canceller and
echo guard, barge-in hold, the recorder, the heard-text bookkeeping), exactly as on a G.711 call.
Both copies come from one-shot resamples of the same clause (soxr compensates its filter delay), so
8 kHz sample k and 16 kHz sample 2k are the same instant and the 20 ms frames line up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rtp.outbound import OutboundFrame

__all__ = ["LINE_RATE", "WIDE_RATE", "BotAudio"]

LINE_RATE = OutboundFrame.PCM_RATE
WIDE_RATE = OutboundFrame.WIDEBAND_RATE
_FRAME = LINE_RATE // 50  # 20 ms
_WIDE_FRAME = WIDE_RATE // 50
_WIDE_PER_LINE = WIDE_RATE // LINE_RATE

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, eq=False)
class BotAudio:
    """A stretch of speech: ``pcm`` at 8 kHz, ``wideband`` the same stretch at 16 kHz (or None: the
    call is narrowband, or the speech only exists at 8 kHz). ``len()`` counts 8 kHz samples, so
    ``len(audio) / LINE_RATE`` is its duration as before it had a wideband copy."""

    pcm: Pcm
    wideband: Pcm | None = None

    def __len__(self) -> int:
        return len(self.pcm)

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / LINE_RATE

    def span(self, start: int, end: int) -> BotAudio:
        """Samples [start, end) of the 8 kHz copy, and the same instants of the wideband one."""
        wide = None if self.wideband is None else self.wideband[start * _WIDE_PER_LINE:end * _WIDE_PER_LINE]
        return BotAudio(self.pcm[start:end], wide)

    def frames(self) -> list[OutboundFrame]:
        """20 ms frames (at least one), the last zero-padded; the wideband copy is padded or cut to
        the 8 kHz frame count (one-shot resamples to two rates can differ by a sample)."""
        count = max(1, -(-len(self.pcm) // _FRAME))
        narrow = _padded(self.pcm, count * _FRAME)
        if self.wideband is None:
            return [OutboundFrame(narrow[i * _FRAME:(i + 1) * _FRAME]) for i in range(count)]
        wide = _padded(self.wideband, count * _WIDE_FRAME)
        return [OutboundFrame(narrow[i * _FRAME:(i + 1) * _FRAME], wide[i * _WIDE_FRAME:(i + 1) * _WIDE_FRAME])
                for i in range(count)]


def _padded(pcm: np.ndarray, samples: int) -> Pcm:
    out = np.zeros(samples, dtype=np.int16)
    flat = np.asarray(pcm, dtype=np.int16).reshape(-1)[:samples]
    out[: len(flat)] = flat
    return out
