"""G.722 codec (rtp/g722codec.py), the codec look-up (rtp/codec.py), the rate bridge and the jitter
buffer's 16 kHz timeline with an 8000 RTP clock (RFC 3551)."""

from __future__ import annotations

import numpy as np
import pytest

from rtp.codec import UnknownCodecError, audio_codec_by_name, is_wideband
from rtp.g711 import PCMA, PCMU
from rtp.g722codec import G722
from rtp.jitter import FrameType, JitterBuffer
from rtp.rate_bridge import FrameRateBridge


def _tone(freq: float, seconds: float, rate: int = 16000, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _snr_db(reference: np.ndarray, decoded: np.ndarray, max_lag: int = 64) -> tuple[float, int]:
    """Best SNR over small delays (G.722's QMF filters delay the signal by a few samples)."""
    best = (-np.inf, 0)
    ref = reference.astype(np.float64)
    for lag in range(max_lag):
        out = decoded[lag:].astype(np.float64)
        n = min(len(out), len(ref))
        err = np.mean((out[:n] - ref[:n]) ** 2) or 1e-9
        best = max(best, (10 * np.log10(np.mean(ref[:n] ** 2) / err), lag))
    return best


def test_a_20ms_frame_is_320_samples_in_and_160_bytes_out():
    assert (G722.payload_type, G722.clock_rate, G722.sample_rate) == (9, 8000, 16000)
    assert G722.samples_per_frame(20) == 320
    payload = G722.encoder().encode(np.zeros(320, dtype=np.int16))
    assert len(payload) == 160
    out = G722.decoder().decode(payload)
    assert out.dtype == np.int16 and out.shape == (320,)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 5000.0])  # 5 kHz: gone on G.711, kept by G.722
def test_round_trip_keeps_speech_band_and_the_band_above_telephone(freq):
    signal = _tone(freq, 0.5)
    encoder, decoder = G722.encoder(), G722.decoder()
    decoded = np.concatenate([decoder.decode(encoder.encode(signal[i:i + 320])) for i in range(0, len(signal), 320)])
    snr, _lag = _snr_db(signal, decoded)
    assert snr > 20, (freq, snr)


def test_encoder_state_carries_over_packets():
    """ADPCM: a fresh encoder per packet (stateless use, as for G.711) sounds worse than one stream."""
    signal = _tone(1000.0, 0.4)
    encoder, decoder = G722.encoder(), G722.decoder()
    streamed = np.concatenate([decoder.decode(encoder.encode(signal[i:i + 320])) for i in range(0, len(signal), 320)])
    fresh = np.concatenate([G722.decoder().decode(G722.encoder().encode(signal[i:i + 320]))
                            for i in range(0, len(signal), 320)])
    assert G722.encoder() is not G722.encoder()  # each stream its own state
    assert _snr_db(signal, streamed)[0] > _snr_db(signal, fresh)[0] + 6


def test_encoder_rejects_what_is_not_int16_mono():
    with pytest.raises(TypeError):
        G722.encoder().encode(np.zeros(320, dtype=np.float32))
    with pytest.raises(ValueError):
        G722.encoder().encode(np.zeros(321, dtype=np.int16))
    with pytest.raises(TypeError):
        G722.decoder().decode("abc")  # type: ignore[arg-type]


def test_codec_lookup_by_sdp_and_pjsua_names():
    assert audio_codec_by_name("G722") is G722
    assert audio_codec_by_name("g722/8000") is G722  # the SDP rtpmap's (RTP clock) rate
    assert audio_codec_by_name("G722/16000/1") is G722  # pjsua's codec id (sample rate)
    assert audio_codec_by_name("PCMU") is PCMU and audio_codec_by_name("pcma/8000") is PCMA
    assert is_wideband(G722) and not is_wideband(PCMU)
    for bad in ("G729", "PCMU/16000", "opus/8000"):
        with pytest.raises(UnknownCodecError):
            audio_codec_by_name(bad)


def test_rate_bridge_gives_one_frame_per_frame_and_keeps_the_tone():
    down = FrameRateBridge(16000, 8000)
    signal = _tone(1000.0, 0.4)
    out = np.concatenate([down.convert(signal[i:i + 320]) for i in range(0, len(signal), 320)])
    assert len(out) == len(signal) // 2
    reference = _tone(1000.0, 0.4, rate=8000)
    assert _snr_db(reference[200:], out[200:], max_lag=200)[0] > 30
    up = FrameRateBridge(8000, 16000)
    assert all(up.convert(reference[i:i + 160]).shape == (320,) for i in range(0, 1600, 160))


def test_jitter_buffer_plays_16k_audio_on_an_8000_rtp_clock():
    """RFC 3551: G.722's timestamps advance 160 per 20 ms packet although it holds 320 samples."""
    jb = JitterBuffer(clock_rate=16000, frame_ms=20, min_delay_ms=20, max_delay_ms=200, timestamp_rate=8000)
    signal = _tone(700.0, 1.0)
    frames = []
    for i in range(40):
        ts = (4_000_000_000 + 160 * i) & 0xFFFFFFFF  # wraps mid-stream
        if i != 20:  # one packet lost
            jb.put(i & 0xFFFF, ts, signal[320 * i:320 * (i + 1)], arrival_s=i * 0.02)
        frames.append(jb.get())
    played = [f for f in frames if f.type is not FrameType.EMPTY]
    assert all(f.pcm.shape == (320,) for f in frames)
    assert sum(f.type is FrameType.CONCEALED for f in played) >= 1  # the lost packet, concealed at 16 kHz
    normal = [f for f in played if f.type is FrameType.NORMAL]
    assert len(normal) >= 30
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in zip(normal, normal[1:], strict=False)
             if b.timestamp is not None and a.timestamp is not None}
    assert 160 in steps and all(step % 160 == 0 for step in steps)  # RTP units, not samples
    assert jb.stats.lost == 1


def test_jitter_buffer_refuses_an_rtp_clock_without_whole_ticks_per_frame():
    """Any ratio of sample rate to RTP clock works (Opus: 16 kHz on 48000), as long as a frame is a
    whole number of both."""
    with pytest.raises(ValueError):
        JitterBuffer(clock_rate=16000, timestamp_rate=8001)
    assert JitterBuffer(clock_rate=16000, timestamp_rate=48000).frame_samples == 320
