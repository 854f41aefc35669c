"""SIPp runs: scripted SIP callers/callees with exact control over every message.

* :func:`run_sipp_uac_pcap` - the built-in ``uac_pcap`` scenario: INVITE (PCMA + telephone
  -event offer), 8 s of G.711 A-law speech from SIPp's bundled pcap, DTMF '1' (RFC 2833),
  BYE. It reads ``pcap/g711a.pcap`` relative to its working directory, so the run dir
  gets a ``pcap`` symlink to /usr/share/sip-tester.
* :func:`run_sipp` - any scenario XML (for re-INVITE, REFER, CANCEL, malformed... tests).
* :class:`SippUas` - a background callee (built-in ``uas`` or custom XML).

Pitfalls: SIPp's built-in ``uac``/``uas`` scenarios abort the call on an unexpected
request such as a re-INVITE (the gateway's session refresh or hold); use a custom XML
for those. Built-in scenarios also ignore Record-Route: their ACK/BYE go to the
remote address with the AOR as R-URI (the rig's Kamailio routes them via the
location table so calls through the proxy still work). SIPp's exit code is 0 only if
every call succeeded (1: some failed, 97/99: ended without completing, 255/254: fatal).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.rig.ports import HOST, free_port_pair, free_udp_port
from tests.rig.proc import ManagedProcess, RigError, StartStop, require_binary, tail, wait_until

SIPP_SHARE = Path("/usr/share/sip-tester")


@dataclass
class SippResult:
    """Outcome of one SIPp run: exit code, log files and the final statistics row."""

    returncode: int
    workdir: Path
    stdout_path: Path
    message_log: Path
    error_log: Path
    stats_path: Path
    stats: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    local_port: int = 0
    media_port: int = 0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def stat(self, name: str) -> int:
        """Integer value of a cumulative statistic, e.g. ``SuccessfulCall`` or ``FailedCall``."""
        for key in (f"{name}(C)", name):
            if key in self.stats and self.stats[key].strip():
                return int(float(self.stats[key]))
        raise KeyError(name)

    @property
    def successful_calls(self) -> int:
        return self.stat("SuccessfulCall")

    @property
    def failed_calls(self) -> int:
        return self.stat("FailedCall")

    def messages(self) -> str:
        """Every SIP message SIPp sent and received (``-trace_msg``)."""
        return _read(self.message_log)

    def sip_messages(self) -> list[SippMessage]:
        return parse_message_log(self.messages())

    def errors(self) -> str:
        return _read(self.error_log)

    def describe(self) -> str:
        """Human summary for assertion messages."""
        return (
            f"sipp exit {self.returncode} in {self.duration_s:.1f}s (workdir {self.workdir})\n"
            f"--- stdout tail:\n{tail(self.stdout_path, 30)}\n--- errors:\n{self.errors()[-3000:]}\n"
            f"--- messages tail:\n{self.messages()[-4000:]}"
        )


@dataclass(frozen=True)
class SippMessage:
    """One SIP message from SIPp's ``-trace_msg`` log, as SIPp sent or received it."""

    direction: str  # "sent" | "received"
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def status(self) -> int | None:
        """Status code of a response, None for a request."""
        parts = self.first_line.split()
        if len(parts) >= 2 and parts[0] == "SIP/2.0" and parts[1].isdigit():
            return int(parts[1])
        return None

    @property
    def method(self) -> str:
        """Request method, or the CSeq method of a response."""
        if self.status is None:
            return self.first_line.split(" ", 1)[0]
        return self.cseq_method

    @property
    def cseq_method(self) -> str:
        for line in self.text.splitlines():
            if line.lower().startswith("cseq:"):
                return line.split()[-1]
        return ""

    def header(self, name: str) -> str | None:
        prefix = name.lower() + ":"
        for line in self.text.splitlines():
            if line.lower().startswith(prefix):
                return line.split(":", 1)[1].strip()
        return None


def parse_message_log(text: str) -> list[SippMessage]:
    """Split a ``-trace_msg`` log into messages (blocks start with a dashed date line)."""
    out: list[SippMessage] = []
    for block in re.split(r"^-{20,} .*$", text, flags=re.M):
        block = block.strip("\n")
        m = re.match(r"\s*(UDP|TCP|TLS|SCTP) message (sent|received)[^\n]*\n+", block)
        if m:
            out.append(SippMessage(m.group(2), block[m.end() :].strip() + "\n"))
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _parse_stats(path: Path) -> dict[str, str]:
    """Last row of SIPp's ``-trace_stat`` CSV (semicolon separated) as a dict."""
    text = _read(path)
    rows = list(csv.reader([line for line in text.splitlines() if line.strip()], delimiter=";"))
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {h: v for h, v in zip(header, last, strict=False) if h}


