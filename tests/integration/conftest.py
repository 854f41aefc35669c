"""Fixtures that start the real gateway process next to the real peers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import attach_log
from tests.rig.gateway import GatewayError, GatewayProcess
from tests.rig.sipp import SippResult, run_sipp

SCENARIOS = Path(__file__).parent / "scenarios"


def run_sipp_refused(gw: GatewayProcess, code: int, workdir: Path, timeout: float = 10) -> SippResult:
    """One INVITE (a plain G.711 offer) to the gateway that must be refused with ``code`` (486, 403, 503...)."""
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir.with_name(f"{workdir.name}-expect-{code}.xml")  # beside SIPp's work dir, not in it
    scenario.write_text((SCENARIOS / "expect_refusal.xml").read_text().replace("[refusal]", str(code)))
    return run_sipp(scenario, f"127.0.0.1:{gw.sip_port}", workdir, service="voicegate", timeout=timeout)


@pytest.fixture
def gateway_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., GatewayProcess]]:
    """``gateway_factory(config, env=None, command="run", extra_args=(), wait=True) -> GatewayProcess``."""
    started: list[GatewayProcess] = []

    def make(config: dict[str, Any], env: dict[str, str] | None = None, command: str = "run",
             extra_args: tuple[str, ...] = (), wait: bool = True) -> GatewayProcess:
        gw = GatewayProcess(tmp_path / f"gateway{len(started)}", config, env or {}, command, extra_args)
        started.append(gw)
        gw.start()
        attach_log(request, f"voicegate{len(started) - 1}", gw.log_path)
        if wait and command == "run":
            gw.wait_ready()
        return gw

    yield make
    failures: list[GatewayError] = []
    for gw in reversed(started):  # every one, even when one fails to stop: none may outlive the test
        if gw.process is not None and gw.process.poll() is None:
            try:
                gw.stop()
            except GatewayError as exc:  # killed by then; reported below
                failures.append(exc)
    # pjsua2 aborts the process when one of its objects is released on another thread: the gateway
    # logs each such release first (SipStack.released), and any of them fails the test.
    off_thread = [e for gw in started for e in gw.find("pjsua2_released_off_sip_thread")]
    assert not off_thread, f"pjsua2 objects released off the SIP thread: {off_thread}"
    if failures:
        raise failures[0]
