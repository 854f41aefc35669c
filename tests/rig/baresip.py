"""baresip as a scriptable softphone: plays a WAV, records both directions, driven over TCP.

Used as the human caller/callee in front of the gateway. Each instance gets its own
config dir, SIP port, control port and recording dir; audio never touches a sound
card (``aufile`` source, ``aubridge`` null player) and ``sndfile`` records what was
sent (``dump-*-enc.wav``) and received (``dump-*-dec.wav``).

Control is the ``ctrl_tcp`` module: netstrings (``<len>:<json>,``) carrying
``{"command": ..., "params": ..., "token": ...}``; baresip answers with
``{"response": true, "ok": bool, "data": str, "token": ...}`` and pushes
``{"event": true, "type": "CALL_ESTABLISHED", "class": "call", ...}`` for UA events.
A reader thread collects both; tests wait on them with :meth:`Baresip.wait_event`.

Event types seen from baresip 1.0 (``type``; ``param`` in brackets): REGISTER_OK /
REGISTER_FAIL ("200 OK" / reason), CALL_INCOMING (only with answermode=manual),
CALL_RINGING (caller, on 180), CALL_LOCAL_SDP / CALL_REMOTE_SDP ("offer"/"answer"),
CALL_ESTABLISHED (peer URI), CALL_RTPESTAB / CALL_RTCP ("audio"), CALL_DTMF_START (the
digit) / CALL_DTMF_END, TRANSFER (Refer-To URI), CALL_CLOSED (reason: "Connection reset
by user" on our hangup, "... by peer" on theirs). Call events also carry ``direction``
("incoming"/"outgoing"), ``peeruri``, ``accountaor``, ``id`` (the SIP Call-ID).

Pitfalls (baresip 1.0.0 on Debian 12):

* When the ``aufile`` source reaches the end of its file, baresip hangs up the call.
  ``source_wav`` is therefore padded with silence to ``call_duration_s``.
* It registers ~50 ms after starting, before the control connection is up: the first
  REGISTER_OK event is lost. :meth:`Baresip.wait_registered` polls ``reginfo`` instead.
* Recording names have a one-second timestamp (``dump-YYYY-MM-DD-HH-MM-SS-enc.wav``):
  two calls of one UA within the same second share (overwrite) the files. The
  received file starts at the first decoded packet, so it is aligned with the
  sender's source file (lag ~0), not with this UA's own ``enc`` file.
* WAV headers are finalised when the call ends; mid-call files say "0 bytes of data"
  (:func:`tests.rig.audio.read_wav` copes).
* Besides UDP+TCP on the SIP port it listens on TCP ``port + 1`` (TLS), so that port must
  be free too; ``net_interface lo`` fails, the IP address works.
* Only one account per process here; re-registration after a registrar restart
  happens at the next refresh (``regint`` s; min 10 on the rig's Kamailio).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.rig.audio import make_silence_wav, pad_wav, wav_duration
from tests.rig.ports import HOST, free_sip_port, free_tcp_port
from tests.rig.proc import ManagedProcess, RigError, StartStop, require_binary, tail

MODULE_PATH = "/usr/lib/baresip/modules"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

Event = dict[str, Any]


class NetstringDecoder:
    """Incremental netstring decoder (``<decimal length>:<payload>,``)."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            colon = self._buf.find(b":")
            if colon < 0:
                if len(self._buf) > 20:
                    raise ValueError(f"bad netstring prefix {self._buf[:20]!r}")
                return out
            length = int(self._buf[:colon])
            end = colon + 1 + length
            if len(self._buf) < end + 1:
                return out
            if self._buf[end : end + 1] != b",":
                raise ValueError("netstring missing trailing comma")
            out.append(self._buf[colon + 1 : end])
            self._buf = self._buf[end + 1 :]


def netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


