"""Opus (RFC 6716, RTP payload RFC 7587) for the RTP engine, over Debian's libopus0 via `opuslib_next`.

Why the binding: `opuslib_next` is the maintained fork of `opuslib` (a thin ctypes layer over the
system's libopus.so.0, pure Python, one wheel, pinned in pyproject.toml); the original `opuslib`
has had no release since 2018, `pyogg` none since 2020 and is about Ogg files. We use its
low-level functions (`opuslib_next.api.*`) because the high-level classes cannot ask for packet
loss concealment (decode with no data).

How Opus fits an engine built around 20 ms frames at 8 or 16 kHz:

* The RTP clock is always 48000 (RFC 7587: timestamps advance 960 per 20 ms whatever the audio
  rate), and SDP always says ``opus/48000/2`` even for mono. We decode straight to 16 kHz (libopus
  resamples internally) so that a call with an Opus peer feeds the same wideband path as G.722:
  ``clock_rate`` 48000, ``sample_rate`` 16000.
* The payload type is dynamic: the codec object carries the one we send with and the one we
  receive (``with_payload_types``), taken from the negotiated SDP.
* Encoder: 16 kHz mono voice, application VOIP, 24 kbit/s, in-band FEC on (the encoder adds a
  low-rate copy of each frame to the next packet when it expects loss, so ``packet_loss_perc`` is
  set), DTX off: RTP keeps flowing for the whole call, which PBX media timeouts rely on.
* Decoder: Opus is decoded at play-out time, by the jitter buffer, in play-out order
  (:class:`OpusDecoder` is its concealment too), so that a lost frame is rebuilt by Opus itself:
  from the in-band FEC of the next packet when that one is already buffered, else by Opus's own
  PLC (decode with no data); both need the decoder state to be exactly at the lost frame, which
  only decoding in play-out order guarantees. A corrupt payload costs one concealed frame and
  one report through ``on_corrupt``, never an exception.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import ModuleType

import numpy as np
import numpy.typing as npt

__all__ = ["OPUS", "OpusCodec", "OpusDecoder", "OpusEncoder"]

Pcm = npt.NDArray[np.int16]
_SAMPLE_RATE = 16000
_CLOCK_RATE = 48000
_BITRATE = 24000
_EXPECTED_LOSS_PERCENT = 10  # makes the encoder spend bits on in-band FEC (it adds none at 0 %)
_MAX_PACKET = 1500
_MAX_FRAME = _SAMPLE_RATE * 120 // 1000  # the longest Opus packet: 120 ms
_PLC_STEP = _SAMPLE_RATE // 400  # Opus decodes in multiples of 2.5 ms
_FRAME_SIZES = frozenset(_SAMPLE_RATE * tenths // 4000 for tenths in (10, 20, 40, 80, 160, 240))  # 2.5-60 ms
_FADE_SAMPLES = _SAMPLE_RATE * 60 // 1000  # concealment gives up after 60 ms, as our own PLC does


@functools.cache
def _lib() -> tuple[ModuleType, ModuleType, ModuleType, type[Exception]]:
    """(opuslib_next, its decoder and encoder API, OpusError), imported on first use: the binding loads
    libopus.so.0 when imported and raises if it is missing, which must not stop a gateway (or a test)
    that never meets an Opus call."""
    try:
        import opuslib_next
        import opuslib_next.api.ctl
        import opuslib_next.api.decoder
        import opuslib_next.api.encoder
        from opuslib_next.exceptions import OpusError
    except Exception as exc:  # the binding raises a bare Exception when libopus.so.0 is missing
        raise RuntimeError(f"Opus needs Debian's libopus0 (apt-get install libopus0): {exc}") from exc
    return opuslib_next, opuslib_next.api.decoder, opuslib_next.api.encoder, OpusError


class OpusEncoder:
    """One outbound stream's encoder: 20 ms of 16 kHz int16 in, one Opus packet out."""

    def __init__(self, bitrate: int = _BITRATE) -> None:
        lib, _, self._enc, _ = _lib()
        self._state = self._enc.create_state(_SAMPLE_RATE, 1, lib.APPLICATION_VOIP)
        ctl = lib.api.ctl
        for request, value in ((ctl.set_bitrate, bitrate), (ctl.set_inband_fec, 1),
                               (ctl.set_packet_loss_perc, _EXPECTED_LOSS_PERCENT), (ctl.set_dtx, 0),
                               (ctl.set_signal, lib.SIGNAL_VOICE)):
            self._enc.encoder_ctl(self._state, request, value)

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None:
            self._enc.destroy(state)

    def encode(self, pcm: Pcm) -> bytes:
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError("Opus encodes 1-D numpy int16 PCM at 16 kHz")
        if len(pcm) not in _FRAME_SIZES:
            raise ValueError(f"Opus encodes 2.5, 5, 10, 20, 40 or 60 ms at 16 kHz, not {len(pcm)} samples")
        data = np.ascontiguousarray(pcm)
        return self._enc.encode(self._state, data.ctypes.data_as(ctypes.POINTER(ctypes.c_int16)), len(data),
                                _MAX_PACKET)


