"""ITU-T G.711 µ-law (PCMU) and A-law (PCMA) with numpy lookup tables.

Both directions are pure table look-ups: decoding indexes a 256-entry int16
table with the payload bytes, encoding indexes a 65536-entry uint8 table with
the int16 samples reinterpreted as uint16.  A 20 ms frame costs one numpy
gather, which keeps the 20 ms media tick cheap even with many calls.

The tables are generated from the algorithms of the ITU-T G.191 Software Tool
Library (``ulaw_compress``/``alaw_compress`` and their expanders), which is
the reference implementation of G.711.  Negative inputs are mapped with one's
complement (``~x``), so ``-1`` encodes like ``+0`` with the sign flipped (µ-law
0x7F, A-law 0x55), exactly as G.191 and spandsp/WebRTC do.  The classic Sun
``g711.c`` (and CPython's old ``audioop``) negate instead and land one step
away for a few small negative values of µ-law; the decoders agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "PCMA",
    "PCMU",
    "G711Codec",
    "UnknownCodecError",
    "alaw_decode",
    "alaw_encode",
    "codec_by_name",
    "codec_by_payload_type",
    "ulaw_decode",
    "ulaw_encode",
]

Pcm = npt.NDArray[np.int16]


def _ulaw_compress_scalar(sample: int) -> int:
    """G.191 ``ulaw_compress`` for one 16-bit sample (used only to build the table)."""
    magnitude = ((~sample) >> 2) + 33 if sample < 0 else (sample >> 2) + 33
    magnitude = min(magnitude, 0x1FFF)
    segment = 1
    probe = magnitude >> 6
    while probe:
        segment += 1
        probe >>= 1
    code = ((8 - segment) << 4) | (0x0F - ((magnitude >> segment) & 0x0F))
    return code | 0x80 if sample >= 0 else code


def _ulaw_expand_scalar(code: int) -> int:
    """G.191 ``ulaw_expand`` for one code byte."""
    sign = -1 if code < 0x80 else 1
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def _alaw_compress_scalar(sample: int) -> int:
    """G.191 ``alaw_compress`` for one 16-bit sample."""
    value = (~sample) >> 4 if sample < 0 else sample >> 4
    if value > 15:
        exponent = 1
        while value > 16 + 15:
            value >>= 1
            exponent += 1
        value -= 16
        value += exponent << 4
    if sample >= 0:
        value |= 0x80
    return value ^ 0x55


def _alaw_expand_scalar(code: int) -> int:
    """G.191 ``alaw_expand`` for one code byte."""
    value = (code ^ 0x55) & 0x7F
    exponent = value >> 4
    mantissa = value & 0x0F
    if exponent > 0:
        mantissa += 16
    mantissa = (mantissa << 4) + 0x08
    if exponent > 1:
        mantissa <<= exponent - 1
    return mantissa if code > 0x7F else -mantissa


def _build_tables() -> tuple[Pcm, npt.NDArray[np.uint8], Pcm, npt.NDArray[np.uint8]]:
    codes = range(256)
    ulaw_dec = np.array([_ulaw_expand_scalar(c) for c in codes], dtype=np.int16)
    alaw_dec = np.array([_alaw_expand_scalar(c) for c in codes], dtype=np.int16)
    # Index i of the encode tables is the int16 sample whose bit pattern is i.
    samples = np.arange(65536, dtype=np.uint16).view(np.int16).tolist()
    ulaw_enc = np.array([_ulaw_compress_scalar(s) for s in samples], dtype=np.uint8)
    alaw_enc = np.array([_alaw_compress_scalar(s) for s in samples], dtype=np.uint8)
    for table in (ulaw_dec, alaw_dec, ulaw_enc, alaw_enc):
        table.setflags(write=False)
    return ulaw_dec, ulaw_enc, alaw_dec, alaw_enc


_ULAW_DECODE, _ULAW_ENCODE, _ALAW_DECODE, _ALAW_ENCODE = _build_tables()


def _as_index(pcm: Pcm) -> npt.NDArray[np.uint16]:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        dtype = getattr(pcm, "dtype", type(pcm).__name__)
        raise TypeError(f"G.711 encodes numpy int16 PCM, got {dtype}")
    if pcm.ndim != 1:
        raise ValueError(f"G.711 encodes mono (1-D) PCM, got shape {pcm.shape}")
    return np.ascontiguousarray(pcm).view(np.uint16)


def _as_codes(payload: bytes | bytearray | memoryview) -> npt.NDArray[np.uint8]:
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError(f"G.711 decodes bytes, got {type(payload).__name__}")
    return np.frombuffer(payload, dtype=np.uint8)


def ulaw_encode(pcm: Pcm) -> bytes:
    """Encode int16 samples to µ-law bytes."""
    return _ULAW_ENCODE[_as_index(pcm)].tobytes()


def ulaw_decode(payload: bytes | bytearray | memoryview) -> Pcm:
    """Decode µ-law bytes to a new (writable) int16 array."""
    return _ULAW_DECODE[_as_codes(payload)]


def alaw_encode(pcm: Pcm) -> bytes:
    """Encode int16 samples to A-law bytes."""
    return _ALAW_ENCODE[_as_index(pcm)].tobytes()


def alaw_decode(payload: bytes | bytearray | memoryview) -> Pcm:
    """Decode A-law bytes to a new (writable) int16 array."""
    return _ALAW_DECODE[_as_codes(payload)]


class UnknownCodecError(KeyError, ValueError):
    """No G.711 codec by that name or payload type.

    Both a ``KeyError`` (it is a failed look-up) and a ``ValueError`` (it is
    usually bad configuration or SDP), so callers can catch either.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown codec"


