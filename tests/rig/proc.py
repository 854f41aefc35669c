"""Process plumbing shared by the rig: start a peer, keep its log, always stop it.

Every peer runs in its own session (process group) so that :meth:`ManagedProcess.stop`
can take down the children it forked (Kamailio forks workers) without touching any
other process on the machine. Output goes to a log file in the test's work dir; the
tail of that file is put into every error so a peer that fails to start explains
itself in the pytest report.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self


class StartStop:
    """`with peer:` starts it and always stops it, for every rig peer (start() returns self)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class RigError(RuntimeError):
    """A peer failed to start, or did not reach the expected state in time."""


def require_binary(name: str) -> str:
    """Absolute path of ``name`` on PATH (or /usr/sbin), or RigError saying how to install it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")
    if path is None:
        raise RigError(f"binary {name!r} not found; install it (see Makefile / docs)")
    return path


def tail(path: Path, lines: int = 60) -> str:
    """Last ``lines`` lines of a log file, or a note that it does not exist."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"<{path} does not exist>"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass
class ManagedProcess:
    """One external process with its log file; stop() is idempotent and kills the whole group."""

    name: str
    argv: Sequence[str]
    log_path: Path
    cwd: Path | None = None
    env: dict[str, str] | None = None
    stdin_devnull: bool = True
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        """Start the process; stdout and stderr both go to :attr:`log_path` (appended)."""
        if self.popen is not None and self.popen.poll() is None:
            raise RigError(f"{self.name} already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL if self.stdin_devnull else subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Signal the process group, wait, then SIGKILL the group if it is still there."""
        if self.popen is None:
            return None
        pgid = self.popen.pid  # start_new_session: the group id is our child's pid
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        # Children of the leader (Kamailio workers) may outlive it for a moment.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(timeout=timeout)
        return self.popen.returncode

    def error(self, message: str, lines: int = 60) -> RigError:
        """A RigError with the log tail appended, for failures to start or to converge."""
        state = "running" if self.running() else f"exited with {self.returncode()}"
        return RigError(
            f"{self.name}: {message} (process {state}); log {self.log_path}:\n{tail(self.log_path, lines)}"
        )
