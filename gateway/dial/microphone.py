"""`voicegate dial --mic`: talk to the agent through this machine's sound card.

ALSA's own tools move the audio (`arecord` and `aplay` from alsa-utils, raw 16-bit 8 kHz mono on
their stdout/stdin), so no audio library is linked into the gateway and any ALSA device name works
(`--mic-device`: "default", "plughw:1,0", or a PCM defined in ~/.asoundrc). Two threads beside the
line's own: capture reads 20 ms frames and queues them on the line, never more than
`MAX_AHEAD_FRAMES` ahead of its RTP clock (a sound card clock a little fast, or a file-backed PCM
that delivers at once, must not grow the delay: the excess waits in arecord's buffer, which
overruns and drops, as a phone would); playback writes every bot packet to aplay as it arrives.
The main thread (`LiveCall.talk`) cuts the call into turns at the bot's replies and hands each to
the printer with its voice-to-voice latency: your last voiced frame sent, to the reply's first
voiced packet received, both where they meet the wire (gateway/dial/line.py).
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import structlog

from gateway.dial.line import FRAME, VOICED_DBFS, CallerLine, level_dbfs
from gateway.dial.turns import BotReply, wait_reply

log = structlog.get_logger("dial")

MAX_AHEAD_FRAMES = 10  # 200 ms of microphone audio queued on the line at most
START_CHECK_S = 0.3  # arecord/aplay that cannot open the device exit within this
_ALSA = ("-q", "-t", "raw", "-f", "S16_LE", "-r", "8000", "-c", "1", "--buffer-time=200000", "--period-time=20000")


class SoundError(RuntimeError):
    """The sound card could not be used (no alsa-utils, no such device, device busy): ALSA's words."""


@dataclass(frozen=True)
class Captured:
    """One 20 ms microphone frame and when it was read."""

    at: float
    pcm: np.ndarray


class SoundCard:
    """arecord -> the line; the line's arrivals -> aplay. `close()` stops both."""

    def __init__(self, line: CallerLine, device: str = "default"):
        self.line = line
        self.device = device
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._captured: list[Captured] = []
        self._procs: list[subprocess.Popen] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        capture = self._spawn("arecord")
        playback = self._spawn("aplay", stdin=subprocess.PIPE)
        self._threads = [threading.Thread(target=self._capture, args=(capture,), name="dial-mic", daemon=True),
                         threading.Thread(target=self._play, args=(playback,), name="dial-speaker", daemon=True)]
        for thread in self._threads:
            thread.start()

    def captured(self, since: float, until: float) -> np.ndarray:
        """Microphone audio read between `since` and `until` (time.monotonic), 8 kHz int16. The
        turns move forward: frames before `since` are not asked for again and are let go."""
        with self._lock:
            self._captured = [c for c in self._captured if c.at >= since]
            frames = [c.pcm for c in self._captured if c.at < until]
        return np.concatenate(frames) if frames else np.zeros(0, dtype=np.int16)

    def close(self) -> None:
        self._stop.set()
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
        for thread in self._threads:
            thread.join(2.0)

    def _spawn(self, tool: str, stdin: int | None = None) -> subprocess.Popen:
        try:
            proc = subprocess.Popen([tool, "-D", self.device, *_ALSA], stdin=stdin,
                                    stdout=subprocess.PIPE if stdin is None else subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        except FileNotFoundError as exc:
            self.close()
            raise SoundError(f"{tool} not found: install alsa-utils (make apt-deps does)") from exc
        self._procs.append(proc)
        time.sleep(START_CHECK_S)
        if proc.poll() is not None:
            error = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            self.close()
            raise SoundError(f"{tool} -D {self.device}: {error or f'exited with {proc.returncode}'}")
        return proc

    def _capture(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        while not self._stop.is_set():
            data = proc.stdout.read(FRAME * 2)
            if len(data) < FRAME * 2:
                if not self._stop.is_set():
                    log.warning("microphone_ended", device=self.device, returncode=proc.poll())
                return
            while self.line.queued_frames() > MAX_AHEAD_FRAMES and not self._stop.is_set():
                time.sleep(0.005)
            pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
            with self._lock:
                self._captured.append(Captured(time.monotonic(), pcm))
            self.line.say(pcm)

    def _play(self, proc: subprocess.Popen) -> None:
        assert proc.stdin is not None
        played = 0
        while not self._stop.wait(0.02):
            fresh = self.line.arrivals_from(played)
            played += len(fresh)
            if not fresh:
                continue
            try:
                proc.stdin.write(b"".join(a.pcm.astype("<i2").tobytes() for a in fresh))
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                log.warning("speaker_ended", device=self.device, returncode=proc.poll())
                return


@dataclass(frozen=True)
class LiveTurn:
    """One exchange: what you said since the last reply (may be nothing: a greeting or a prompt),
    the bot's reply, and the latency between them on the wire."""

    said: np.ndarray  # 8 kHz int16, voiced part of your audio before the reply
    reply: BotReply
    latency_ms: float | None


class LiveCall:
    """Cuts a microphone call into turns at the bot's replies."""

    def __init__(self, line: CallerLine, card: SoundCard, hung_up: Callable[[], bool]):
        self.line = line
        self.card = card
        self.hung_up = hung_up

    def talk(self, on_turn: Callable[[LiveTurn], None], seconds: float | None = None) -> None:
        """Until the call ends, `seconds` pass, or Ctrl-C."""
        end = time.monotonic() + seconds if seconds else float("inf")
        since = time.monotonic()
        try:
            while not self.hung_up() and time.monotonic() < end:
                reply = wait_reply(self.line, since, min(1.0, max(0.0, end - time.monotonic())), 60.0, self.hung_up)
                if not reply.heard:
                    continue
                assert reply.onset_at is not None
                said = _voiced(self.card.captured(since, reply.onset_at))
                spoke = self.line.last_voiced_sent
                latency = None
                if len(said) and spoke is not None and since <= spoke < reply.onset_at:
                    latency = (reply.onset_at - spoke) * 1000
                on_turn(LiveTurn(said, reply, latency))
                since = time.monotonic()
        except KeyboardInterrupt:
            pass


def _voiced(pcm: np.ndarray) -> np.ndarray:
    """`pcm` from its first voiced frame to its last (nothing if none is)."""
    frames = pcm[: len(pcm) // FRAME * FRAME].reshape(-1, FRAME)
    voiced = [i for i, frame in enumerate(frames) if level_dbfs(frame) > VOICED_DBFS]
    return frames[voiced[0]: voiced[-1] + 1].reshape(-1) if voiced else np.zeros(0, dtype=np.int16)
