"""Several gateways behind one Kamailio with the dispatcher module: calls are spread, a dead gateway is skipped.

Kamailio runs ``configs/kamailio-dispatcher.cfg`` itself, the example operators copy, with only its
``#!define`` values overridden (listen address, dispatcher.list, a 1 s probe interval and a 1 s
transaction timeout so failover is quick), so the test fails when the example stops working.
Two echo-agent gateways (no models) with separate RTP port ranges are set 1 of dispatcher.list.
Which gateway took a call is read from the gateways' own logs, matched by SIP Call-ID.

SIPp's built-in ``uac_pcap`` ignores Record-Route, so its ACK and BYE take the example's
Call-ID fallback in ``route[WITHINDLG]`` rather than ``loose_route()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import attach_log, require_binaries
from tests.rig.gateway import GatewayProcess, gateway_config
from tests.rig.kamailio import Kamailio
from tests.rig.proc import wait_until
from tests.rig.sipp import SippResult, run_sipp_uac_pcap

EXAMPLE_CFG = Path(__file__).parents[2] / "configs" / "kamailio-dispatcher.cfg"
RTP_RANGES = ((42000, 42199), (42200, 42399))
SERVICE = "7000"  # any number: the gateways have no routes, the default (echo) agent answers


@dataclass
class DispatcherKamailio(Kamailio):
    """The rig's Kamailio process handling (start, readiness, JSON-RPC, log), running the example config.

    The example is written to the work dir unchanged except for ``#!define`` lines inserted after its
    ``#!KAMAILIO`` header; its ``#!ifndef`` guards let these win over the production defaults.
    """

    gateways: tuple[str, ...] = ()  # "host:port" of each voicegate, dispatcher set 1
    ping_interval_s: int = 1
    fr_timer_ms: int = 1000

    @property
    def dispatcher_list(self) -> Path:
        return self.workdir / "dispatcher.list"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        assert self._rundir is not None
        rows = [f"1 sip:{gw} 0 0 duid=vg{i}" for i, gw in enumerate(self.gateways, start=1)]
        self.dispatcher_list.write_text("# voicegate instances (set 1)\n" + "\n".join(rows) + "\n")
        defines = {
            "LISTEN": f"udp:{self.host}:{self.port}",
            "DISPATCHER_LIST": f'"{self.dispatcher_list.resolve()}"',
            "RUN_DIR": f'"{self._rundir}"',
            "RPC_SOCKET": f'"{self._rundir / "rpc.sock"}"',  # where Kamailio.rpc() looks
            "CHILDREN": "2",
            "PING_INTERVAL": str(self.ping_interval_s),
            "FR_TIMER": str(self.fr_timer_ms),
        }
        header, _, body = EXAMPLE_CFG.read_text().partition("\n")
        assert header.startswith("#!KAMAILIO"), "the example must start with #!KAMAILIO"
        lines = [header, "# Test overrides from tests/integration/test_dispatcher.py"]
        lines += [f"#!define {name} {value}" for name, value in defines.items()]
        self.cfg_path.write_text("\n".join(lines) + "\n" + body)

    def gateway_states(self) -> dict[str, str]:
        """``dispatcher.list`` as {"127.0.0.1:port": flags}; flags "AP" active, "IP" inactive (both probed)."""
        states: dict[str, str] = {}
        for record in (self.rpc("dispatcher.list") or {}).get("RECORDS", []):
            for target in record.get("SET", {}).get("TARGETS", []):
                dest = target.get("DEST", {})
                states[str(dest.get("URI", "")).removeprefix("sip:")] = str(dest.get("FLAGS", ""))
        return states

    def wait_states(self, expected: dict[str, str], timeout: float) -> None:
        """Wait until each gateway in ``expected`` has that state letter (A, I, T...)."""

        def matches() -> bool:
            states = self.gateway_states()
            return all(states.get(gw, "")[:1] == letter for gw, letter in expected.items())

        if not wait_until(matches, timeout, 0.1):
            raise AssertionError(f"dispatcher states {self.gateway_states()} never matched {expected} in {timeout}s")


@dataclass
class Cluster:
    kamailio: DispatcherKamailio
    gateways: list[GatewayProcess]
    tmp_path: Path

    def address(self, gw: GatewayProcess) -> str:
        return f"127.0.0.1:{gw.sip_port}"

    def place_calls(self, n: int, label: str, stagger_s: float = 0.3) -> list[SippResult]:
        """``n`` SIPp calls (8 s of audio each) through Kamailio at once, so ``n`` calls take ~10 s, not n * 10 s.

        The small stagger keeps the INVITEs in a fixed order for the round robin.
        """
        results: list[SippResult | None] = [None] * n

        def call(i: int) -> None:
            workdir = self.tmp_path / f"sipp-{label}{i}"
            results[i] = run_sipp_uac_pcap(self.kamailio.hostport, SERVICE, workdir, timeout=30)

        threads = [threading.Thread(target=call, args=(i,), name=f"sipp-{label}{i}") for i in range(n)]
        for t in threads:
            t.start()
            time.sleep(stagger_s)
        for t in threads:
            t.join(60)
        assert all(r is not None for r in results), "a SIPp run did not return"
        return [r for r in results if r is not None]

    def answered_by(self, result: SippResult) -> list[int]:
        """Indexes of the gateways that logged ``call_incoming`` for this SIPp call (exactly one if routed well)."""
        call_id = _call_id(result)
        return [i for i, gw in enumerate(self.gateways) if gw.find("call_incoming", call_id=call_id)]

    def wait_ended(self, results: list[SippResult], timeout: float = 10.0) -> None:
        """Wait for each call's ``call_ended`` on the gateway that took it (SIPp may exit just before)."""
        for result in results:
            for i in self.answered_by(result):
                ended = self.gateways[i].wait_log("call_ended", timeout=timeout, call_id=_call_id(result))
                assert ended["reason"].startswith("remote_bye"), ended
                assert ended["rtp_received"] > 200, ended  # the audio went through the chosen gateway