def _over_tcp(args: Sequence[str]) -> bool:
    """SIPp's ``-t t1``/``-t tn``: it listens on TCP instead of UDP."""
    return any(a == "-t" and b.startswith("t") for a, b in zip(args, args[1:], strict=False))


def _prepare_workdir(workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    link = workdir / "pcap"
    if not link.exists():
        link.symlink_to(SIPP_SHARE)


def _common_args(workdir: Path, name: str, local_port: int, media_port: int) -> list[str]:
    return [
        "-i",
        HOST,
        "-p",
        str(local_port),
        "-mi",
        HOST,
        "-mp",
        str(media_port),
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(workdir / f"{name}.messages.log"),
        "-trace_err",
        "-error_file",
        str(workdir / f"{name}.errors.log"),
        "-trace_stat",
        "-stf",
        str(workdir / f"{name}.stats.csv"),
        "-fd",
        "1",
    ]


def run_sipp(
    scenario: str | Path,
    target: str | None,
    workdir: Path,
    *,
    service: str | None = None,
    local_port: int = 0,
    media_port: int = 0,
    calls: int = 1,
    timeout: float = 30.0,
    extra_args: Sequence[str] = (),
    name: str = "sipp",
) -> SippResult:
    """Run SIPp in the foreground until it exits (or ``timeout`` seconds pass).

    ``scenario`` is a path to an XML file, or ``"sn:NAME"`` for a built-in scenario
    (``uac``, ``uac_pcap``, ``uas``...). ``target`` is ``host:port`` (None for a UAS).
    ``service`` fills ``[service]`` (the R-URI user / extension dialled).
    """
    binary = require_binary("sipp")
    workdir = Path(workdir)
    _prepare_workdir(workdir)
    local_port = local_port or free_udp_port()
    media_port = media_port or free_port_pair(span=4)  # SIPp binds audio and video pairs
    argv = [binary]
    scenario_s = str(scenario)
    if scenario_s.startswith("sn:"):
        argv += ["-sn", scenario_s[3:]]
    else:
        argv += ["-sf", str(Path(scenario).resolve())]
    if target:
        argv.append(target)
    if service is not None:
        argv += ["-s", service]
    argv += _common_args(workdir, name, local_port, media_port)
    argv += ["-m", str(calls), "-timeout", f"{max(1, int(timeout))}s", "-timeout_error"]
    argv += list(extra_args)
    stdout_path = workdir / f"{name}.stdout.log"
    t0 = time.monotonic()
    with stdout_path.open("wb") as out:
        out.write(f"=== {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            rc = proc.wait()
    return SippResult(
        returncode=rc,
        workdir=workdir,
        stdout_path=stdout_path,
        message_log=workdir / f"{name}.messages.log",
        error_log=workdir / f"{name}.errors.log",
        stats_path=workdir / f"{name}.stats.csv",
        stats=_parse_stats(workdir / f"{name}.stats.csv"),
        duration_s=time.monotonic() - t0,
        local_port=local_port,
        media_port=media_port,
    )


def run_sipp_uac_pcap(
    target_host_port: str,
    service: str,
    workdir: Path,
    local_port: int = 0,
    timeout: float = 30.0,
    media_port: int = 0,
) -> SippResult:
    """One call with the built-in ``uac_pcap`` scenario (~9.5 s: 8 s speech, DTMF '1', BYE)."""
    return run_sipp(
        "sn:uac_pcap",
        target_host_port,
        workdir,
        service=service,
        local_port=local_port,
        media_port=media_port,
        timeout=timeout,
        name="uac_pcap",
    )


def udp_port_bound(port: int, host: str = HOST) -> bool:
    """True if some process has ``host:port`` (UDP) bound, judged from /proc/net/udp."""
    return _port_in_table("/proc/net/udp", port, host)


def tcp_port_listening(port: int, host: str = HOST) -> bool:
    """True if some process listens on ``host:port`` (TCP), judged from /proc/net/tcp (state 0A)."""
    return _port_in_table("/proc/net/tcp", port, host, state="0A")


def _port_in_table(table: str, port: int, host: str, state: str | None = None) -> bool:
    hexport = f"{port:04X}"
    hexhost = "".join(f"{int(o):02X}" for o in reversed(host.split(".")))
    try:
        lines = Path(table).read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        h, p = fields[1].split(":")
        if p == hexport and h in (hexhost, "00000000") and state in (None, fields[3]):
            return True
    return False


@dataclass
class SippUas(StartStop):
    """A background SIPp callee on ``127.0.0.1:port``; context manager.

    Default is the built-in ``uas`` scenario (answers INVITE with 200 + SDP, waits for
    BYE; it has no media and aborts the call on a re-INVITE). Pass ``scenario`` for a
    custom XML. ``rtp_echo`` echoes RTP received on ``media_port`` back to its sender.
    """

    workdir: Path
    scenario: str | Path = "sn:uas"
    port: int = 0
    media_port: int = 0
    rtp_echo: bool = False
    max_calls: int = 0  # 0: run until stopped
    extra_args: Sequence[str] = ()
    name: str = "uas"
    _proc: ManagedProcess | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.port = self.port or free_udp_port()
        self.media_port = self.media_port or free_port_pair(span=4)  # SIPp binds audio and video pairs

    @property
    def hostport(self) -> str:
        return f"{HOST}:{self.port}"

    def uri(self, user: str = "uas") -> str:
        return f"sip:{user}@{HOST}:{self.port}"

    @property
    def message_log(self) -> Path:
        return self.workdir / f"{self.name}.messages.log"

    @property
    def stats_path(self) -> Path:
        return self.workdir / f"{self.name}.stats.csv"

    def start(self) -> SippUas:
        binary = require_binary("sipp")
        _prepare_workdir(self.workdir)
        argv = [binary]
        scenario_s = str(self.scenario)
        if scenario_s.startswith("sn:"):
            argv += ["-sn", scenario_s[3:]]
        else:
            argv += ["-sf", str(Path(self.scenario).resolve())]
        argv += _common_args(self.workdir, self.name, self.port, self.media_port)
        if self.rtp_echo:
            argv.append("-rtp_echo")
        if self.max_calls:
            argv += ["-m", str(self.max_calls)]
        argv += list(self.extra_args)
        self._proc = ManagedProcess(
            f"sipp-{self.name}", argv, self.workdir / f"{self.name}.stdout.log", cwd=self.workdir
        )
        self._proc.start()
        bound = tcp_port_listening if _over_tcp(self.extra_args) else udp_port_bound
        if not wait_until(lambda: bound(self.port) or not self._running(), 5.0):
            self.stop()
            raise self._proc.error(f"did not bind {self.hostport}")
        if not self._running():
            raise self._proc.error("exited during startup")
        return self

    def _running(self) -> bool:
        return self._proc is not None and self._proc.running()

    def stop(self) -> int | None:
        """Stop SIPp; returns its exit code (None if never started)."""
        if self._proc is None:
            return None
        return self._proc.stop(timeout=3.0)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for SIPp to exit by itself (``max_calls`` reached)."""
        if self._proc is None or self._proc.popen is None:
            raise RigError("SippUas not started")
        return self._proc.popen.wait(timeout=timeout)

    def messages(self) -> str:
        """Every SIP message this UAS sent and received so far (``-trace_msg``)."""
        return _read(self.message_log)

    def sip_messages(self) -> list[SippMessage]:
        return parse_message_log(self.messages())

    def wait_message(
        self, method: str, *, status: int | None = None, direction: str | None = None, timeout: float = 10.0
    ) -> SippMessage:
        """Wait for a request ``method`` (``status=None``) or a response to it (``status=200``).

        E.g. ``wait_message("BYE", status=200, direction="sent")``: the UAS answered the
        BYE. SIPp writes its message log as it goes, so this works while it runs (its
        statistics CSV is only rewritten every second, ``-fd 1``, and at exit).
        """
        found: list[SippMessage] = []

        def check() -> bool:
            for msg in self.sip_messages():
                if msg.method == method and msg.status == status and direction in (None, msg.direction):
                    found.append(msg)
                    return True
            return False

        if not wait_until(check, timeout, 0.1):
            assert self._proc is not None
            raise self._proc.error(f"no {method} {status or ''} ({direction}) in {self.message_log}")
        return found[0]

    def stats(self) -> dict[str, str]:
        return _parse_stats(self.stats_path)

