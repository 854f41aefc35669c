"""Measure what the campaign policy costs the campaign thread: a 10,000-contact campaign with
retries, calling hours in several time zones, a do-not-call table and the results kept in SQLite.

Run from the repository root::

    python bench/bench_campaign.py [--contacts 10000] [--dnc 100000]

The gateway is simulated (calls last 30 s of a virtual clock, a fifth of the numbers are busy on
their first attempt, a few are not found), so the figures are the scheduler's own work, the
do-not-call checks and the result writes, not SIP.  The campaign runs on a virtual clock
(`Campaign.run()` with injected clocks and sleep): CPU time is process time of the whole run.
Also timed: one do-not-call check against a table of `--dnc` numbers (p50/p99 over 2,000 checks),
and the results as JSON and CSV for every contact, and the resume after a restart (the campaign and
every contact read back from the store and the campaign rebuilt).
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gateway.calls.outcome  # noqa: E402, F401  (loaded in a running gateway: its import is not the campaign's cost)
from gateway.campaigns.book import CampaignBook  # noqa: E402
from gateway.campaigns.contacts import contacts_from_rows  # noqa: E402
from gateway.campaigns.dnc import DoNotCallList  # noqa: E402
from gateway.campaigns.outcomes import EndedCall  # noqa: E402
from gateway.campaigns.persist import CampaignArchive, load_kept  # noqa: E402
from gateway.campaigns.policy import read_policy  # noqa: E402
from gateway.campaigns.results import results_csv  # noqa: E402
from gateway.campaigns.scheduler import Campaign  # noqa: E402
from gateway.campaigns.storage import CampaignStorage  # noqa: E402
from gateway.console.campaign_page import snapshot  # noqa: E402
from gateway.console.campaigns import control_api, control_raw  # noqa: E402
from gateway.http_api import HttpApi  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.store import SqliteStore  # noqa: E402

ZONES = ("Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo")
START = 1_780_315_200.0  # Monday 2026-06-01 12:00 UTC
CALL_S = 30.0
OWNER = "bench-host:5080"


@dataclass
class VirtualClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return START + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SimulatedGateway:
    clock: VirtualClock
    busy: frozenset[str]
    missing: frozenset[str]
    ends: dict[str, tuple[float, str, int]] = field(default_factory=dict)
    tried: set[str] = field(default_factory=set)
    draining: bool = False

    def originate(self, to: str, agent: str | None, variables: Mapping[str, str], account: str | None) -> str:
        call_id = f"c{len(self.ends)}"
        first = to not in self.tried
        self.tried.add(to)
        code = 404 if to in self.missing else 486 if (to in self.busy and first) else 200
        self.ends[call_id] = (self.clock() + (0.5 if code != 200 else CALL_S), to, code)
        return call_id

    def ended_call(self, call_id: str) -> EndedCall | None:
        end, _, code = self.ends[call_id]
        if self.clock() < end:
            return None
        reason = "remote_bye" if code == 200 else "not_answered: x"
        return EndedCall(call_id, code, reason, code == 200, CALL_S if code == 200 else 0.5)


def console_poll_ms(campaign: Campaign, gateway: SimulatedGateway) -> float:
    """What the console's campaign stream does once a second per open page (median of 5)."""
    book = CampaignBook()
    book._add("bench", campaign)  # noqa: SLF001 - the finished campaign, as the API would hold it
    api = HttpApi(("127.0.0.1", 0), "bench-token", gateway, Metrics(), book)  # not started: dispatch only
    console_api = control_api(control_raw(api.dispatch, "bench-token"))
    times = []
    for _ in range(5):
        t = time.perf_counter()
        snapshot(console_api, "bench")
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--dnc", type=int, default=100_000, help="numbers on the do-not-call table")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # one line per call
    rng = random.Random(1)
    numbers = [f"+1555{i:07d}" for i in range(args.contacts)]
    rows = [{"to": n, "name": f"Contact {i}", "timezone": ZONES[i % len(ZONES)]} for i, n in enumerate(numbers)]
    contacts = contacts_from_rows(rows, ZoneInfo("UTC"))
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "vg.db")
        listed = set(rng.sample(numbers, args.contacts // 50))  # 2 % of the list asked not to be called
        started = time.perf_counter()
        for i in range(args.dnc - len(listed)):
            store.add_do_not_call(f"+4930{i:08d}", at=0.0)
        for number in listed:
            store.add_do_not_call(number, at=0.0)
        fill_s = time.perf_counter() - started
        storage = CampaignStorage(lambda: store)
        dnc = DoNotCallList(storage)
        checks = []
        for number in rng.sample(numbers, min(2000, len(numbers))):
            t = time.perf_counter()
            dnc.blocked(number)
            checks.append((time.perf_counter() - t) * 1000)
        clock = VirtualClock()
        gateway = SimulatedGateway(clock, frozenset(rng.sample(numbers, args.contacts // 5)),
                                   frozenset(rng.sample(numbers, args.contacts // 100)))
        policy = read_policy({"calling_hours": [{"days": "mon-fri", "start": "09:00", "end": "20:00"}],
                              "retry": {"busy": [600]}, "max_attempts": 2})
        archive = CampaignArchive(storage, "bench", OWNER)
        campaign = Campaign(contacts, None, 50, 50.0, gateway, policy=policy, do_not_call=dnc, archive=archive,
                            name="bench", clock=clock, wall=clock.wall, sleep=clock.sleep, poll_interval=0.2)
        cpu = time.process_time()
        wall = time.perf_counter()
        campaign.run()
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        status = campaign.status()
        t = time.perf_counter()
        as_json = [r.as_json() for r in campaign.results()]
        csv_text = results_csv(as_json)
        export_ms = (time.perf_counter() - t) * 1000
        kept = len(store.campaign_contacts("bench"))
        poll_ms = console_poll_ms(campaign, gateway)
        store.set_campaign_state("bench", "running")  # as if the gateway had stopped mid-campaign
        t = time.perf_counter()
        (resumable,) = load_kept(storage, OWNER)
        revived = Campaign(resumable.contacts, None, 50, 50.0, gateway, policy=resumable.spec.policy,
                           restored=resumable.results, name="bench")
        resume_ms = (time.perf_counter() - t) * 1000
        storage.close()
    dials = status["started"]
    print(f"contacts {args.contacts}, do-not-call table {args.dnc} numbers (filled in {fill_s:.1f} s)")
    print(f"do-not-call check: p50 {statistics.median(checks):.3f} ms, "
          f"p99 {statistics.quantiles(checks, n=100)[98]:.3f} ms")
    print(f"campaign: {dials} calls placed, outcomes {status['outcomes']}, "
          f"{clock.now / 3600:.1f} h of virtual time")
    print(f"campaign thread: {cpu:.2f} s CPU ({wall:.2f} s wall) for the whole run, "
          f"{cpu / max(1, dials) * 1000:.2f} ms CPU per call placed (incl. do-not-call checks and result writes)")
    print(f"results of {len(as_json)} contacts as JSON + CSV ({len(csv_text) / 1024:.0f} KiB): {export_ms:.0f} ms; "
          f"{kept} kept in the store")
    print(f"console campaign page, one poll of its live stream (status + every contact's result through the "
          f"API in-process): {poll_ms:.0f} ms")
    print(f"resume after a restart: {len(revived.results())} contacts read back and the campaign rebuilt "
          f"in {resume_ms:.0f} ms")


if __name__ == "__main__":
    main()
