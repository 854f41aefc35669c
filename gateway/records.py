"""Per-call records: an event log (JSONL) and, optionally, a stereo recording (WAV) of every call.

Why: when a caller says "the bot talked over me" or "it took ages to answer", the operator needs
to see *that* call: who spoke when, where each turn lost its time, which tool ran.  One call is
two files in ``<directory>/<YYYY-MM-DD>/`` (the UTC day the call started, so the host's time zone
or a DST change never moves a record)::

    <safe call id>.jsonl   one JSON object per line, appended and flushed as it happens
    <safe call id>.wav     8 kHz 16-bit stereo: caller on the left channel, bot on the right

The file name is :func:`safe_call_id` of the SIP Call-ID, which may contain ``@``, ``/``, ``..``.

Event schema
------------
Every line is ``{"t": <unix time float>, "kind": <kind>, ...fields}``.  ``t`` is when the line
was written unless the caller passes ``t=`` explicitly.  Times in fields are unix times (float
seconds); non-finite floats are written as ``null``.  The gateway writes these kinds:

``call_start``     ``call_id``, ``direction`` ("inbound"/"outbound"), ``remote`` (peer URI), ``agent``
``caller_speech``  ``start``, ``end``, ``text`` (the final transcript)
``bot_speech``     ``start``, ``end``, ``text`` (what was actually said), ``interrupted`` (bool)
``turn``           ``turn`` (1-based), ``caller``, ``bot`` (texts), ``speech_end`` (unix time),
                   ``stages``: ``{turn_decision_ms, transcript_final_ms, llm_first_token_ms,
                   first_clause_ms, first_tts_audio_ms, first_rtp_ms}``: each is milliseconds
                   after ``speech_end`` (a mark on one clock, not a duration); a stage that did
                   not happen (e.g. the turn was cancelled) is ``null``
``barge_in``       ``at`` (unix time the caller's speech cut the bot off)
``tool_call``      ``tool``, ``arguments`` (dict), ``start``, ``end``, ``ok`` (bool); a transfer also
                   ``result`` (blind: the final NOTIFY's status; warm: ``referred``, ``bridged``, ``busy``,
                   ``no_answer``, ``rejected``, ``unreachable``, ``target_hung_up``, ``caller_left``, then
                   ": " and the detail)
``transfer``       a warm transfer's outcome, written by the call side when it is known: ``mode`` ("warm"),
                   ``target``, ``outcome`` (``referred``, ``bridged``, ``busy``, ``no_answer``, ``rejected``,
                   ``unreachable``, ``target_hung_up``, ``caller_left``), ``ok``, ``detail``, ``seconds``
                   (from the request), ``target_call_id`` (the second leg's own record)
``dtmf``           ``digit``, ``method`` ("rfc4733": in the media; "sip_info": a SIP INFO request),
                   as the agent got it (each keypress once)
``call_end``       ``reason``, ``outcome`` (a ``gateway.calls.outcome.CallOutcome`` value: ``remote_bye``,
                   ``busy``, ``no_answer``, ``rejected``, ``unreachable``...), ``code`` (the last SIP
                   status), ``answered`` (bool), ``duration_s``

Readers (:func:`load_record`, :mod:`gateway.report`) must tolerate missing kinds and fields: a
crashed call has no ``call_end``, and a future gateway may add kinds.

Shared copy
-----------
With a PostgreSQL ``database`` the same events also go to its ``call_events`` table (through the
recorder's ``sink``, a :class:`gateway.store.call_events.CallEventWriter` that never blocks), so
:func:`load_record` finds a call taken by any gateway.  The WAV stays a local file only: audio
is large, and the place for it is the gateway's disk (or a file share), not the database.

Durability
----------
Each event line is flushed to the OS as it is written (not fsync'ed), so a crash of the gateway
process keeps every event written so far; a half-written last line is skipped by
:func:`load_record`.  The WAV is streamed by a writer thread behind a bounded queue, never held in
memory; its header is written first with size fields of 0 and patched by :meth:`CallRecorder.close`.
A crash mid-call therefore leaves a WAV whose header claims no data: the samples are all there,
and most tools (``sox --ignore-length``, ``ffmpeg``) read it anyway.

Audio frames the disk cannot keep up with are dropped and counted, never waited for (the media
thread has a 20 ms budget); each dropped frame becomes silence in the file, so the recording stays
aligned with the event times.
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import re
import shutil
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import structlog

__all__ = [
    "CHANNELS",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "CallRecorder",
    "RecordPaths",
    "load_record",
    "purge_records",
    "safe_call_id",
]

SAMPLE_RATE = 8_000
CHANNELS = 2  # left: caller, right: bot
FRAME_SAMPLES = 160  # 20 ms at 8 kHz: one RTP packet
_SAMPLE_BYTES = 2
_HEADER_BYTES = 44
_MAX_DATA_BYTES = 0xFFFF_FFFF - (_HEADER_BYTES - 8)  # RIFF sizes are 32-bit: ~37 hours of stereo 8 kHz
_DEFAULT_QUEUE_FRAMES = 250  # 5 s of audio: rides out a disk hiccup without growing without bound
_GAP_CHUNK_FRAMES = 50  # silence for dropped frames is written 1 s at a time, not in one huge buffer
_CLOSE_TIMEOUT_S = 10.0
_SECONDS_PER_DAY = 86_400.0
_DAY_FORMAT = "%Y-%m-%d"
_MAX_NAME_CHARS = 100
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_STOP = object()

log = structlog.get_logger("records")


# --------------------------------------------------------------------------- names


def safe_call_id(call_id: str) -> str:
    """A file name for ``call_id`` that cannot escape its folder or collide with another call.

    A Call-ID that is already a plain name (letters, digits, ``.``, ``_``, ``-``; no leading dot)
    is kept as is, so operators find it by eye.  Anything else has its unsafe characters replaced
    by ``_`` and gets a short hash of the original appended, because ``a@b`` and ``a/b`` would
    otherwise both become ``a_b``.
    """
    cleaned = _UNSAFE_CHARS.sub("_", call_id).lstrip(".")
    if cleaned == call_id and 0 < len(call_id) <= _MAX_NAME_CHARS:
        return call_id
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{cleaned[:_MAX_NAME_CHARS] or 'call'}-{digest}"


@dataclass(frozen=True)
class RecordPaths:
    """Where one call's record lives; ``wav`` is None when audio recording is off."""

    jsonl: Path
    wav: Path | None


