"""Tests for rtp.g711: bit-exactness against an independent scalar reference and known values."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

from rtp.g711 import (
    PCMA,
    PCMU,
    G711Codec,
    UnknownCodecError,
    alaw_decode,
    alaw_encode,
    codec_by_name,
    codec_by_payload_type,
    ulaw_decode,
    ulaw_encode,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = bytes(range(256))


# Independent scalar reference, written the spandsp way (biased magnitude + top bit search),
# i.e. structured differently from the G.191-style generator in rtp.g711.
def _top_bit(value: int) -> int:
    return value.bit_length() - 1


def ref_ulaw_encode(x: int) -> int:
    if x < 0:
        magnitude, mask = 0x84 - x - 1, 0x7F
    else:
        magnitude, mask = 0x84 + x, 0xFF
    segment = _top_bit(magnitude | 0xFF) - 7
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((magnitude >> (segment + 3)) & 0x0F)) ^ mask


def ref_ulaw_decode(code: int) -> int:
    code = ~code & 0xFF
    t = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - t if code & 0x80 else t - 0x84


def ref_alaw_encode(x: int) -> int:
    if x >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        x = -x - 1  # one's complement magnitude
    segment = _top_bit(x | 0xFF) - 7
    if segment >= 8:
        return 0x7F ^ mask
    shift = segment + 3 if segment else 4
    return ((segment << 4) | ((x >> shift) & 0x0F)) ^ mask


def ref_alaw_decode(code: int) -> int:
    code ^= 0x55
    i = ((code & 0x0F) << 4) + 8
    segment = (code & 0x70) >> 4
    if segment:
        i = (i + 0x100) << (segment - 1)
    return i if code & 0x80 else -i


def test_decode_tables_match_reference() -> None:
    assert ulaw_decode(ALL_CODES).tolist() == [ref_ulaw_decode(c) for c in range(256)]
    assert alaw_decode(ALL_CODES).tolist() == [ref_alaw_decode(c) for c in range(256)]


def test_encode_tables_match_reference_for_every_sample() -> None:
    ulaw = np.frombuffer(ulaw_encode(ALL_SAMPLES), dtype=np.uint8).tolist()
    alaw = np.frombuffer(alaw_encode(ALL_SAMPLES), dtype=np.uint8).tolist()
    samples = ALL_SAMPLES.tolist()
    assert ulaw == [ref_ulaw_encode(x) for x in samples]
    assert alaw == [ref_alaw_encode(x) for x in samples]


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xFE, 8), (0x7E, -8), (0xEF, 132), (0xF0, 120)],
)
def test_ulaw_known_values(code: int, value: int) -> None:
    assert int(ulaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0xC5, 264)],
)
def test_alaw_known_values(code: int, value: int) -> None:
    assert int(alaw_decode(bytes([code]))[0]) == value


def test_known_encodings() -> None:
    pcm = np.array([0, -1, 32767, -32768, 8, -8], dtype=np.int16)
    assert ulaw_encode(pcm) == bytes([0xFF, 0x7F, 0x80, 0x00, 0xFE, 0x7E])
    assert alaw_encode(pcm) == bytes([0xD5, 0x55, 0xAA, 0x2A, 0xD5, 0x55])
    assert PCMU.encode(np.zeros(160, dtype=np.int16)) == b"\xff" * 160
    assert PCMA.encode(np.zeros(160, dtype=np.int16)) == b"\xd5" * 160


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_round_trip_is_idempotent_for_all_codes(codec: G711Codec) -> None:
    decoded = codec.decode(ALL_CODES)
    again = codec.decode(codec.encode(decoded))
    assert np.array_equal(again, decoded)
    # Every code except µ-law negative zero (0x7F, same value as 0xFF) re-encodes to itself.
    codes = np.frombuffer(codec.encode(decoded), dtype=np.uint8)
    mismatched = [c for c in range(256) if codes[c] != c]
    assert mismatched == ([0x7F] if codec is PCMU else [])


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_decoding_is_monotonic_and_symmetric(codec: G711Codec) -> None:
    values = codec.decode(ALL_CODES).astype(np.int32)
    positive = np.sort(values[values > 0])
    assert len(np.unique(positive)) == len(positive)
    assert sorted((-values[values < 0]).tolist()) == positive.tolist()


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_quantisation_error_is_bounded(codec: G711Codec) -> None:
    decoded = codec.decode(codec.encode(ALL_SAMPLES)).astype(np.int32)
    x = ALL_SAMPLES.astype(np.int32)
    # Segment step is at most 1024 (µ-law) / 1024 (A-law): error at most half a step (+clipping).
    inner = np.abs(x) < 31000
    assert np.max(np.abs(decoded[inner] - x[inner])) <= 512
    # Relative error of a log codec stays within a few percent above the first segments.
    big = np.abs(x) > 1000
    assert np.max(np.abs(decoded[big] - x[big]) / np.abs(x[big])) < 0.07


def test_matches_audioop_where_it_is_g191_compatible() -> None:
    """CPython's audioop (<= 3.12) is Sun's g711.c: identical decoders and A-law encoder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            audioop = importlib.import_module("audioop")
        except ImportError:
            pytest.skip("audioop not available")
    raw = ALL_SAMPLES.tobytes()
    assert audioop.ulaw2lin(ALL_CODES, 2) == ulaw_decode(ALL_CODES).astype("<i2").tobytes()
    assert audioop.alaw2lin(ALL_CODES, 2) == alaw_decode(ALL_CODES).astype("<i2").tobytes()
    assert audioop.lin2alaw(raw, 2) == alaw_encode(ALL_SAMPLES)
    theirs = np.frombuffer(audioop.lin2ulaw(raw, 2), dtype=np.uint8)
    ours = np.frombuffer(ulaw_encode(ALL_SAMPLES), dtype=np.uint8)
    positive = ALL_SAMPLES >= 0
    assert np.array_equal(theirs[positive], ours[positive])
    # For negatives Sun negates where G.191 takes the one's complement: at most one step apart.
    diff = ulaw_decode(theirs.tobytes()).astype(np.int32) - ulaw_decode(ours.tobytes()).astype(np.int32)
    assert np.count_nonzero(diff) < 600