@dataclass(frozen=True)
class G711Codec:
    """A G.711 flavour as negotiated in SDP: encoding name, static payload type, clock rate."""

    name: str
    payload_type: int
    clock_rate: int = 8000

    def __post_init__(self) -> None:
        if self.name not in ("PCMU", "PCMA"):
            raise UnknownCodecError(f"G711Codec name must be 'PCMU' or 'PCMA', got {self.name!r}")
        if self.clock_rate != 8000:
            raise ValueError(f"G.711 runs at 8000 Hz, got {self.clock_rate}")

    @property
    def silence_byte(self) -> int:
        """The code for digital silence (0xFF for µ-law, 0xD5 for A-law), for comfort padding."""
        return 0xFF if self.name == "PCMU" else 0xD5

    @property
    def sample_rate(self) -> int:
        """The audio's rate, the same as the RTP clock for G.711 (not for G.722)."""
        return self.clock_rate

    @property
    def receive_payload_type(self) -> int:
        """Static payload types are the same both ways (Opus's dynamic ones may differ)."""
        return self.payload_type

    def samples_per_frame(self, frame_ms: int) -> int:
        """Samples (= payload bytes, G.711 is one byte per sample) in ``frame_ms`` of audio."""
        return self.clock_rate * frame_ms // 1000

    def encoder(self) -> G711Codec:
        """G.711 is stateless: the codec is its own encoder (see rtp/codec.py for why this exists)."""
        return self

    def decoder(self) -> G711Codec:
        return self

    def encode(self, pcm: Pcm) -> bytes:
        """Encode mono int16 PCM at 8 kHz to payload bytes."""
        return ulaw_encode(pcm) if self.name == "PCMU" else alaw_encode(pcm)

    def decode(self, payload: bytes | bytearray | memoryview) -> Pcm:
        """Decode payload bytes to a new mono int16 array."""
        return ulaw_decode(payload) if self.name == "PCMU" else alaw_decode(payload)


PCMU = G711Codec("PCMU", 0)
PCMA = G711Codec("PCMA", 8)
_BY_NAME = {"PCMU": PCMU, "PCMA": PCMA}
_BY_PT = {PCMU.payload_type: PCMU, PCMA.payload_type: PCMA}


def codec_by_name(name: str) -> G711Codec:
    """Look a codec up by SDP encoding name: ``"pcmu"``, ``"PCMA"``, ``"PCMU/8000"``, ...

    An ``/8000`` clock-rate suffix (as in an ``a=rtpmap`` line) is accepted;
    any other rate, or any other name, raises :class:`UnknownCodecError`.
    """
    base, _, rate = name.strip().partition("/")
    codec = _BY_NAME.get(base.upper())
    if codec is None or (rate and rate.strip() != str(codec.clock_rate)):
        known = ", ".join(_BY_NAME)
        raise UnknownCodecError(f"unknown G.711 codec {name!r} (known: {known}, at 8000 Hz)")
    return codec


def codec_by_payload_type(payload_type: int) -> G711Codec:
    """Look a codec up by its static payload type (0 = PCMU, 8 = PCMA)."""
    codec = _BY_PT.get(payload_type)
    if codec is None:
        raise UnknownCodecError(f"no G.711 codec has static payload type {payload_type!r} (PCMU=0, PCMA=8)")
    return codec
