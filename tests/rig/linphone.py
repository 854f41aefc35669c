"""linphone (linphonec: belle-sip + mediastreamer2) as a second, independent softphone for the rig.

baresip (tests/rig/baresip.py) and SIPp share no code with pjsip, and neither does linphone: its
SIP stack (belle-sip) and media engine (mediastreamer2) are a third implementation, the one many
desk and mobile phones run. Interop tests call the gateway from it and have the gateway call it.

Driven the way a person would drive ``linphonec``: commands on its stdin, one a line, and its
console output (in the log file) read back. Audio never touches a sound card:
``soundcard use files`` makes mediastreamer2 read the microphone from ``play <wav>`` and write
the loudspeaker to ``record <wav>`` (8 kHz mono 16-bit WAV here).

What this version (5.1.65, Debian 12's ``linphone-cli``) does, found by trying it:

* Its configuration is an ini file (``-c``). ``[sip] sip_port`` is the UDP port; ``sip_tcp_port``
  and ``sip_tls_port`` 0 turn TCP and TLS off (the rig's Kamailio takes UDP only unless asked);
  ``[rtp] audio_rtp_port`` pins the RTP port.
* It needs ``$HOME/.local/share/linphone`` to exist: without it the core cannot open its call
  history database and never brings its SIP listening point up, silently on the console (a
  ``register`` then fails with "No listening point matching"). Even with it the listening point
  comes ~0.1 s after the first prompt, so :meth:`start` waits until the SIP port is bound.
* Its stdout is a file here, and glibc buffers it: ``stdbuf -oL`` makes each line appear as printed.
* ``register <identity> <proxy> <password>`` registers, but prints nothing on success: the
  account's state is read from liblinphone's own log (``-d 5 -l``, ``to [LinphoneRegistrationOk]``).
* ``-a`` answers incoming calls by itself, ``-S`` prints call states: ``Receiving new incoming call
  from <uri>, assigned id <n>``, ``Call <n> with <uri> connected.``, ``Call <n> with <uri> ended
  (No error).``. ``call <uri>`` dials, ``terminate`` hangs up.
* ``play``/``record`` (file mode) apply to the streams of calls made after them: set before the call.
  The recording holds what came from the far end only (a round trip late when the far end echoes).
* The ``--pipe`` control socket has one fixed path per user (``/tmp/linphonec-<uid>``): two
  instances (or two test runs) would share it; stdin has no such clash.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tests.rig.audio import make_silence_wav, pad_wav
from tests.rig.ports import HOST, free_port_pair, free_sip_port
from tests.rig.proc import ManagedProcess, RigError, StartStop, require_binary, tail

PROMPT = re.compile(r"linphonec> ")
REGISTERED = re.compile(r"to \[LinphoneRegistrationOk\]")
REGISTRATION_FAILED = re.compile(r"to \[LinphoneRegistrationFailed\]")
CONNECTED = re.compile(r"Call (\d+) with (\S+) connected")
ENDED = re.compile(r"Call (\d+) with (\S+) (ended|error)|Call (\d+) .*(ended|terminated)")


@dataclass
class Linphone(StartStop):
    """One linphonec process with one account; plays `source_wav` on every call and records what it hears.

    With ``registrar`` (``host:port`` of Kamailio) :meth:`register` registers the account there;
    without, it is reached directly at :attr:`contact_uri`. ``auto_answer`` picks up incoming calls.
    """

    workdir: Path
    user: str
    password: str | None = "secret"
    registrar: str | None = None
    domain: str = HOST
    source_wav: Path | None = None
    call_duration_s: float = 30.0
    auto_answer: bool = True
    sip_port: int = 0
    rtp_port: int = 0
    start_timeout: float = 20.0
    _proc: ManagedProcess | None = field(default=None, init=False, repr=False)
    _seen: dict[Path, int] = field(default_factory=lambda: defaultdict(int), init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        if not self.sip_port:
            self.sip_port = free_sip_port()
        if not self.rtp_port:
            self.rtp_port = free_port_pair(30000, 32000)

    @property
    def config_path(self) -> Path:
        return self.workdir / "linphonerc"

    @property
    def log_path(self) -> Path:
        return self.workdir / "linphonec.log"

    @property
    def debug_log_path(self) -> Path:
        """liblinphone's own log (SIP messages, media): what to read when the console says too little."""
        return self.workdir / "liblinphone.log"

    @property
    def played_wav(self) -> Path:
        return self.workdir / "source.wav"

    @property
    def recording(self) -> Path:
        """What linphone heard on its last call (mediastreamer2's file recorder)."""
        return self.workdir / "received.wav"

    @property
    def contact_uri(self) -> str:
        return f"sip:{self.user}@{HOST}:{self.sip_port}"

    def write_config(self) -> None:
        # liblinphone stops starting up (no SIP listening point, nothing logged on the console)
        # when it cannot create its call-history database there.
        (self.workdir / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        if self.source_wav is None:
            make_silence_wav(self.played_wav, self.call_duration_s)
        else:
            pad_wav(self.source_wav, self.played_wav, total_s=self.call_duration_s)
        self.config_path.write_text(
            "[sip]\n"
            f"sip_port={self.sip_port}\nsip_tcp_port=0\nsip_tls_port=0\n"
            f"bind_address={HOST}\n"
            "guess_hostname=1\nregister_only_when_network_is_up=0\n"
            "[net]\n"
            "nat_policy_ref=\nfirewall_policy=0\nmtu=0\n"
            "[rtp]\n"
            f"audio_rtp_port={self.rtp_port}\naudio_jitt_comp=60\n"
            "[sound]\n"
            "echocancellation=0\nagc=0\n"
            "[video]\n"
            "enabled=0\ncapture=0\ndisplay=0\nautomatically_initiate=0\nautomatically_accept=0\n"
        )

    def start(self) -> Linphone:
        binary = require_binary("linphonec")
        self.write_config()
        # Its stdout is a file: without stdbuf, glibc would hold the call-state lines in its buffer.
        argv = [require_binary("stdbuf"), "-oL", "-eL", binary, "-c", str(self.config_path),
                "-d", "5", "-l", str(self.debug_log_path)]
        if self.auto_answer:
            argv.append("-a")
        argv.append("-S")  # call state changes on the console
        # Its own HOME: linphonec keeps a call log and chat database beside the config.
        env = {"HOME": str(self.workdir), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        self._proc = ManagedProcess(f"linphonec[{self.user}]", argv, self.log_path, cwd=self.workdir, env=env,
                                    stdin_devnull=False)
        self._proc.start()
        try:
            self.wait_for(PROMPT, self.start_timeout)
            self._wait_listening(self.start_timeout)
            self.send("soundcard use files")
            self.send(f"play {self.played_wav.resolve()}")
            self.send(f"record {self.recording.resolve()}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """``quit`` (linphonec unregisters and ends its call), then the process group is signalled."""
        proc = self._proc
        if proc is None:
            return
        popen = proc.popen
        if proc.running() and popen is not None:
            with contextlib.suppress(OSError, RigError, subprocess.TimeoutExpired):
                self.send("quit")
                popen.wait(timeout=3)
        if popen is not None and popen.stdin is not None:
            with contextlib.suppress(OSError):
                popen.stdin.close()
        proc.stop(timeout=3.0)

    def _wait_listening(self, timeout: float) -> None:
        """Until its SIP port is bound: the core brings the network up after the prompt, and a
        ``register`` sent before fails ("No listening point matching")."""
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind((HOST, self.sip_port))
                except OSError:
                    return
            if time.monotonic() >= deadline:
                raise self._error(f"SIP port {self.sip_port}/udp not bound within {timeout:.0f} s")
            time.sleep(0.05)

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    # -------------------------------------------------------------- control
    def send(self, command: str) -> None:
        """One console command (a line on linphonec's stdin)."""
        if self._proc is None or self._proc.popen is None or self._proc.popen.stdin is None:
            raise RigError("linphonec not started")
        if not self._proc.running():
            raise self._error(f"exited before {command.split()[0]!r}")
        self._proc.popen.stdin.write((command + "\n").encode())
        self._proc.popen.stdin.flush()

    def register(self, timeout: float = 15.0) -> None:
        """Register ``user`` at the registrar; waits for linphone's "successful"."""
        if self.registrar is None:
            raise RigError("no registrar configured")
        self.send(f"register sip:{self.user}@{self.domain} sip:{self.registrar} {self.password or ''}".rstrip())
        line = self.wait_for(re.compile(f"{REGISTERED.pattern}|{REGISTRATION_FAILED.pattern}"), timeout,
                             debug_log=True)
        if REGISTRATION_FAILED.search(line):
            raise self._error(f"registration failed: {line}")

    def call(self, uri: str) -> None:
        self.send(f"call {uri}")

    def terminate(self) -> None:
        self.send("terminate")

    def wait_connected(self, timeout: float = 15.0) -> str:
        return self.wait_for(CONNECTED, timeout)

    def wait_ended(self, timeout: float = 15.0) -> str:
        return self.wait_for(ENDED, timeout)

    def wait_for(self, pattern: re.Pattern[str], timeout: float, debug_log: bool = False) -> str:
        """The first line after the last match that matches `pattern` (waits up to `timeout`), on the
        console or (`debug_log`) in liblinphone's log."""
        deadline = time.monotonic() + timeout
        path = self.debug_log_path if debug_log else self.log_path
        while True:
            text = _read(path)
            match = pattern.search(text, self._seen[path])
            if match is not None:
                self._seen[path] = match.end()
                start = text.rfind("\n", 0, match.start()) + 1
                end = text.find("\n", match.end())
                return text[start:] if end < 0 else text[start:end]
            if self._proc is not None and not self._proc.running():
                raise self._error(f"exited while waiting for {pattern.pattern!r}")
            if time.monotonic() >= deadline:
                raise self._error(f"no {pattern.pattern!r} within {timeout:.0f} s")
            time.sleep(0.05)

    def log_text(self) -> str:
        return _read(self.log_path)

    def _error(self, message: str) -> RigError:
        if self._proc is not None:
            return self._proc.error(message, lines=40)
        return RigError(f"linphonec[{self.user}]: {message}; log:\n{tail(self.log_path, 40)}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
