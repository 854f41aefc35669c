"""`voicegate dial`'s pieces without a gateway: the reply timing, the line on loopback UDP, the target."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from gateway.config import ConfigError, parse_config
from gateway.dial.command import target_uri
from gateway.dial.line import FRAME, Arrival, CallerLine, Peer
from gateway.dial.turns import END_SILENCE_S, ONSET_FRAMES, ended, onset
from gateway.dial.voice import VoiceError, read_wav, write_wav
from models.loader import LoadProgress
from rtp.g711 import PCMU
from rtp.packet import RtpPacket
from rtp.ports import PortAllocator

LOUD = (np.sin(np.arange(FRAME) / 3.0) * 8000).astype(np.int16)
QUIET = np.zeros(FRAME, dtype=np.int16)


def arrivals(pattern: str, start: float = 100.0) -> list[Arrival]:
    """'.' a quiet packet, 'x' a voiced one, 20 ms apart."""
    return [Arrival(start + 0.02 * i, i, LOUD if c == "x" else QUIET) for i, c in enumerate(pattern)]


def test_a_reply_starts_at_the_first_of_three_voiced_packets_in_a_row():
    assert ONSET_FRAMES == 3
    got = arrivals("..x.xx.xxxx")
    assert onset(got) == pytest.approx(got[7].at)  # a click (x) and a pair (xx) are not a reply
    assert onset(arrivals("x.xx.")) is None


def test_a_reply_ends_after_a_long_enough_silence():
    got = arrivals("xxxx")
    last = got[-1].at
    assert not ended(got, last + END_SILENCE_S - 0.1)
    assert ended(got, last + END_SILENCE_S)
    assert not ended(arrivals("...."), 1e9)  # no voice yet: nothing has ended


def config(routes: dict | None = None, listen: str = "127.0.0.1:5080"):
    raw = {"sip": {"listen": listen, "public_address": "192.0.2.7" if listen.startswith("0.0.0.0") else "127.0.0.1",
                   "default_agent": "desk", "routes": routes or {}},
           "agents": {"desk": {"type": "echo"}, "sales": {"type": "echo"}}}
    return parse_config(raw, source="gw.yaml")


def test_the_target_is_the_gateways_address_and_the_route_of_the_agent():
    assert target_uri(config(), "gw.yaml", None) == "sip:voicegate@127.0.0.1:5080"
    assert target_uri(config({"200": "sales"}), "gw.yaml", "sales") == "sip:200@127.0.0.1:5080"
    assert target_uri(config(listen="0.0.0.0:5060"), "gw.yaml", None) == "sip:voicegate@192.0.2.7:5060"


def test_an_agent_without_a_route_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError) as err:
        target_uri(config(), "gw.yaml", "sales")
    assert "gw.yaml" in str(err.value) and "sip.routes" in str(err.value) and "sales" in str(err.value)


def test_wav_files_are_read_as_8khz_and_bad_ones_get_one_clear_error(tmp_path: Path):
    tone = (np.sin(np.arange(16000) / 5.0) * 5000).astype(np.int16)
    path = write_wav(tmp_path / "q.wav", tone, rate=16000)
    assert len(read_wav(path)) == pytest.approx(8000, abs=2)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....not a wav")
    with pytest.raises(VoiceError, match="bad.wav: not a PCM WAV file"):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(VoiceError, match="cannot read"):
        read_wav(tmp_path / "missing.wav")


def test_the_line_times_the_last_voiced_frame_sent_and_each_packet_received():
    """Real UDP on loopback: a 'gateway' socket receives the caller's packets and answers one."""
    pair = PortAllocator("127.0.0.1", 47000, 47099).allocate()
    line = CallerLine(pair)
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind(("127.0.0.1", 0))
    far.settimeout(5.0)
    try:
        line.connect(Peer(far.getsockname(), PCMU, PCMU.payload_type))
        speech = np.concatenate([np.tile(LOUD, 5), np.zeros(2 * FRAME, dtype=np.int16)])  # 5 voiced, 2 quiet
        utterance = line.say(speech)
        assert utterance.done.wait(5.0)
        assert utterance.last_voiced_sent is not None and utterance.last_voiced_sent <= time.monotonic()
        packet = RtpPacket.parse(far.recv(2048))
        assert packet.payload_type == 0 and len(packet.payload) == FRAME
        sent_at = time.monotonic()
        reply = RtpPacket(0, 1, 160, 0x1234, PCMU.encode(LOUD))
        far.sendto(reply.serialize(), ("127.0.0.1", line.port))
        deadline = time.monotonic() + 5.0
        while not line.arrivals() and time.monotonic() < deadline:
            time.sleep(0.01)
        got = line.arrivals()
        assert len(got) == 1 and got[0].voiced and got[0].at >= sent_at
    finally:
        line.close()
        far.close()


def test_progress_is_written_only_to_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    piped, tty = io.StringIO(), Terminal()
    for stream in (piped, tty):
        progress = LoadProgress(2, stream)
        progress.step("loading the language model")
        progress.done("ready")
    assert piped.getvalue() == ""
    assert "[1/2] loading the language model..." in tty.getvalue() and tty.getvalue().endswith("ready\n")


def test_espeak_speaks_a_line_at_8khz_at_a_set_peak():
    pytest.importorskip("shutil").which("espeak-ng") or pytest.skip("espeak-ng is not installed")
    from gateway.dial.voice import PEAK, CallerVoice, VoiceEngine

    pcm = CallerVoice(VoiceEngine.ESPEAK).speak("What are your opening hours?")
    assert pcm.dtype == np.int16 and 0.8 < len(pcm) / 8000 < 5.0
    assert np.max(np.abs(pcm)) == pytest.approx(PEAK * 32767, rel=0.01)


def test_the_voice_choices_are_the_voice_engines():
    from gateway.dial.arguments import VOICES
    from gateway.dial.voice import VoiceEngine

    assert tuple(v.value for v in VoiceEngine) == VOICES and VOICES[0] == VoiceEngine.PIPER
