"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temp data dir, loopback only.

Why this shape:

* the server refuses to run as root, and the tests run as root: it runs as the ``postgres``
  system user that Debian's package creates (``runuser -u postgres --``), in a temp dir that
  user owns (pytest's own tmp dirs are 0700 root, so they cannot hold it);
* it listens on 127.0.0.1 on a free port and puts its socket in the temp dir, so it never
  meets the machine's own cluster or another engineer's test run;
* ``fsync=off`` and friends: the data dies with the test run, durability is only time spent;
* the superuser logs in by ``trust`` over the socket (the fixture's own admin work), while the
  test role ``voicegate`` needs a password over TCP (``scram-sha-256``), so the DSN the gateway
  gets carries a password, as in production, and the tests can check it is never shown.

:meth:`PostgresServer.restart` (stop, then start on the same port and data) lets a test check
that a store survives its server going away.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.rig.ports import HOST, free_tcp_port
from tests.rig.proc import ManagedProcess, RigError, StartStop

ROLE = "voicegate"
PASSWORD = "pw-Zq8xK3vTe1"  # distinctive, so a test can grep logs and messages for it
_SYSTEM_USER = "postgres"
_READY_TIMEOUT_S = 30.0


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb and postgres, or None."""
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        with contextlib.suppress(ValueError):
            found.append((int(initdb.parent.parent.name), initdb.parent))
    for _, bin_dir in sorted(found, reverse=True):
        if (bin_dir / "postgres").exists():
            return bin_dir
    return None


def missing_postgres() -> str | None:
    """Why a server cannot be started here (binaries or system user missing), or None."""
    if postgres_bin_dir() is None:
        return "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
    try:
        pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        return f"system user {_SYSTEM_USER!r} missing (Debian's postgresql package creates it)"
    if shutil.which("runuser") is None:
        return "runuser not found (util-linux)"
    return None


class PostgresServer(StartStop):
    """One PostgreSQL cluster in a temp dir; :meth:`create_database` hands out fresh databases."""

    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RigError(missing_postgres() or "no PostgreSQL")
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="voicegate-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        self.port = free_tcp_port()
        self.log_path = self.root / "postgres.log"
        self._names = itertools.count(1)
        self._process: ManagedProcess | None = None
        self._role_created = False
        user = pwd.getpwnam(_SYSTEM_USER)
        self._uid, self._gid = user.pw_uid, user.pw_gid

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._init()
        argv = [*self._as_postgres(), str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-h", HOST, "-k", str(self.socket_dir),
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=60", "-c", "shared_buffers=32MB", "-c", "log_min_messages=warning"]
        self._process = ManagedProcess("postgres", argv, self.log_path)
        self._process.start()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self._process.running():
                raise self._process.error("exited during start-up")
            if self._ready():
                return self
            time.sleep(0.1)
        raise self._process.error(f"not accepting connections after {_READY_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster: open connections are cut, as in a crash or restart)."""
        if self._process is not None:
            self._process.stop(signal.SIGINT, timeout=15.0)
            self._process = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port and data."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---------------------------------------------------------------- databases

    def dsn(self, database: str, *, password: str | None = PASSWORD) -> str:
        """A libpq URI for the test role over TCP (``password=None``: none in the URI)."""
        auth = ROLE if password is None else f"{ROLE}:{password}"
        return f"postgresql://{auth}@{HOST}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database owned by the test role; returns its DSN (with the password)."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} OWNER {ROLE} TEMPLATE template0")
        return self.dsn(name)

    def admin(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the socket (psql); returns its output."""
        result = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
             "-p", str(self.port), "-U", _SYSTEM_USER, "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if result.returncode != 0:
            raise RigError(f"psql {sql!r}: {result.stderr.strip()}")
        return result.stdout

    # ---------------------------------------------------------------- internals

    def _as_postgres(self) -> list[str]:
        return ["runuser", "-u", _SYSTEM_USER, "--"]

    def _init(self) -> None:
        self.socket_dir.mkdir(parents=True)
        pwfile = self.root / "superuser.pw"
        pwfile.write_text("unused-superuser-password\n")
        for path in (self.root, self.socket_dir, pwfile):
            os.chown(path, self._uid, self._gid)
        os.chmod(self.root, 0o755)  # root's psql reaches the socket dir through it
        result = subprocess.run(
            [*self._as_postgres(), str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", _SYSTEM_USER,
             "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            raise RigError(f"initdb failed: {result.stdout}\n{result.stderr}")

    def _ready(self) -> bool:
        try:
            self.admin("SELECT 1")
        except (RigError, subprocess.TimeoutExpired):
            return False
        if not self._role_created:
            self.admin(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
            self._role_created = True
        return True