@dataclass
class BaresipAccount:
    """One SIP account line of baresip's ``accounts`` file.

    With ``registrar`` (``host:port`` of Kamailio) the UA registers every ``regint``
    seconds and sends all requests through it (``outbound``). Without it the account
    is local only (``regint=0``): dial peers directly by ``sip:user@host:port``.
    """

    user: str
    password: str | None = None
    domain: str = HOST
    registrar: str | None = None
    regint: int = 300
    answermode: str = "auto"  # auto | manual | early
    audio_codecs: str = "PCMU,PCMA"
    extra: str = ""

    def line(self, sip_port: int) -> str:
        if self.registrar:
            aor = f"<sip:{self.user}@{self.domain}>"
            params = [f'outbound="sip:{self.registrar}"', f"regint={self.regint}"]
        else:
            aor = f"<sip:{self.user}@{HOST}:{sip_port}>"
            params = ["regint=0"]
        if self.password is not None:
            params.insert(0, f"auth_pass={self.password}")
        params += [f"audio_codecs={self.audio_codecs}", f"answermode={self.answermode}"]
        if self.extra:
            params.append(self.extra.lstrip(";"))
        return aor + ";" + ";".join(params)


@dataclass
class Baresip(StartStop):
    """A baresip process with one account, controlled over ctrl_tcp.

    ``source_wav`` is what it will say on every call (converted/padded copy kept in the
    work dir); ``None`` means silence. Calls last at most ``call_duration_s`` unless
    hung up, because the padded source ends then.
    """

    workdir: Path
    account: BaresipAccount
    source_wav: Path | None = None
    call_duration_s: float = 30.0
    sip_port: int = 0
    ctrl_port: int = 0
    rtp_ports: tuple[int, int] = (20000, 32000)
    sip_trace: bool = False
    start_timeout: float = 10.0
    modules: tuple[str, ...] = ()  # more modules to load, e.g. ("srtp.so",)
    extra_config: str = ""  # more config lines, e.g. "sip_certificate /path/cert-and-key.pem"
    _proc: ManagedProcess | None = field(default=None, init=False, repr=False)
    _sock: socket.socket | None = field(default=None, init=False, repr=False)
    _reader: threading.Thread | None = field(default=None, init=False, repr=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)
    _events: list[Event] = field(default_factory=list, init=False, repr=False)
    _consumed: set[int] = field(default_factory=set, init=False, repr=False)
    _responses: dict[str, Event] = field(default_factory=dict, init=False, repr=False)
    _token: int = field(default=0, init=False, repr=False)
    _send_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        if not self.sip_port:
            self.sip_port = free_sip_port(also_next_tcp=True)
        if not self.ctrl_port:
            self.ctrl_port = free_tcp_port()

    # ---------------------------------------------------------------- paths
    @property
    def config_dir(self) -> Path:
        return self.workdir / "config"

    @property
    def snd_dir(self) -> Path:
        return self.workdir / "recordings"

    @property
    def log_path(self) -> Path:
        return self.workdir / "baresip.log"

    @property
    def played_wav(self) -> Path:
        """The (padded) file the aufile source actually plays."""
        return self.workdir / "source.wav"

    @property
    def contact_uri(self) -> str:
        """Direct SIP URI of this UA (for calls that bypass the registrar)."""
        return f"sip:{self.account.user}@{HOST}:{self.sip_port}"

    # --------------------------------------------------------------- config
    def write_config(self) -> None:
        """Write config/accounts and the padded source WAV."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.snd_dir.mkdir(parents=True, exist_ok=True)
        if self.source_wav is None:
            make_silence_wav(self.played_wav, self.call_duration_s)
        else:
            pad_wav(self.source_wav, self.played_wav, total_s=self.call_duration_s)
        lo, hi = self.rtp_ports
        config = f"""# Generated by tests/rig/baresip.py