class OpusDecoder:
    """One inbound stream's decoder, and its loss concealment (Opus FEC, else Opus PLC).

    The jitter buffer calls it in play-out order: :meth:`samples` when a packet is stored (a
    payload whose table of contents is invalid raises ``ValueError`` there, and is never stored),
    :meth:`decode` when its audio is played, :meth:`conceal` for a frame that is missing, with
    the next packet's payload when it is buffered (its FEC rebuilds the missing frame), and
    :meth:`good_frame` / ``faded_out`` / :meth:`reset` like our own concealer (rtp/plc.py).
    """

    def __init__(self, on_corrupt: Callable[[str], None] | None = None) -> None:
        self._lib, self._dec, _, self._error = _lib()
        self._state = self._dec.create_state(_SAMPLE_RATE, 1)
        self._buffer = (ctypes.c_int16 * _MAX_FRAME)()
        self._pointer = ctypes.cast(self._buffer, ctypes.POINTER(ctypes.c_int16))
        self.on_corrupt = on_corrupt
        self._concealed = 0  # samples concealed since the last good frame
        self.fec_frames = 0  # rebuilt from the next packet (its FEC; libopus falls back to PLC if it has none)
        self.plc_frames = 0  # guessed by Opus's PLC (no next packet at hand)
        self.corrupt = 0

    def __del__(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None:
            self._dec.destroy(state)

    def samples(self, payload: bytes | bytearray | memoryview) -> int:
        """Samples (at 16 kHz) the packet holds; ``ValueError`` for a payload that is no Opus packet."""
        data = bytes(payload)
        try:
            n = self._dec.get_nb_samples(self._state, data, len(data))
        except self._error as exc:
            raise ValueError(f"not an Opus packet ({len(data)} bytes): {exc}") from None
        if not 0 < n <= _MAX_FRAME:
            raise ValueError(f"Opus packet of {n} samples")
        return int(n)

    def decode(self, payload: bytes | bytearray | memoryview) -> Pcm:
        """The packet's audio at 16 kHz; a corrupt packet is reported and concealed instead."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"Opus decodes bytes, got {type(payload).__name__}")
        data = bytes(payload)
        n = self._dec.libopus_decode(self._state, data, len(data), self._pointer, _MAX_FRAME, 0)
        error = str(self._error(n)) if n < 0 else ""  # libopus's own words, e.g. "corrupted stream"
        if n <= 0:
            self.corrupt += 1
            if self.on_corrupt is not None:
                self.on_corrupt(f"corrupt Opus payload ({len(data)} bytes): {error or 'no samples'}")
            try:
                length = self.samples(data)  # the length its table of contents claims, if it reads
            except ValueError:
                length = _SAMPLE_RATE * 20 // 1000
            return self._plc(length)
        return np.frombuffer(self._buffer, dtype=np.int16, count=n).copy()

    def conceal(self, n_samples: int, upcoming: bytes | None = None) -> Pcm:
        """`n_samples` for a missing stretch: from the FEC in `upcoming` (the packet right after it)
        when there is one, else by Opus's PLC; silence once 60 ms have been concealed."""
        self._concealed += n_samples
        if self._concealed > _FADE_SAMPLES:
            return np.zeros(n_samples, dtype=np.int16)
        if upcoming and n_samples % _PLC_STEP == 0:
            got = self._dec.libopus_decode(self._state, upcoming, len(upcoming), self._pointer, n_samples, 1)
            if got == n_samples:
                self.fec_frames += 1
                return np.frombuffer(self._buffer, dtype=np.int16, count=n_samples).copy()
        self.plc_frames += 1
        return self._plc(n_samples)

    def _plc(self, n_samples: int) -> Pcm:
        want = -(-n_samples // _PLC_STEP) * _PLC_STEP  # Opus conceals in whole 2.5 ms steps
        got = self._dec.libopus_decode(self._state, None, 0, self._pointer, min(want, _MAX_FRAME), 0)
        out = np.zeros(n_samples, dtype=np.int16)
        if got > 0:
            take = min(got, n_samples)
            out[:take] = np.frombuffer(self._buffer, dtype=np.int16, count=take)
        return out

    def good_frame(self, pcm: Pcm) -> Pcm:
        """Received audio: Opus smooths the join after a loss itself, so it passes unchanged."""
        self._concealed = 0
        return pcm

    @property
    def faded_out(self) -> bool:
        return self._concealed >= _FADE_SAMPLES

    def reset(self) -> None:
        """A new stream (SSRC change): fresh decoder state."""
        self._dec.decoder_ctl(self._state, self._lib.api.ctl.reset_state)
        self._concealed = 0


@dataclass(frozen=True)
class OpusCodec:
    """Opus as negotiated in SDP: a dynamic payload type each way, RTP clock 48000, audio at 16 kHz."""

    name: str = "OPUS"
    payload_type: int = 111  # what we send with (the peer's number for opus)
    receive_payload_type: int = 111  # what the peer sends with (our number for opus)
    clock_rate: int = _CLOCK_RATE  # RTP timestamp units (RFC 7587), not the sample rate
    sample_rate: int = _SAMPLE_RATE

    def samples_per_frame(self, frame_ms: int) -> int:
        return self.sample_rate * frame_ms // 1000

    def with_payload_types(self, send: int, receive: int) -> OpusCodec:
        """This codec with the payload types the SDP offer/answer gave it (96-127)."""
        for pt in (send, receive):
            if not 96 <= pt <= 127:
                raise ValueError(f"Opus needs a dynamic payload type (96-127), got {pt}")
        return replace(self, payload_type=send, receive_payload_type=receive)

    def encoder(self) -> OpusEncoder:
        return OpusEncoder()

    def decoder(self, on_corrupt: Callable[[str], None] | None = None) -> OpusDecoder:
        return OpusDecoder(on_corrupt)


OPUS = OpusCodec()