def _call_id(result: SippResult) -> str:
    invite = next(m for m in result.sip_messages() if m.direction == "sent" and m.method == "INVITE")
    call_id = invite.header("Call-ID")
    assert call_id, invite.text
    return call_id


@pytest.fixture
def cluster_factory(
    gateway_factory: Callable[..., GatewayProcess], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Cluster]]:
    """``cluster_factory(ping_interval_s=1) -> Cluster``: two echo gateways, then Kamailio dispatching to both.

    The gateways start side by side (half the wait); Kamailio starts once both are ready and the
    cluster is handed out once the dispatcher has both gateways active.
    """
    require_binaries("kamailio", "sipp")
    started: list[DispatcherKamailio] = []

    def make(ping_interval_s: int = 1) -> Cluster:
        configs: list[dict[str, Any]] = [gateway_config(port_range=r) for r in RTP_RANGES]
        gateways = [gateway_factory(c, wait=False) for c in configs]
        for gw in gateways:
            gw.wait_ready()
        kam = DispatcherKamailio(
            tmp_path / f"kamailio{len(started)}",
            users={},
            gateways=tuple(f"127.0.0.1:{gw.sip_port}" for gw in gateways),
            ping_interval_s=ping_interval_s,
        )
        started.append(kam)
        attach_log(request, f"kamailio dispatcher{len(started) - 1}", kam.log_path)
        kam.start()
        cluster = Cluster(kam, gateways, tmp_path)
        kam.wait_states({cluster.address(gw): "A" for gw in gateways}, timeout=5)
        return cluster

    yield make
    for kam in reversed(started):
        kam.close()


def test_calls_are_spread_over_both_gateways(cluster_factory: Callable[..., Cluster]) -> None:
    cluster = cluster_factory()
    results = cluster.place_calls(4, "spread")
    for result in results:
        assert result.ok, result.describe()
    owners = [cluster.answered_by(r) for r in results]
    assert all(len(o) == 1 for o in owners), f"each call must land on exactly one gateway: {owners}"
    per_gateway = [sum(o == [i] for o in owners) for i in range(len(cluster.gateways))]
    assert all(n >= 1 for n in per_gateway), f"calls per gateway {per_gateway}: not spread"
    cluster.wait_ended(results)
    for gw in cluster.gateways:
        assert not gw.errors(), gw.errors()


def test_a_call_sent_to_a_dead_gateway_is_retried_on_the_next(cluster_factory: Callable[..., Cluster]) -> None:
    """The failure route alone: probes are too rare here to notice the dead gateway first."""
    cluster = cluster_factory(ping_interval_s=60)
    dead, survivor = cluster.gateways
    dead.stop()
    # Two INVITEs 0.3 s apart, both before the 1 s timeout of either: the round robin gives one of
    # them to the dead gateway, it times out there and failure_route sends it to the survivor.
    results = cluster.place_calls(2, "failover")
    for result in results:
        assert result.ok, result.describe()
    assert [cluster.answered_by(r) for r in results] == [[1], [1]]
    log = cluster.kamailio.log_text()
    assert f"gateway sip:{cluster.address(dead)} failed (408)" in log
    assert f"failover INVITE sip:{SERVICE}@{cluster.kamailio.hostport} to sip:{cluster.address(survivor)}" in log
    # The failed INVITE took the dead gateway out of rotation without waiting for a probe.
    cluster.kamailio.wait_states({cluster.address(dead): "I", cluster.address(survivor): "A"}, timeout=2)
    cluster.wait_ended(results)
    assert not survivor.errors(), survivor.errors()


def test_probes_take_a_dead_gateway_out_before_a_call_hits_it(cluster_factory: Callable[..., Cluster]) -> None:
    """OPTIONS probing alone: once the dead gateway is marked inactive, no call is even tried there."""
    cluster = cluster_factory(ping_interval_s=1)
    dead, survivor = cluster.gateways
    dead.stop()
    cluster.kamailio.wait_states({cluster.address(dead): "I", cluster.address(survivor): "A"}, timeout=5)
    assert f"dispatcher: gateway down: OPTIONS sip:{cluster.address(dead)}" in cluster.kamailio.log_text()
    results = cluster.place_calls(2, "after")  # two: the round robin would have offered one to the dead one
    for result in results:
        assert result.ok, result.describe()
    assert [cluster.answered_by(r) for r in results] == [[1], [1]]
    assert "failover INVITE" not in cluster.kamailio.log_text()
    assert not dead.find("call_incoming")
    cluster.wait_ended(results)
    assert not survivor.errors(), survivor.errors()