poll_method		epoll
sip_listen		{HOST}:{self.sip_port}
net_interface		{HOST}
call_local_timeout	120
call_max_calls		4
audio_player		aubridge,nowhere
audio_source		aufile,{self.played_wav.resolve()}
audio_alert		aubridge,nowhere
audio_level		no
ausrc_format		s16
auplay_format		s16
auenc_format		s16
audec_format		s16
audio_buffer		20-160
rtp_tos			184
rtp_ports		{lo}-{hi}
rtcp_mux		no
jitter_buffer_delay	5-10
rtp_stats		no
module_path		{MODULE_PATH}
module			g711.so
module			aufile.so
module			aubridge.so
module			sndfile.so
module_tmp		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		{HOST}:{self.ctrl_port}
snd_path		{self.snd_dir.resolve()}
"""
        config += "".join(f"module\t\t\t{m}\n" for m in self.modules)
        config += self.extra_config.strip() + "\n" if self.extra_config.strip() else ""
        (self.config_dir / "config").write_text(config)
        (self.config_dir / "accounts").write_text(self.account.line(self.sip_port) + "\n")
        (self.config_dir / "contacts").write_text("")

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Baresip:
        """Start baresip and connect the control channel (events are collected from now on)."""
        binary = require_binary("baresip")
        self.write_config()
        argv = [binary, "-f", str(self.config_dir)]
        if self.sip_trace:
            argv.append("-s")
        self._proc = ManagedProcess(f"baresip[{self.account.user}]", argv, self.log_path, cwd=self.workdir)
        self._proc.start()
        try:
            self._connect(self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _connect(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        last_err: OSError | None = None
        while time.monotonic() < deadline:
            if not self._proc.running():
                raise self._proc.error("exited during startup")
            try:
                sock = socket.create_connection((HOST, self.ctrl_port), timeout=0.5)
            except OSError as exc:
                last_err = exc
                time.sleep(0.05)
                continue
            sock.settimeout(None)
            self._sock = sock
            self._reader = threading.Thread(
                target=self._read_loop, name=f"baresip-{self.account.user}", daemon=True
            )
            self._reader.start()
            return
        raise self._proc.error(
            f"ctrl_tcp {HOST}:{self.ctrl_port} not reachable after {timeout:.1f}s ({last_err})"
        )

    def _read_loop(self) -> None:
        decoder = NetstringDecoder()
        sock = self._sock
        assert sock is not None
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            for payload in decoder.feed(data):
                try:
                    msg = json.loads(payload.decode(errors="replace"))
                except json.JSONDecodeError:
                    continue
                msg["_t"] = time.monotonic()
                with self._cond:
                    if msg.get("response"):
                        self._responses[str(msg.get("token", ""))] = msg
                    else:
                        self._events.append(msg)
                    self._cond.notify_all()
        with self._cond:
            self._events.append({"event": True, "type": "_CTRL_CLOSED", "_t": time.monotonic()})
            self._cond.notify_all()

    def stop(self) -> None:
        """Quit baresip (SIGTERM to its group, SIGKILL if needed); closes the control channel."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            self._proc.stop(timeout=3.0)
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()


    # -------------------------------------------------------------- control
    def command(self, command: str, params: str = "", timeout: float = 5.0) -> Event:
        """Send one ctrl_tcp command and wait for its response (``ok``, ``data``)."""
        if self._sock is None:
            raise RigError("baresip not started")
        with self._send_lock:
            self._token += 1
            token = f"t{self._token}"
        payload = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(netstring(payload))
        with self._cond:
            if not self._cond.wait_for(lambda: token in self._responses, timeout):
                raise self._error(f"no response to {command!r} {params!r} within {timeout:.1f}s")
            return self._responses.pop(token)

    def dial(self, uri: str) -> Event:
        """Place a call to ``uri`` (e.g. ``kamailio.uri("2002")``); returns the response."""
        resp = self.command("dial", uri)
        if not resp.get("ok", False):
            raise self._error(f"dial {uri} refused: {resp}")
        return resp

    def hangup(self) -> Event:
        """Hang up the current call."""
        return self.command("hangup")

    def accept(self) -> Event:
        """Answer the ringing incoming call (answermode=manual)."""
        return self.command("accept")

    def hold(self) -> Event:
        """Put the current call on hold (re-INVITE with a=sendonly)."""
        return self.command("hold")

    def resume(self) -> Event:
        """Resume the held call (re-INVITE with a=sendrecv)."""
        return self.command("resume")

    def reinvite(self) -> Event:
        """Send a plain re-INVITE (same SDP) on the current call."""
        return self.command("reinvite")

    def transfer(self, uri: str) -> Event:
        """Blind-transfer the current call: send REFER with ``Refer-To: uri`` to the peer."""
        return self.command("transfer", uri)

    def send_dtmf(self, digits: str, gap_s: float = 0.25) -> None:
        """Send DTMF digits as RFC 4733 events, one ``sndcode`` command per digit.

        baresip ends a tone when the next key (or the release code) arrives, so the
        gap between digits sets the tone length.
        """
        for digit in digits:
            resp = self.command("sndcode", digit)
            if not resp.get("ok", True):
                raise self._error(f"sndcode {digit} refused: {resp}")
            time.sleep(gap_s)

    # --------------------------------------------------------------- events
    def events(self) -> list[Event]:
        """All events received so far (copies), oldest first."""
        with self._cond:
            return [dict(e) for e in self._events]

    def event_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events()]

    def wait_event(self, type_: str, timeout: float = 10.0, *, consume: bool = True) -> Event:
        """Return the oldest not yet consumed event of ``type_``, waiting up to ``timeout``.

        Events are consumed so that waiting twice for ``CALL_ESTABLISHED`` returns the
        events of two different calls. Raises RigError (with the log tail) on timeout.
        """

        def find() -> int | None:
            for i, e in enumerate(self._events):
                if i not in self._consumed and e.get("type") == type_:
                    return i
            return None

        with self._cond:
            found = self._cond.wait_for(lambda: find() is not None, timeout)
            if not found:
                seen = [e.get("type") for e in self._events]
                raise self._error(f"no {type_} event within {timeout:.1f}s (events so far: {seen})")
            idx = find()
            assert idx is not None
            if consume:
                self._consumed.add(idx)
            return dict(self._events[idx])

    def registration_state(self) -> str:
        """``"OK"``, ``"ERR"`` or ``""`` (no answer yet / no registrar), from ``reginfo``.

        baresip registers within ~0.1 s of starting, usually before the control
        connection is up, so the REGISTER_OK event of the first registration is often
        missed; the ``reginfo`` command is the reliable source.
        """
        data = _ANSI.sub("", str(self.command("reginfo").get("data", "")))
        for line in data.splitlines():
            if line.startswith(">") or f"sip:{self.account.user}@" in line:
                fields = line.split()
                for token in ("OK", "ERR"):
                    if token in fields:
                        return token
        return ""

    def wait_registered(self, timeout: float = 10.0) -> None:
        """Wait until ``reginfo`` says OK (or a REGISTER_OK event arrives); fail fast on ERR."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.registration_state()
            if state == "OK":
                return
            with self._cond:
                for e in self._events:
                    if e.get("type") == "REGISTER_FAIL":
                        raise self._error(f"registration failed: {e.get('param')}")
            if state == "ERR":
                raise self._error("registration failed (reginfo says ERR)")
            if time.monotonic() >= deadline:
                raise self._error(f"not registered within {timeout:.1f}s")
            time.sleep(0.05)

    def wait_registration_failed(self, timeout: float = 10.0) -> None:
        """Wait until the registrar rejected this UA (e.g. wrong password)."""
        deadline = time.monotonic() + timeout
        while self.registration_state() != "ERR":
            if time.monotonic() >= deadline:
                raise self._error(f"registration did not fail within {timeout:.1f}s")
            time.sleep(0.05)

    def wait_call_established(self, timeout: float = 10.0) -> Event:
        return self.wait_event("CALL_ESTABLISHED", timeout)

    def wait_call_closed(self, timeout: float = 10.0) -> Event:
        return self.wait_event("CALL_CLOSED", timeout)

    # ----------------------------------------------------------- recordings
    def recordings(self, wait_s: float = 2.0) -> tuple[Path, Path]:
        """(sent, received) WAV recordings of the last call: ``dump-*-enc.wav``, ``dump-*-dec.wav``.

        sndfile finalises the WAV headers when the call's audio stream is destroyed;
        read them after CALL_CLOSED (read_wav tolerates unfinalised headers anyway).
        """
        deadline = time.monotonic() + wait_s
        while True:
            enc = sorted(self.snd_dir.glob("dump-*-enc.wav"), key=lambda p: (p.stat().st_mtime, p.name))
            dec = sorted(self.snd_dir.glob("dump-*-dec.wav"), key=lambda p: (p.stat().st_mtime, p.name))
            if enc and dec:
                return enc[-1], dec[-1]
            if time.monotonic() >= deadline:
                raise self._error(f"no sndfile recordings in {self.snd_dir}")
            time.sleep(0.1)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _error(self, message: str) -> RigError:
        if self._proc is not None:
            return self._proc.error(message, lines=40)
        return RigError(f"baresip[{self.account.user}]: {message}; log:\n{tail(self.log_path, 40)}")


def source_duration(path: Path) -> float:
    """Length of a WAV in seconds (to pick ``call_duration_s``)."""
    return wav_duration(path)
