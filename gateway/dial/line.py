"""The caller's end of the line for `voicegate dial`: real RTP, timed where it meets the wire.

Two threads, each owning its side. The sender paces one packet every 20 ms on absolute
deadlines (the script's speech, else silence, as a phone does) and notes when the last voiced
frame of each utterance left; the receiver blocks on the socket and stamps every packet the
moment it arrives. Voice-to-voice latency is the gap between those two instants, so neither a
jitter buffer nor the 20 ms pacing of a media clock is counted in it (RtpSession would add
both: it hands audio on after its jitter buffer, once per tick). Codecs are the project's own
(rtp/codec.py); on G.722 the 8 kHz script is raised to 16 kHz and the bot lowered to 8 kHz.
"""

from __future__ import annotations

import collections
import contextlib
import random
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from rtp.codec import AudioCodec, is_wideband
from rtp.packet import RtpError, RtpPacket
from rtp.ports import PortPair
from rtp.rate_bridge import FrameRateBridge

FRAME = 160  # 20 ms at 8 kHz
FRAME_S = 0.02
VOICED_DBFS = -40.0  # a frame louder than this carries voice (the benchmarks' onset threshold)


def level_dbfs(pcm: np.ndarray) -> float:
    if len(pcm) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean((pcm.astype(np.float64) / 32768.0) ** 2)))
    return 20.0 * float(np.log10(max(rms, 1e-6)))


@dataclass(frozen=True)
class Arrival:
    """One audio packet from the bot: when it reached our socket (time.monotonic) and its 8 kHz audio."""

    at: float
    sequence: int
    pcm: np.ndarray

    @property
    def voiced(self) -> bool:
        return level_dbfs(self.pcm) > VOICED_DBFS


@dataclass
class Utterance:
    """Caller audio queued on the line; `done` is set once its last frame has been sent."""

    frames: collections.deque[np.ndarray]
    done: threading.Event = field(default_factory=threading.Event)
    last_voiced_sent: float | None = None  # time.monotonic() the last voiced frame left


@dataclass(frozen=True)
class Peer:
    """Where to send, and how, as signalling negotiated it."""

    address: tuple[str, int]
    codec: AudioCodec
    payload_type: int


class CallerLine:
    def __init__(self, ports: PortPair):
        self.ports = ports
        self._lock = threading.Lock()
        self._peer: Peer | None = None
        self._queue: collections.deque[Utterance] = collections.deque()
        self._arrivals: list[Arrival] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.connected = threading.Event()
        self.last_voiced_sent: float | None = None  # the last voiced frame of any utterance (sender thread)

    @property
    def port(self) -> int:
        return self.ports.rtp_port

    # -- any thread --------------------------------------------------------------------------------

    def connect(self, peer: Peer) -> None:
        """Start (or redirect) the media once signalling has agreed on it."""
        with self._lock:
            first = self._peer is None
            self._peer = peer
        if first:
            self._threads = [threading.Thread(target=self._send_loop, name="dial-send", daemon=True),
                             threading.Thread(target=self._receive_loop, name="dial-receive", daemon=True)]
            for thread in self._threads:
                thread.start()
            self.connected.set()

    def say(self, pcm: np.ndarray) -> Utterance:
        """Queue 8 kHz int16 speech; it goes out after whatever is queued before it."""
        pcm = np.asarray(pcm, dtype=np.int16)
        padded = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME, dtype=np.int16)])
        utterance = Utterance(collections.deque(padded.reshape(-1, FRAME)))
        with self._lock:
            self._queue.append(utterance)
        return utterance

    def queued_frames(self) -> int:
        """Frames queued and not yet sent: how far a live source (a microphone) runs ahead."""
        with self._lock:
            return sum(len(u.frames) for u in self._queue)

    def arrivals_from(self, index: int) -> list[Arrival]:
        """The bot's packets from the `index`-th one to arrive on (a live player's cursor)."""
        with self._lock:
            return self._arrivals[index:]

    def arrivals(self, since: float = 0.0) -> list[Arrival]:
        """The bot's packets that arrived at or after `since`, in arrival order."""
        with self._lock:
            return [a for a in self._arrivals if a.at >= since]

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2.0)
        self.ports.close()

    # -- sender thread -------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        ssrc, sequence, timestamp = random.getrandbits(32), random.getrandbits(16), random.getrandbits(32)
        widen: FrameRateBridge | None = None
        encoder_for: AudioCodec | None = None
        encoder = None
        start = time.monotonic()
        tick = 0
        silence = np.zeros(FRAME, dtype=np.int16)
        while not self._stop.is_set():
            deadline = start + tick * FRAME_S
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.2:  # the machine stalled: start a new schedule rather than burst
                start, tick = time.monotonic(), 0
            with self._lock:
                peer = self._peer
                utterance = self._queue[0] if self._queue else None
                frame = utterance.frames.popleft() if utterance is not None else silence
            assert peer is not None
            if peer.codec is not encoder_for:
                encoder_for, encoder = peer.codec, peer.codec.encoder()
                widen = FrameRateBridge(8000, 16000) if is_wideband(peer.codec) else None
            assert encoder is not None
            payload = encoder.encode(frame if widen is None else widen.convert(frame))
            packet = RtpPacket(payload_type=peer.payload_type, sequence=sequence, timestamp=timestamp, ssrc=ssrc,
                               payload=payload, marker=tick == 0)
            with contextlib.suppress(OSError):  # the gateway's port closed at hang-up
                self.ports.rtp_socket.sendto(packet.serialize(), peer.address)
            sent = time.monotonic()
            if utterance is not None:
                if level_dbfs(frame) > VOICED_DBFS:
                    utterance.last_voiced_sent = self.last_voiced_sent = sent
                if not utterance.frames:
                    with self._lock:
                        self._queue.popleft()
                    utterance.done.set()
            sequence, timestamp, tick = (sequence + 1) & 0xFFFF, (timestamp + FRAME) & 0xFFFFFFFF, tick + 1

    # -- receiver thread -----------------------------------------------------------------------------

    def _receive_loop(self) -> None:
        sock = self.ports.rtp_socket
        sock.settimeout(0.2)
        decoder_for: AudioCodec | None = None
        decoder = None
        narrow: FrameRateBridge | None = None
        while not self._stop.is_set():
            try:
                data = sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            arrived = time.monotonic()
            with self._lock:
                peer = self._peer
            assert peer is not None
            try:
                packet = RtpPacket.parse(data)
            except RtpError:
                continue
            if packet.payload_type != peer.payload_type or not packet.payload:
                continue  # DTMF events, comfort noise, stray packets: not the bot's voice
            if peer.codec is not decoder_for:
                decoder_for, decoder = peer.codec, peer.codec.decoder()
                narrow = FrameRateBridge(16000, 8000) if is_wideband(peer.codec) else None
            assert decoder is not None
            pcm = decoder.decode(packet.payload)
            if narrow is not None:
                pcm = narrow.convert(pcm)
            with self._lock:
                self._arrivals.append(Arrival(arrived, packet.sequence, pcm))
