"""An Opus call's media, end to end over real UDP: a caller's Opus RTP to the gateway's media path and back.

No SIP here, and that is the point of this file's scope: the pjsua2 build the gateway signals with has
no opus codec, so pjsua can neither offer nor accept it (README, `rtp.codecs`), and a baresip call
offering only opus cannot be negotiated yet. What runs is everything after the SDP: the gateway's
`RtpSession` on its real `MediaClock`, `CallMedia` and the echo agent, against the rig's `RtpPeer`
speaking Opus (48000 RTP clock, PT 111) with an espeak-ng sentence at 16 kHz, with and without 8 %
seeded packet loss and jitter. The caller must get its own voice back (correlation of its 16 kHz loudness
contour: 0.92-0.93 measured), and the
pinned whisper must understand what the gateway heard, i.e. the echoed audio, which passed the
gateway's Opus decoding (FEC and PLC for the lost packets) and encoding.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from gateway.agents.base import CallContext
from gateway.agents.echo import EchoAgent
from gateway.calls.media import CallMedia
from rtp.clock import MediaClock
from rtp.opuscodec import OPUS
from rtp.ports import PortAllocator
from rtp.session import RemoteMedia, RtpSession
from tests.rig.audio import best_correlation, make_speech_wav, read_wav
from tests.rig.ports import free_udp_port
from tests.rig.rtp_peer import RtpPeer

SENTENCE = "What time do you open on Monday morning?"
ENVELOPE_RATE = 50  # 20 ms steps: the peer places what it receives by 20 ms tick of arrival


def envelope(x: np.ndarray) -> np.ndarray:
    """RMS of each 20 ms of 16 kHz audio."""
    step = 16000 // ENVELOPE_RATE
    n = len(x) // step
    return np.sqrt(np.mean(np.asarray(x[: n * step], dtype=np.float64).reshape(n, step) ** 2, axis=1))


@pytest.fixture(scope="module")
def stt():
    from models.whisper import WhisperStt

    return WhisperStt()


@pytest.mark.parametrize("loss", [0.0, 0.08])
def test_an_opus_caller_hears_itself_back_and_the_gateway_understands_it(loss, tmp_wav_dir, stt):
    wav = make_speech_wav(SENTENCE, tmp_wav_dir / f"opus-{loss}.wav", rate=16000, pad_before_s=0.3, pad_after_s=0.3)
    voice, rate = read_wav(wav)
    assert rate == 16000
    voice16 = (voice * 32767 * 0.5).astype(np.int16)
    peer = RtpPeer(port=free_udp_port(), codec=OPUS, loss=loss, jitter_s=0.03 if loss else 0.0, seed=14)
    peer.play_at(10, np.zeros(0, dtype=np.int16), wide=voice16)
    context = CallContext(call_id=f"opus-{loss}", direction="inbound", local_uri="", remote_uri="",
                          agent_name="echo", hangup=lambda r: None, send_dtmf=lambda d: None)
    allocator = PortAllocator("127.0.0.1", 47300, 47399)
    session = RtpSession(allocator.allocate(), CallMedia(EchoAgent(context), lambda idle: None),
                         jitter_max_delay_ms=200)
    session.configure(RemoteMedia(rtp_address=("127.0.0.1", peer.port), rtcp_address=("127.0.0.1", peer.port + 1),
                                  codec=OPUS.with_payload_types(send=111, receive=111)))
    clock = MediaClock()
    clock.add(session)
    clock.start()
    peer.start(session.local_port)
    try:
        time.sleep(0.2 + len(voice16) / 16000 + 1.0)  # the sentence from tick 10, then its echo
    finally:
        peer.stop()
        clock.stop()
        stats = session.snapshot()
        session.close()
    assert stats.malformed == 0 and stats.packets_sent > 50, stats
    assert stats.wideband_sent > 50, stats  # the echo went out from the decoded 16 kHz audio
    if loss:
        assert peer.dropped > 0 and stats.jitter["concealed"] > 0, (peer.dropped, stats.jitter)
    back = peer.received_wide_audio().astype(np.float64) / 32768
    # Opus codes what is heard, not the waveform, and the echo passed it twice (caller -> gateway ->
    # caller): the sample-level correlation varies from run to run (0.25-0.8 seen), so the voice is
    # matched by its loudness contour, 20 ms at a time, which two Opus passes keep.
    corr, lag = best_correlation(envelope(voice16 / 32768), envelope(back), ENVELOPE_RATE)
    print(f"loss {loss:.0%}: dropped {peer.dropped}, echo envelope correlation {corr:.2f} at {lag * 1000:.0f} ms")
    assert corr > 0.85 and 0.2 < lag < 0.7, (corr, lag)  # sent from tick 10 (0.2 s), echoed through the gateway
    heard = stt.transcribe(back.astype(np.float32)).text.lower()
    print(f"whisper heard the echo as: {heard!r}")
    assert "open" in heard and "monday" in heard, heard
