"""Campaigns: CSV parsing, and the concurrency and rate limits on a fake clock and in real time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from gateway.campaign import MAX_ROWS, Campaign, parse_campaign_csv

# --- CSV -------------------------------------------------------------------------------------------


def test_parse_csv_rows_become_to_plus_variables() -> None:
    rows = parse_campaign_csv("\ufeffName, TO ,order\nAda,+4930123,42\n\nBob,+4930124\n")
    assert rows == [
        {"to": "+4930123", "Name": "Ada", "order": "42"},
        {"to": "+4930124", "Name": "Bob", "order": ""},
    ]


def test_parse_csv_accepts_number_column() -> None:
    assert parse_campaign_csv("number\n2001\n") == [{"to": "2001"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("name,phone\nAda,2001\n", "'to'"),
        ("to,name\n", "no rows"),
        ("to,name\n,Ada\n", "line 2 has an empty 'to'"),
        ("to\n2001,extra\n", "line 2 has 2 fields"),
        ("to,TO\n1,2\n", "duplicate"),
        ("to\n" + "2001\n" * (MAX_ROWS + 1), f"more than {MAX_ROWS}"),
    ],
)
def test_parse_csv_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_campaign_csv(text)


def test_parse_csv_accepts_exactly_max_rows() -> None:
    assert len(parse_campaign_csv("to\n" + "2001\n" * MAX_ROWS)) == MAX_ROWS


# --- fake clock ------------------------------------------------------------------------------------


@dataclass
class FakeClock:
    now: float = 0.0
    on_sleep: Callable[[], None] | None = None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the campaign must never busy-loop"
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep()


@dataclass
class TimedControl:
    """Calls last `duration` on `clock`; records start times and the most calls up at once."""

    clock: Callable[[], float]
    duration: float
    fail_numbers: frozenset[str] = frozenset()
    starts: list[float] = field(default_factory=list)
    originated: list[tuple[str, str | None, dict[str, str], str | None]] = field(default_factory=list)
    ends: dict[str, float] = field(default_factory=dict)
    max_active: int = 0
    draining: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def originate(self, to: str, agent: str | None, variables: Mapping[str, str], account: str | None) -> str:
        if to in self.fail_numbers:
            raise ValueError(f"bad number: {to}")
        with self.lock:
            now = self.clock()
            self.starts.append(now)
            self.originated.append((to, agent, dict(variables), account))
            call_id = f"call-{len(self.starts)}"
            self.ends[call_id] = now + self.duration
            self.max_active = max(self.max_active, sum(1 for end in self.ends.values() if end > now))
            return call_id

    def wait_ended(self, call_id: str, timeout: float) -> bool:
        return self.clock() >= self.ends[call_id]

    def list_calls(self) -> list[dict[str, object]]:
        return []

    def hangup(self, call_id: str) -> bool:
        return False

    def readiness(self) -> dict[str, object]:
        return {"ready": True}


def rows(n: int) -> list[dict[str, str]]:
    return [{"to": f"20{i:02d}", "name": f"caller {i}"} for i in range(n)]


def fake_campaign(n: int, concurrency: int, rate: float, duration: float, **kwargs) -> tuple[Campaign, TimedControl]:
    clock = FakeClock()
    control = TimedControl(clock, duration, **kwargs)
    campaign = Campaign(rows(n), "sales", concurrency, rate, control, clock=clock, sleep=clock.sleep,
                        poll_interval=0.05)
    return campaign, control


def test_never_more_than_concurrency_calls_up() -> None:
    campaign, control = fake_campaign(10, concurrency=2, rate=100.0, duration=5.0)
    campaign.run()
    assert control.max_active == 2
    assert campaign.status() == {
        "total": 10, "started": 10, "completed": 10, "failed": 0, "active": 0, "running": False, "stopped": False,
        "not_attempted": 0,
    }
    assert control.originated[0] == ("2000", "sales", {"name": "caller 0"}, None)


def test_never_faster_than_calls_per_second() -> None:
    campaign, control = fake_campaign(10, concurrency=10, rate=2.0, duration=0.1)
    campaign.run()
    gaps = [b - a for a, b in zip(control.starts, control.starts[1:], strict=False)]
    assert len(control.starts) == 10
    assert min(gaps) >= 0.5 - 1e-9
    assert max(gaps) < 0.5 + 0.05 + 1e-9  # and not needlessly slower than the rate allows


def test_failed_originate_counts_and_campaign_goes_on() -> None:
    campaign, control = fake_campaign(5, concurrency=2, rate=10.0, duration=1.0, fail_numbers=frozenset({"2001"}))
    campaign.run()
    status = campaign.status()
    assert (status["started"], status["completed"], status["failed"]) == (4, 4, 1)
    assert [o[0] for o in control.originated] == ["2000", "2002", "2003", "2004"]


def test_stop_starts_no_more_calls_but_waits_for_active_ones() -> None:
    clock = FakeClock()
    control = TimedControl(clock, duration=2.0)
    campaign = Campaign(rows(10), None, 3, 10.0, control, clock=clock, sleep=clock.sleep, poll_interval=0.05)
    clock.on_sleep = lambda: campaign.stop() if len(control.starts) >= 3 else None
    campaign.run()
    status = campaign.status()
    assert len(control.starts) == 3
    assert status["completed"] == 3 and status["active"] == 0
    assert status["stopped"] is True and status["running"] is False


def test_a_draining_gateway_stops_the_campaign_and_leaves_the_rest_of_the_list_unfailed() -> None:
    clock = FakeClock()
    control = TimedControl(clock, duration=1.0)
    campaign = Campaign(rows(10), None, 2, 10.0, control, clock=clock, sleep=clock.sleep, poll_interval=0.05)
    clock.on_sleep = lambda: setattr(control, "draining", True) if len(control.starts) >= 4 else None
    campaign.run()
    status = campaign.status()
    assert len(control.starts) == 4 and status["failed"] == 0
    assert status["not_attempted"] == 6 and status["stopped"] is True and status["completed"] == 4


def test_invalid_settings_are_rejected() -> None:
    control = TimedControl(time.monotonic, 0.0)
    with pytest.raises(ValueError, match="concurrency"):
        Campaign(rows(1), None, 0, 1.0, control)
    with pytest.raises(ValueError, match="calls_per_second"):
        Campaign(rows(1), None, 1, 0.0, control)


def test_short_real_time_run_on_its_own_thread() -> None:
    control = TimedControl(time.monotonic, duration=0.05)
    campaign = Campaign(rows(4), None, 2, 20.0, control, account="trunk", poll_interval=0.01)
    campaign.start()
    assert campaign.join(timeout=5)
    status = campaign.status()
    assert status["completed"] == 4 and status["running"] is False
    assert control.max_active <= 2
    gaps = [b - a for a, b in zip(control.starts, control.starts[1:], strict=False)]
    assert min(gaps) >= 0.05 - 0.01  # 1/20 s spacing; tolerance: start times are read a moment after
    assert control.originated[0][3] == "trunk"