def _day_folder(unix_time: float) -> str:
    return datetime.fromtimestamp(unix_time, tz=UTC).strftime(_DAY_FORMAT)


# --------------------------------------------------------------------------- WAV stream


def _wav_header(data_bytes: int) -> bytes:
    """A canonical 44-byte PCM WAV header for ``data_bytes`` of stereo 8 kHz 16-bit samples."""
    block_align = CHANNELS * _SAMPLE_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", _HEADER_BYTES - 8 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, CHANNELS, SAMPLE_RATE, SAMPLE_RATE * block_align, block_align, _SAMPLE_BYTES * 8,
        b"data", data_bytes,
    )  # fmt: skip


@dataclass
class _WavStream:
    """A WAV file written front to back; the header's sizes are only right after :meth:`close`."""

    path: Path
    file: BinaryIO
    data_bytes: int = 0

    @classmethod
    def create(cls, path: Path) -> _WavStream:
        file = path.open("wb")
        file.write(_wav_header(0))  # placeholder: a crash leaves size-0 fields, patched at close
        file.flush()  # so even a crash in the first second leaves a recognisable WAV
        return cls(path, file)

    @property
    def full(self) -> bool:
        return self.data_bytes >= _MAX_DATA_BYTES

    def write(self, pcm: bytes) -> None:
        room = _MAX_DATA_BYTES - self.data_bytes
        chunk = pcm[: room - room % (CHANNELS * _SAMPLE_BYTES)]
        self.file.write(chunk)
        self.data_bytes += len(chunk)

    def close(self) -> None:
        try:
            self.file.seek(0)
            self.file.write(_wav_header(self.data_bytes))
        finally:
            self.file.close()


def _interleave(caller: np.ndarray | None, bot: np.ndarray | None) -> bytes:
    """One stereo frame (little-endian int16, caller left); a missing side is silence."""
    lengths = [len(x) for x in (caller, bot) if x is not None]
    n = max(lengths) if lengths else FRAME_SAMPLES
    out = np.zeros((n, CHANNELS), dtype="<i2")
    if caller is not None:
        out[: len(caller), 0] = caller
    if bot is not None:
        out[: len(bot), 1] = bot
    return out.tobytes()


# --------------------------------------------------------------------------- recorder


