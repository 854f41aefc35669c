"""The jitter buffer's store: received packets on a timeline of samples, and what was already played.

Split out of :mod:`rtp.jitter` (NetEq's PacketBuffer beside its DecisionLogic) so the buffer's
play-out decisions read apart from the bookkeeping of where each packet's audio lies. Keys are
unwrapped timestamps in samples; a packet covers ``[key, key + length)``. Played keys are
remembered (the last 256) so a duplicate that arrives after its audio went out is still known.

Not thread-safe: owned by one :class:`rtp.jitter.JitterBuffer`, on the media clock thread.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]

_PLAYED_MEMORY = 256  # played keys remembered to recognise late duplicates


@dataclass(slots=True)
class StoredPacket:
    pcm: Pcm | None  # None until a play-out decoder has decoded `payload`
    marker: bool
    length: int  # samples
    payload: bytes | None = None


class PacketTimeline:
    """Packets by start sample, in order; decodes an encoded one the first time its audio is read."""

    def __init__(self, frame_samples: int, decode: Callable[[bytes], Pcm] | None = None) -> None:
        self.frame_samples = frame_samples
        self._decode = decode
        self._packets: dict[int, StoredPacket] = {}
        self._keys: list[int] = []
        self._played_keys: deque[int] = deque(maxlen=_PLAYED_MEMORY)
        self._played_set: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self._keys)

    def known(self, key: int) -> bool:
        """Stored, or played not long ago: a packet starting here is a duplicate."""
        return key in self._packets or key in self._played_set

    def has(self, key: int) -> bool:
        return key in self._packets

    def add(self, key: int, packet: StoredPacket) -> None:
        self._packets[key] = packet
        bisect.insort(self._keys, key)

    def clear(self) -> None:
        """Drop every stored packet (a resync); the played keys stay known."""
        self._packets.clear()
        self._keys.clear()

    def first(self) -> int | None:
        """The start of the earliest stored packet."""
        return self._keys[0] if self._keys else None

    def marker_at(self, key: int) -> bool:
        return self._packets[key].marker

    def end(self) -> int | None:
        """The sample after the last stored audio."""
        if not self._keys:
            return None
        return max(key + self._packets[key].length for key in self._keys)

    def payload_at(self, key: int) -> bytes | None:
        """The still-encoded payload of the packet starting at `key` (its in-band FEC can rebuild
        the frame before it)."""
        packet = self._packets.get(key)
        return None if packet is None else packet.payload

    def assemble(self, start: int) -> tuple[Pcm, npt.NDArray[np.bool_]]:
        """Received audio in ``[start, start + frame)`` and a mask of which samples exist."""
        n = self.frame_samples
        out = np.zeros(n, dtype=np.int16)
        have = np.zeros(n, dtype=np.bool_)
        end = start + n
        for key in self._keys:
            if key >= end:
                break
            pcm = self._audio(key)
            lo = max(key, start)
            hi = min(key + len(pcm), end)
            if hi <= lo:
                continue
            region = slice(lo - start, hi - start)
            fill = ~have[region]
            out[region][fill] = pcm[lo - key : hi - key][fill]
            have[region] = True
        return out, have

    def covered(self, start: int) -> bool:
        """Whether stored packets hold every sample of the frame at `start` (nothing is decoded)."""
        end, reached = start + self.frame_samples, start
        for key in self._keys:
            if key >= end or key > reached:
                break
            reached = max(reached, key + self._packets[key].length)
        return reached >= end

    def forget_behind(self, play_ts: int) -> None:
        """Forget the packets whose audio lies entirely before the play position (played or skipped)."""
        while self._keys:
            key = self._keys[0]
            if key + self._packets[key].length > play_ts:
                break
            self._keys.pop(0)
            del self._packets[key]
            if len(self._played_keys) == self._played_keys.maxlen:
                self._played_set.discard(self._played_keys[0])
            self._played_keys.append(key)
            self._played_set.add(key)

    def _audio(self, key: int) -> Pcm:
        """A stored packet's audio, decoded now (in play-out order) if it came encoded."""
        packet = self._packets[key]
        if packet.pcm is None:
            assert self._decode is not None and packet.payload is not None
            pcm = np.asarray(self._decode(packet.payload), dtype=np.int16)
            if len(pcm) != packet.length:  # a corrupt packet concealed at another length
                fitted = np.zeros(packet.length, dtype=np.int16)
                fitted[: min(len(pcm), packet.length)] = pcm[: packet.length]
                pcm = fitted
            packet.pcm, packet.payload = pcm, None
        return packet.pcm
