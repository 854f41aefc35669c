"""The audio codecs the RTP engine carries, behind one interface, and the look-up by SDP name.

A codec here is the frozen description SDP negotiated (name, static payload type, RTP clock
rate, the audio's sample rate); the per-stream work is done by the encoder and decoder it hands
out, because G.722 (ADPCM) and Opus keep state between packets while G.711 does not (its codec
object is its own encoder and decoder). Codec-specific code lives in g711.py, g722codec.py and
opuscodec.py. Opus is the one codec with a dynamic payload type (``with_payload_types`` from the
negotiated SDP) and the one the jitter buffer decodes at play-out (the session hands it an
``OpusDecoder``), so that its own loss concealment and FEC replace ours.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from rtp.g711 import PCMA, PCMU, G711Codec, UnknownCodecError
from rtp.g722codec import G722, G722Codec
from rtp.opuscodec import OPUS, OpusCodec

__all__ = ["AudioCodec", "Decoder", "Encoder", "UnknownCodecError", "audio_codec_by_name", "is_wideband"]


class Encoder(Protocol):
    def encode(self, pcm: np.ndarray) -> bytes: ...


class Decoder(Protocol):
    def decode(self, payload: bytes | bytearray | memoryview) -> np.ndarray: ...


AudioCodec = G711Codec | G722Codec | OpusCodec

_BY_NAME: dict[str, AudioCodec] = {"PCMU": PCMU, "PCMA": PCMA, "G722": G722, "OPUS": OPUS}


def audio_codec_by_name(name: str) -> AudioCodec:
    """Look a codec up by SDP/pjsua encoding name (``"G722"``, ``"pcmu"``, ``"PCMA/8000"``, ``"opus/48000/2"``).

    A ``/rate`` suffix must be the RTP clock rate (8000 for G.711 and G.722, 48000 for Opus); pjsua's
    own codec id ``G722/16000`` names the sample rate and is accepted too. Opus comes with its
    default payload type (111): the caller sets the negotiated ones (``with_payload_types``).
    """
    base, _, rate = name.strip().partition("/")
    rate = rate.partition("/")[0].strip()
    codec = _BY_NAME.get(base.upper())
    if codec is None or (rate and rate not in (str(codec.clock_rate), str(codec.sample_rate))):
        raise UnknownCodecError(f"unknown codec {name!r} (known: {', '.join(_BY_NAME)})")
    return codec


def is_wideband(codec: AudioCodec) -> bool:
    """Whether the codec's audio is 16 kHz (the session then hands listeners both rates)."""
    return codec.sample_rate != 8000
