"""A scriptable caller's media end: real RTP on 127.0.0.1, reacting to what the bot says.

SIPp does the signalling (its SDP points the gateway at this peer's port); this peer sends G.711
µ-law every 20 ms on absolute deadlines and records what the gateway sends back, positioned by
arrival time. It can play audio at scripted times, react to the bot (e.g. interrupt it one second
after its reply starts), and echo the bot's own audio back, delayed and attenuated, like a
telephone line with a hybrid echo. It can also impair its own sending like a bad network (seeded
random loss and per-packet delay, so packets arrive late and out of order) and speak A-law instead.

On G.722 (codec=G722) it sends 16 kHz: the audio given to `play_at` with a `wide` 16 kHz version is
sent as that, the rest (e.g. a background made at 8 kHz) raised to 16 kHz; the script's timing and
what it records of the bot stay at 8 kHz (160 samples a tick), so analysis code does not change;
the decoded 16 kHz is kept beside it (`received_wide`) for what only wideband shows. Opus
(codec=OPUS) is wideband the same way, with timestamps on its 48000 clock.
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rtp.codec import AudioCodec, is_wideband
from rtp.g711 import PCMU
from rtp.rate_bridge import FrameRateBridge

FRAME = 160
MAX_STALL_MS = 200.0  # RTP "never stopped": no gap longer than this, on a busy CI machine too


def rms_dbfs(pcm: np.ndarray) -> float:
    return 20 * float(np.log10(max(1e-9, np.sqrt(np.mean((pcm.astype(np.float64) / 32768.0) ** 2)))))


@dataclass
class RtpPeer:
    port: int
    echo_delay_s: float | None = None
    echo_gain_db: float = -10.0
    on_tick: Callable[[RtpPeer, int], None] | None = None
    codec: AudioCodec = PCMU  # must match what SIPp's SDP offered
    loss: float = 0.0  # probability that a sent packet is dropped
    jitter_s: float = 0.0  # each sent packet is held back U(0, jitter_s) seconds
    seed: int = 0  # for loss and jitter: the same impairment every run
    sent: list[np.ndarray] = field(default_factory=list)
    received: dict[int, np.ndarray] = field(default_factory=dict)  # tick of arrival -> decoded frame
    received_wide: dict[int, np.ndarray] = field(default_factory=dict)  # G.722: the same, as decoded (16 kHz)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.setblocking(False)
        self._schedule: list[tuple[int, np.ndarray]] = []
        self._schedule_wide: list[tuple[int, np.ndarray]] = []  # G.722: 16 kHz versions, sent instead
        self._wideband = is_wideband(self.codec)
        self._encoder, self._decoder = self.codec.encoder(), self.codec.decoder()
        self._widen = FrameRateBridge(8000, 16000) if self._wideband else None
        self._narrow = FrameRateBridge(16000, 8000) if self._wideband else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tick = 0
        self.remote: tuple[str, int] | None = None
        self._rng = np.random.default_rng(self.seed)
        self._held: list[tuple[float, int, bytes]] = []  # (send time, seq, datagram): jitter
        self.dropped = 0

    # -- script --------------------------------------------------------------------------------

    def play_at(self, tick: int, pcm: np.ndarray, wide: np.ndarray | None = None) -> None:
        """Send `pcm` (8 kHz int16) starting at `tick` (20 ms units since start); on G.722 send
        `wide` (the same audio at 16 kHz) instead when given."""
        with self._lock:
            if wide is not None and self._wideband:
                self._schedule_wide.append((tick, np.asarray(wide, dtype=np.int16)))
            else:
                self._schedule.append((tick, np.asarray(pcm, dtype=np.int16)))

    def _wide_frame(self, tick: int) -> np.ndarray:
        out = np.zeros(2 * FRAME, dtype=np.int32)
        with self._lock:
            for start, pcm in self._schedule_wide:
                offset = (tick - start) * 2 * FRAME
                if 0 <= offset < len(pcm):
                    piece = pcm[offset:offset + 2 * FRAME]
                    out[: len(piece)] += piece
        return out

    def _caller_frame(self, tick: int) -> np.ndarray:
        out = np.zeros(FRAME, dtype=np.int32)
        with self._lock:
            for start, pcm in self._schedule:
                offset = (tick - start) * FRAME
                if 0 <= offset < len(pcm):
                    piece = pcm[offset:offset + FRAME]
                    out[: len(piece)] += piece
        return out

    # -- media loop ----------------------------------------------------------------------------

    def start(self, remote_port: int) -> RtpPeer:
        self.remote = ("127.0.0.1", remote_port)
        self._thread = threading.Thread(target=self._run, name="rtp-peer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self.sock.close()

    def _run(self) -> None:
        start = time.monotonic()
        seq, ts, ssrc = 1, 0, 0x5EED
        echo_ticks = None if self.echo_delay_s is None else round(self.echo_delay_s / 0.02)
        gain = 10 ** (self.echo_gain_db / 20)
        while not self._stop.is_set():
            deadline = start + self.tick * 0.02
            self._wait_sending_held(deadline)
            self._drain()
            if self.on_tick is not None:
                self.on_tick(self, self.tick)
            frame = self._caller_frame(self.tick)
            if echo_ticks is not None:
                echoed = self.received.get(self.tick - echo_ticks)
                if echoed is not None:
                    frame += (echoed.astype(np.float64) * gain).astype(np.int32)
            pcm = np.clip(frame, -32767, 32767).astype(np.int16)
            self.sent.append(pcm)
            header = struct.pack("!BBHII", 0x80, self.codec.payload_type, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
            if self._widen is not None:
                wide = self._widen.convert(pcm).astype(np.int32) + self._wide_frame(self.tick)
                pcm = np.clip(wide, -32767, 32767).astype(np.int16)
            self._send(deadline, seq, header + self._encoder.encode(pcm))
            seq, ts = seq + 1, ts + self.codec.clock_rate // 50  # 20 ms in RTP units (Opus: 960)
            self.tick += 1

    def _send(self, now: float, seq: int, datagram: bytes) -> None:
        """Send now, drop (`loss`) or hold back (`jitter_s`); the RNG is drawn the same way every run."""
        drop, delay = self._rng.random() < self.loss, self._rng.uniform(0.0, self.jitter_s)
        if drop:
            self.dropped += 1
        elif self.jitter_s > 0:
            heapq.heappush(self._held, (now + delay, seq, datagram))
        else:
            self._send_now(datagram)

    def _send_now(self, datagram: bytes) -> None:
        with contextlib.suppress(OSError):  # the gateway's port closed at hang-up
            self.sock.sendto(datagram, self.remote)

    def _wait_sending_held(self, deadline: float) -> None:
        """Sleep until `deadline`, sending each held-back packet at its own time on the way."""
        while True:
            now = time.monotonic()
            while self._held and self._held[0][0] <= now:
                self._send_now(heapq.heappop(self._held)[2])
            wake = min(deadline, self._held[0][0]) if self._held else deadline
            if wake <= now:
                return
            time.sleep(wake - now)

    def _drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                return
            if len(data) < 12 or data[1] & 0x7F != self.codec.payload_type:
                continue  # RTCP or events: not audio
            pcm = wide = self._decoder.decode(data[12:])
            if self._narrow is not None:
                pcm = self._narrow.convert(wide)
            tick = self.tick
            while tick in self.received:  # two packets in one tick: keep order
                tick += 1
            self.received[tick] = pcm
            if self._narrow is not None:
                self.received_wide[tick] = wide

    # -- analysis ------------------------------------------------------------------------------

    def received_audio(self) -> np.ndarray:
        if not self.received:
            return np.zeros(0, dtype=np.int16)
        end = max(self.received) + 1
        out = np.zeros(end * FRAME, dtype=np.int16)
        for tick, pcm in self.received.items():
            out[tick * FRAME:tick * FRAME + len(pcm)] = pcm[:FRAME]
        return out

    def received_wide_audio(self) -> np.ndarray:
        """What a G.722 peer received, at 16 kHz, placed by arrival tick (empty on G.711)."""
        if not self.received_wide:
            return np.zeros(0, dtype=np.int16)
        out = np.zeros((max(self.received_wide) + 1) * 2 * FRAME, dtype=np.int16)
        for tick, pcm in self.received_wide.items():
            out[tick * 2 * FRAME:tick * 2 * FRAME + len(pcm)] = pcm[:2 * FRAME]
        return out

    def longest_gap_ms(self, first: int | None = None, last: int | None = None) -> float:
        """The longest stretch without a packet between ticks `first` and `last` (all the call's
        if None). A stall guard, not a jitter figure: the peer drains its socket once per 20 ms
        tick of its own thread, which a busy machine delays too; `MAX_STALL_MS` is the bound the
        tests use (the media clock's own timing is benchmarked in bench_media_capacity.py)."""
        ticks = sorted(t for t in self.received
                       if (first is None or t >= first) and (last is None or t <= last))
        return float(np.diff(ticks).max()) * 20.0 if len(ticks) > 1 else float("inf")

    def bot_active(self, tick: int, threshold_dbfs: float = -40.0) -> bool:
        frame = self.received.get(tick)
        return frame is not None and rms_dbfs(frame) > threshold_dbfs
