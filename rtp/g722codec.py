"""ITU-T G.722 (wideband, 16 kHz, 64 kbit/s) for the RTP engine, via the `g722` package (libg722).

Why wideband at all: whisper hears 16 kHz. On the 8 kHz G.711 line everything above 3.4 kHz is
gone and the STT guesses the consonants ("What is your address?" came back as "Wot if you run
red"); the same sentences at 16 kHz came back right or nearly (issue 12).

Two RFC 3551 quirks shape this module:

* G.722 samples at 16 kHz but its RTP clock rate is 8000 (``a=rtpmap:9 G722/8000``), a
  historical mistake kept for compatibility: RTP timestamps advance 160 per 20 ms, as with
  G.711, while a 20 ms frame is 320 samples in and 160 bytes on the wire.  ``clock_rate`` is
  the RTP clock, ``sample_rate`` the audio's.
* Unlike G.711, G.722 is sub-band ADPCM: encoder and decoder carry state from one packet to
  the next.  So the codec description (``G722``, frozen, what SDP negotiated) hands out a new
  stateful :class:`G722Encoder` / :class:`G722Decoder` per stream; a session makes one of
  each when the codec is applied and a new decoder when the far end's SSRC changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import G722 as _libg722  # the `g722` PyPI package (libg722, public domain); module name is G722
import numpy as np
import numpy.typing as npt

__all__ = ["G722", "G722Codec", "G722Decoder", "G722Encoder"]

Pcm = npt.NDArray[np.int16]
_SAMPLE_RATE = 16000
_BIT_RATE = 64000  # mode 1: the only one SDP's "G722/8000" names


class G722Encoder:
    """One outbound stream's encoder state: 16 kHz int16 in, 1 byte per 2 samples out."""

    def __init__(self) -> None:
        self._state = _libg722.G722(_SAMPLE_RATE, _BIT_RATE)

    def encode(self, pcm: Pcm) -> bytes:
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError("G.722 encodes 1-D numpy int16 PCM at 16 kHz")
        if len(pcm) % 2:
            raise ValueError(f"G.722 encodes an even number of samples, got {len(pcm)}")
        return bytes(self._state.encode(np.ascontiguousarray(pcm)))


class G722Decoder:
    """One inbound stream's decoder state: bytes in, 16 kHz int16 (2 samples per byte) out."""

    def __init__(self) -> None:
        self._state = _libg722.G722(_SAMPLE_RATE, _BIT_RATE)

    def decode(self, payload: bytes | bytearray | memoryview) -> Pcm:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"G.722 decodes bytes, got {type(payload).__name__}")
        out = self._state.decode(bytes(payload))
        return np.frombuffer(out, dtype=np.int16).copy() if not isinstance(out, np.ndarray) else out.astype(
            np.int16, copy=False)


@dataclass(frozen=True)
class G722Codec:
    """G.722 as negotiated in SDP: static payload type 9, RTP clock 8000, audio at 16 kHz."""

    name: str = "G722"
    payload_type: int = 9
    clock_rate: int = 8000  # RTP timestamp units (RFC 3551), not the sample rate
    sample_rate: int = _SAMPLE_RATE

    @property
    def receive_payload_type(self) -> int:
        """Static payload types are the same both ways (Opus's dynamic ones may differ)."""
        return self.payload_type

    def samples_per_frame(self, frame_ms: int) -> int:
        """Audio samples (at 16 kHz) in ``frame_ms``; the payload is half as many bytes."""
        return self.sample_rate * frame_ms // 1000

    def encoder(self) -> G722Encoder:
        return G722Encoder()

    def decoder(self) -> G722Decoder:
        return G722Decoder()


G722 = G722Codec()
