"""Shared pytest fixtures: real SIP peers (Kamailio, baresip, SIPp, tshark) on 127.0.0.1.

Every peer a fixture starts is stopped by the fixture's finalizer, also when the test
fails. The logs of the peers a test used are attached to its report when it fails
(sections "rig log: ..."), so a peer that misbehaved explains itself.

A missing binary skips the test with a clear message on a developer machine, but
fails it under CI (``CI`` set), where the Makefile installs everything.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.rig.baresip import Baresip, BaresipAccount
from tests.rig.capture import Capture
from tests.rig.kamailio import DEFAULT_USERS, Kamailio
from tests.rig.postgres import PostgresServer, missing_postgres
from tests.rig.proc import tail
from tests.rig.sipp import SippUas

DEBIAN_PACKAGES = {
    "kamailio": "kamailio kamailio-extra-modules",
    "kamcmd": "kamailio",
    "baresip": "baresip",
    "sipp": "sip-tester",
    "sipsak": "sipsak",
    "tshark": "tshark",
    "espeak-ng": "espeak-ng",
    "sox": "sox",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "linphonec": "linphone-cli",
    "arecord": "alsa-utils",
    "aplay": "alsa-utils",
}

_LOGS_KEY = pytest.StashKey[list[tuple[str, Path]]]()


def require_binaries(*names: str) -> None:
    """Skip (or, under CI, fail) the current test if any of ``names`` is not installed."""
    missing = [
        n for n in names if shutil.which(n) is None and shutil.which(n, path="/usr/sbin:/sbin") is None
    ]
    if not missing:
        return
    packages = " ".join(sorted({DEBIAN_PACKAGES.get(n, n) for n in missing}))
    msg = (
        f"missing binaries: {', '.join(missing)} -- install with: "
        f"sudo DEBIAN_FRONTEND=noninteractive apt-get install -y {packages}"
    )
    if os.environ.get("CI"):
        pytest.fail(msg + " (CI is set: the Makefile should have installed them)", pytrace=False)
    pytest.skip(msg)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ is an integration test (real peers)."""
    for item in items:
        if f"{os.sep}integration{os.sep}" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach the tails of all rig logs of a failed test to its report."""
    report = yield
    if report.failed:
        for name, path in item.stash.get(_LOGS_KEY, []):
            report.sections.append((f"rig log: {name} ({path})", tail(path, 80)))
    return report


def attach_log(request: pytest.FixtureRequest, name: str, path: Path) -> None:
    """Register a log file to be shown if the current test fails."""
    request.node.stash.setdefault(_LOGS_KEY, []).append((name, path))


@pytest.fixture
def tmp_wav_dir(tmp_path: Path) -> Path:
    """Directory for WAV files a test generates (kept with the test's tmp dir)."""
    d = tmp_path / "wav"
    d.mkdir()
    return d


@pytest.fixture
def kamailio_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Kamailio]]:
    """``kamailio_factory(users={"2001": "pw"}, require_invite_auth=False, ...) -> Kamailio`` (started).

    Each call starts one more instance in its own work dir with its own port.
    """
    require_binaries("kamailio")
    started: list[Kamailio] = []

    def make(users: Mapping[str, str] | None = None, **kwargs: Any) -> Kamailio:
        workdir = tmp_path / f"kamailio{len(started)}"
        kam = Kamailio(workdir, users=dict(users if users is not None else DEFAULT_USERS), **kwargs)
        started.append(kam)
        attach_log(request, f"kamailio{len(started) - 1}", kam.log_path)
        kam.start()
        return kam

    yield make
    for kam in reversed(started):
        kam.close()


@pytest.fixture
def kamailio(kamailio_factory: Callable[..., Kamailio]) -> Kamailio:
    """A started Kamailio with extensions 2001, 2002, 2003 (password ``secret``)."""
    return kamailio_factory()


@pytest.fixture
def baresip_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Baresip]]:
    """``baresip_factory(user, password="secret", kamailio=None, ...) -> Baresip`` (started).

    With ``kamailio`` the UA registers there (use ``wait_registered()``); without it the
    account has no registrar and is reached directly at ``ua.contact_uri``. Other
    keywords: ``source_wav``, ``call_duration_s``, ``answermode`` ("auto"/"manual"),
    ``regint``, ``sip_trace``, ``audio_codecs``.
    """
    require_binaries("baresip")
    started: list[Baresip] = []

    def make(
        user: str,
        password: str | None = "secret",
        kamailio: Kamailio | None = None,
        *,
        answermode: str = "auto",
        regint: int = 300,
        audio_codecs: str = "PCMU,PCMA",
        account_extra: str = "",
        **kwargs: Any,
    ) -> Baresip:
        account = BaresipAccount(
            user=user,
            password=password,
            registrar=kamailio.hostport if kamailio is not None else None,
            regint=regint,
            answermode=answermode,
            audio_codecs=audio_codecs,
            extra=account_extra,
        )
        ua = Baresip(tmp_path / f"baresip-{user}-{len(started)}", account, **kwargs)
        started.append(ua)
        attach_log(request, f"baresip {user}", ua.log_path)
        ua.start()
        return ua

    yield make
    for ua in reversed(started):
        ua.stop()


@pytest.fixture
def sipp_uas_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., SippUas]]:
    """``sipp_uas_factory(scenario="sn:uas", rtp_echo=False, ...) -> SippUas`` (started)."""
    require_binaries("sipp")
    started: list[SippUas] = []

    def make(**kwargs: Any) -> SippUas:
        uas = SippUas(tmp_path / f"sipp-uas{len(started)}", **kwargs)
        started.append(uas)
        attach_log(request, f"sipp uas{len(started) - 1}", uas.workdir / f"{uas.name}.stdout.log")
        attach_log(request, f"sipp uas{len(started) - 1} messages", uas.message_log)
        uas.start()
        return uas

    yield make
    for uas in reversed(started):
        uas.stop()


@pytest.fixture
def capture_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Capture]]:
    """``capture_factory(ports=[...]) -> Capture`` (already capturing); stopped at teardown."""
    require_binaries("tshark")
    started: list[Capture] = []

    def make(ports: list[int] | tuple[int, ...] = (), **kwargs: Any) -> Capture:
        cap = Capture(tmp_path / f"capture{len(started)}.pcap", ports, **kwargs)
        started.append(cap)
        attach_log(request, f"tshark{len(started) - 1}", cap.log_path)
        cap.start()
        return cap

    yield make
    for cap in reversed(started):
        cap.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole run (see tests/rig/postgres.py).

    Skipped when the server binaries are missing on a developer machine; fails under CI, where
    ``make apt-deps`` installs Debian's ``postgresql``.
    """
    reason = missing_postgres()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: the Makefile should have installed it)", pytrace=False)
        pytest.skip(reason)
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for this test (CREATE DATABASE ... TEMPLATE template0); its DSN has a password."""
    return postgres_server.create_database()