def test_encode_accepts_non_contiguous_views() -> None:
    pcm = np.arange(-1600, 1600, 10, dtype=np.int16)
    assert PCMU.encode(pcm[::2]) == PCMU.encode(pcm[::2].copy())


def test_decode_returns_writable_int16_copy() -> None:
    out = PCMU.decode(b"\x00\x80")
    assert out.dtype == np.int16 and out.flags.writeable
    out[0] = 1
    assert int(PCMU.decode(b"\x00")[0]) == -32124
    assert PCMA.decode(bytearray(b"\xd5")).tolist() == [8]
    assert PCMA.decode(memoryview(b"\xd5\xd5")).tolist() == [8, 8]
    assert PCMU.decode(b"").shape == (0,)


@pytest.mark.parametrize("bad", [np.zeros(4, dtype=np.int32), np.zeros(4), [0, 1, 2]])
def test_encode_rejects_wrong_dtype(bad: object) -> None:
    with pytest.raises(TypeError):
        PCMU.encode(bad)  # type: ignore[arg-type]


def test_encode_rejects_stereo() -> None:
    with pytest.raises(ValueError):
        PCMA.encode(np.zeros((2, 160), dtype=np.int16))


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(TypeError):
        PCMU.decode("abc")  # type: ignore[arg-type]


def test_codec_objects() -> None:
    assert (PCMU.name, PCMU.payload_type, PCMU.clock_rate) == ("PCMU", 0, 8000)
    assert (PCMA.name, PCMA.payload_type, PCMA.clock_rate) == ("PCMA", 8, 8000)
    assert PCMU.samples_per_frame(20) == 160
    assert PCMU.silence_byte == 0xFF and PCMA.silence_byte == 0xD5
    with pytest.raises(ValueError):
        G711Codec("G722", 9)
    with pytest.raises(ValueError):
        G711Codec("PCMU", 0, 16000)


@pytest.mark.parametrize(
    ("name", "codec"),
    [("PCMU", PCMU), ("pcmu", PCMU), ("PcMa", PCMA), (" PCMA ", PCMA), ("PCMU/8000", PCMU), ("pcma/8000", PCMA)],
)
def test_codec_by_name(name: str, codec: G711Codec) -> None:
    assert codec_by_name(name) is codec


@pytest.mark.parametrize("name", ["G729", "", "PCMU/16000", "opus", "PCM"])
def test_codec_by_name_unknown(name: str) -> None:
    with pytest.raises(KeyError):
        codec_by_name(name)
    with pytest.raises(ValueError, match="unknown G.711 codec"):
        codec_by_name(name)


def test_codec_by_payload_type() -> None:
    assert codec_by_payload_type(0) is PCMU
    assert codec_by_payload_type(8) is PCMA
    with pytest.raises(UnknownCodecError, match="payload type 18"):
        codec_by_payload_type(18)


def test_encode_speed_is_table_lookup() -> None:
    import time

    pcm = np.random.default_rng(0).integers(-32768, 32767, 160 * 50 * 60, dtype=np.int16)  # 1 minute
    start = time.perf_counter()
    payload = PCMU.encode(pcm)
    PCMU.decode(payload)
    assert time.perf_counter() - start < 0.5