class CallRecorder:
    """Writes one call's events and (optionally) its stereo audio; see the module docstring.

    Thread use: :meth:`audio` is for the media thread only (it never blocks and does no I/O);
    :meth:`event` writes one flushed line under a lock, so call it from the SIP, agent or
    conversation threads, not the media thread.  Disk errors are logged, never raised: a full
    disk must not drop the call it is recording.
    """

    def __init__(
        self,
        directory: Path,
        call_id: str,
        audio: bool,
        *,
        queue_frames: int = _DEFAULT_QUEUE_FRAMES,
        clock: Callable[[], float] = time.time,
        sink: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        """``sink(call_id, event)`` also gets every event (JSON-ready); it must not block."""
        self.call_id = call_id
        self._sink = sink
        self._clock = clock
        self._log = log.bind(call_id=call_id)
        self._lock = threading.Lock()
        self._closed = False
        self._events: Any = None  # text file, None once closed or if it could not be opened
        self._wav: _WavStream | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_frames))
        self._frames_in = 0  # every frame offered to audio(), queued or dropped (media thread only)
        self._dropped = 0  # media thread only
        self._frames_out = 0  # writer thread only: frames (incl. silence for drops) in the WAV
        self._writer: threading.Thread | None = None
        name = safe_call_id(call_id)
        folder = Path(directory) / _day_folder(clock())
        self.paths = RecordPaths(folder / f"{name}.jsonl", folder / f"{name}.wav" if audio else None)
        self._open(folder)

    # ---------------------------------------------------------------- setup

    def _open(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._events = self.paths.jsonl.open("a", encoding="utf-8")
            if self.paths.wav is not None:
                self._wav = _WavStream.create(self.paths.wav)
        except OSError as exc:
            self._log.error("call_record_open_failed", path=str(folder), error=str(exc))
            return
        if self._wav is not None:
            self._writer = threading.Thread(target=self._drain, name=f"recorder-{self.paths.jsonl.stem}", daemon=True)
            self._writer.start()

    # ---------------------------------------------------------------- events

    def event(self, kind: str, **fields: Any) -> None:
        """Append ``{"t": now, "kind": kind, **fields}`` as one flushed JSON line (no-op once closed)."""
        record = {"t": self._clock(), "kind": kind, **fields}
        try:
            line = json.dumps(_jsonable(record), ensure_ascii=False, default=str)
        except (TypeError, ValueError) as exc:  # e.g. a circular structure: lose the event, not the call
            self._log.error("call_record_event_unserializable", kind=kind, error=str(exc))
            return
        with self._lock:  # the sink sees the events in file order
            if self._closed:
                return
            if self._sink is not None:
                self._to_sink(line)
            if self._events is None:
                return
            try:
                self._events.write(line + "\n")
                self._events.flush()
            except OSError as exc:
                self._log.error("call_record_event_failed", kind=kind, error=str(exc))

    def _to_sink(self, line: str) -> None:
        try:
            assert self._sink is not None
            self._sink(self.call_id, json.loads(line))  # the line's values: what the file holds, no numpy
        except Exception as exc:  # the shared copy is a convenience: never lose the call for it
            self._log.error("call_record_sink_failed", error=str(exc))

    # ---------------------------------------------------------------- audio (media thread)

    @property
    def dropped_frames(self) -> int:
        """Audio frames dropped because the writer fell behind (written as silence instead)."""
        return self._dropped

    def audio(self, caller: np.ndarray | None, bot: np.ndarray | None) -> None:
        """Offer one 20 ms frame of each side (None = silence); never blocks, never touches the disk."""
        if self._writer is None or self._closed:
            return
        seq = self._frames_in
        self._frames_in = seq + 1
        item = (seq, _copy(caller), _copy(bot))  # the caller may reuse its buffers
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped += 1

    # ---------------------------------------------------------------- writer thread

    def _drain(self) -> None:
        """Writer thread: stream queued frames to the WAV, silence in place of dropped ones."""
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            seq, caller, bot = item
            self._write_silence(seq - self._frames_out)
            self._write(_interleave(caller, bot))
            self._frames_out += 1
        self._write_silence(self._frames_in - self._frames_out)  # frames dropped after the last queued one

    def _write_silence(self, frames: int) -> None:
        while frames > 0:
            n = min(frames, _GAP_CHUNK_FRAMES)
            self._write(bytes(n * FRAME_SAMPLES * CHANNELS * _SAMPLE_BYTES))
            self._frames_out += n
            frames -= n

    def _write(self, pcm: bytes) -> None:
        wav = self._wav
        if wav is None or wav.full:  # failed or at the RIFF limit: keep draining so the queue never backs up
            return
        try:
            wav.write(pcm)
        except OSError as exc:
            self._log.error("call_record_audio_failed", path=str(wav.path), error=str(exc))
            self._wav = None
            _close_quietly(wav, self._log)
            return
        if wav.full:  # logged once: every later write returns above
            self._log.warning("call_record_audio_full", path=str(wav.path), bytes=wav.data_bytes)

    # ---------------------------------------------------------------- close

    def close(self) -> None:
        """Finish both files (idempotent): drain and join the writer, patch the WAV header."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            events, self._events = self._events, None
        if events is not None:
            _close_quietly(events, self._log)
        if self._writer is not None:
            self._stop_writer(self._writer)
        if self._dropped:
            self._log.warning("call_record_audio_dropped", frames=self._dropped)

    def _stop_writer(self, writer: threading.Thread) -> None:
        try:
            self._queue.put(_STOP, timeout=_CLOSE_TIMEOUT_S)
        except queue.Full:
            self._log.error("call_record_writer_stuck", path=str(self.paths.wav))
            return
        writer.join(_CLOSE_TIMEOUT_S)
        if writer.is_alive():
            self._log.error("call_record_writer_stuck", path=str(self.paths.wav))
            return
        wav, self._wav = self._wav, None
        if wav is not None:
            _close_quietly(wav, self._log)

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _copy(frame: np.ndarray | None) -> np.ndarray | None:
    return None if frame is None else np.array(frame, dtype=np.int16)


def _close_quietly(file: Any, logger: Any) -> None:
    try:
        file.close()
    except OSError as exc:
        logger.error("call_record_close_failed", error=str(exc))


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays made plain and NaN/inf made None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- retention


def purge_records(directory: Path, retention_days: float, now: float | None = None) -> int:
    """Delete records older than ``retention_days``; returns how many files were removed.

    A day folder whose whole day ended before the cutoff goes entirely; in a newer folder, a file
    last written before the cutoff goes too.  Anything that is not a ``YYYY-MM-DD`` folder is left
    alone (it is not ours).  ``inf`` keeps everything.
    """
    if math.isnan(retention_days) or retention_days < 0:
        raise ValueError(f"retention_days must be >= 0, got {retention_days}")
    root = Path(directory)
    if math.isinf(retention_days) or not root.is_dir():
        return 0
    cutoff = (time.time() if now is None else float(now)) - retention_days * _SECONDS_PER_DAY
    removed = 0
    for folder in sorted(root.iterdir()):
        day_start = _parse_day(folder.name)
        if day_start is None or not folder.is_dir():
            continue
        removed += _purge_folder(folder, expired=day_start + _SECONDS_PER_DAY <= cutoff, cutoff=cutoff)
    return removed


def _parse_day(name: str) -> float | None:
    try:
        return datetime.strptime(name, _DAY_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _purge_folder(folder: Path, *, expired: bool, cutoff: float) -> int:
    removed = 0
    for path in folder.iterdir():
        try:
            if path.is_file() and (expired or path.stat().st_mtime < cutoff):
                path.unlink()
                removed += 1
        except OSError as exc:
            log.warning("call_record_purge_failed", path=str(path), error=str(exc))
    if expired:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


# --------------------------------------------------------------------------- reading


def load_record(directory: Path | None, call_id: str, database: str | None = None) -> list[dict[str, Any]]:
    """The events of ``call_id``, read from whichever day folder holds them, else from ``database``.

    A line that is not valid JSON (the half-written last line of a crashed gateway) is skipped.
    If the same Call-ID was recorded on several days, the most recent record is returned.  When
    this gateway has no file of the call and ``database`` is a PostgreSQL URI, the events come
    from its ``call_events`` table: a call taken by another gateway of the cluster.  Raises
    FileNotFoundError if neither has it, :class:`gateway.store.StoreError` if the database
    cannot be read.
    """
    name = f"{safe_call_id(call_id)}.jsonl"
    places = []
    if directory is not None:
        root = Path(directory)
        matches = sorted(p for p in root.glob(f"*/{name}") if _parse_day(p.parent.name) is not None)
        if matches:
            return _read_events(matches[-1])
        places.append(f"in any day folder of {root}")
    if database is not None:
        from gateway.store import is_postgres_dsn  # the store is only needed for a shared record

        if is_postgres_dsn(database):
            from gateway.store.postgres import PostgresStore

            with PostgresStore(database) as store:
                events = store.call_events(call_id)
            if events:
                return events
            places.append(f"in the database {store.where}")
    raise FileNotFoundError(f"no record of call {call_id!r} ({name}) {' nor '.join(places) or 'anywhere'}")


def _read_events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", errors="replace") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                log.warning("call_record_bad_line", path=str(path), line=number)
                continue
            if isinstance(event, dict):
                events.append(event)
    return events
