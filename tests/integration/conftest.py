"""Fixtures that start the real gateway process next to the real peers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import attach_log
from tests.rig.gateway import GatewayProcess

SCENARIOS = Path(__file__).parent / "scenarios"


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
    for gw in reversed(started):
        if gw.process is not None and gw.process.poll() is None:
            gw.stop()
