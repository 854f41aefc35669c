"""Campaigns: CSV parsing, the concurrency and rate limits, retries with back-off, calling hours
and the do-not-call list, on a fake clock (and once in real time)."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.campaigns.contacts import MAX_ROWS, Contact, contacts_from_rows, parse_campaign_csv
from gateway.campaigns.dnc import DoNotCallList
from gateway.campaigns.outcomes import AmdVerdict, EndedCall
from gateway.campaigns.policy import CampaignPolicy, read_policy
from gateway.campaigns.results import ContactStatus, results_csv
from gateway.campaigns.scheduler import Campaign
from gateway.campaigns.storage import CampaignStorage
from gateway.store import SqliteStore

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


MONDAY_NOON_UTC = 1_780_315_200.0  # 2026-06-01 12:00 UTC, a Monday


@dataclass
class FakeClock:
    """Monotonic time from 0 (`clock()`) and wall time from `epoch` (`wall()`), moved only by sleep."""

    now: float = 0.0
    epoch: float = MONDAY_NOON_UTC
    on_sleep: Callable[[], None] | None = None

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.epoch + self.now

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
    answers: dict[str, list[int]] = field(default_factory=dict)  # number -> SIP code per attempt (200: answered)
    amd: dict[str, str] = field(default_factory=dict)  # number -> AMD verdict of its answered calls
    starts: list[float] = field(default_factory=list)
    originated: list[tuple[str, str | None, dict[str, str], str | None]] = field(default_factory=list)
    ends: dict[str, float] = field(default_factory=dict)
    codes: dict[str, tuple[str, int]] = field(default_factory=dict)
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
            codes = self.answers.get(to, [])
            self.codes[call_id] = (to, codes.pop(0) if codes else 200)
            self.max_active = max(self.max_active, sum(1 for end in self.ends.values() if end > now))
            return call_id

    def wait_ended(self, call_id: str, timeout: float) -> bool:
        return self.clock() >= self.ends[call_id]

    def ended_call(self, call_id: str) -> EndedCall | None:
        if self.clock() < self.ends[call_id]:
            return None
        to, code = self.codes[call_id]
        reason = "remote_bye: Normal" if code == 200 else f"not_answered: {code}"
        return EndedCall(call_id, code, reason, code == 200, self.duration, AmdVerdict.parse(self.amd.get(to)),
                         f"/records/{call_id}.jsonl")

    def list_calls(self) -> list[dict[str, object]]:
        return []

    def hangup(self, call_id: str) -> bool:
        return False

    def readiness(self) -> dict[str, object]:
        return {"ready": True}


def rows(n: int) -> list[Contact]:
    return contacts_from_rows([{"to": f"20{i:02d}", "name": f"caller {i}"} for i in range(n)], ZoneInfo("UTC"))


def fake_campaign(n: int | list[Contact], concurrency: int, rate: float, duration: float, *,
                  policy: CampaignPolicy | None = None, dnc: DoNotCallList | None = None,
                  clock: FakeClock | None = None, **kwargs) -> tuple[Campaign, TimedControl]:
    clock = clock or FakeClock()
    control = TimedControl(clock, duration, **kwargs)
    contacts = rows(n) if isinstance(n, int) else n
    campaign = Campaign(contacts, "sales", concurrency, rate, control, policy=policy or CampaignPolicy(),
                        do_not_call=dnc, clock=clock, wall=clock.wall, sleep=clock.sleep, poll_interval=0.05)
    return campaign, control


def test_never_more_than_concurrency_calls_up() -> None:
    campaign, control = fake_campaign(10, concurrency=2, rate=100.0, duration=5.0)
    campaign.run()
    assert control.max_active == 2
    assert campaign.status() == {
        "state": "finished", "total": 10, "started": 10, "completed": 10, "failed": 0, "active": 0, "running": False,
        "stopped": False,
        "not_attempted": 0, "scheduled": 0, "done": 10, "outcomes": {"answered": 10},
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
    campaign = Campaign(rows(10), None, 3, 10.0, control, clock=clock, wall=clock.wall, sleep=clock.sleep,
                        poll_interval=0.05)
    clock.on_sleep = lambda: campaign.stop() if len(control.starts) >= 3 else None
    campaign.run()
    status = campaign.status()
    assert len(control.starts) == 3
    assert status["completed"] == 3 and status["active"] == 0
    assert status["stopped"] is True and status["running"] is False


def test_a_draining_gateway_stops_the_campaign_and_leaves_the_rest_of_the_list_unfailed() -> None:
    clock = FakeClock()
    control = TimedControl(clock, duration=1.0)
    campaign = Campaign(rows(10), None, 2, 10.0, control, clock=clock, wall=clock.wall, sleep=clock.sleep,
                        poll_interval=0.05)
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


# --- retries per outcome, with back-off ------------------------------------------------------------


def policy(**raw: object) -> CampaignPolicy:
    return read_policy(raw)


def wall_starts(campaign: Campaign, clock: FakeClock, control: TimedControl, number: str) -> list[float]:
    return [clock.epoch + t for t, o in zip(control.starts, control.originated, strict=True) if o[0] == number]


def test_busy_is_retried_after_its_back_off_and_the_answer_ends_it() -> None:
    clock = FakeClock()
    campaign, control = fake_campaign(2, 1, 10.0, 5.0, clock=clock, policy=policy(retry={"busy": [600]}),
                                      answers={"2000": [486, 200]})
    campaign.run()
    first, second = wall_starts(campaign, clock, control, "2000")
    assert 600 <= second - (first + 5.0) < 600 + 0.2  # 600 s after the busy call ended, not needlessly later
    assert [o[0] for o in control.originated] == ["2000", "2001", "2000"]  # the list goes on meanwhile
    result = campaign.results()[0].as_json()
    assert (result["status"], result["outcome"], result["attempts"]) == ("done", "answered", 2)
    assert [h["outcome"] for h in result["history"]] == ["busy", "answered"]
    assert result["history"][0]["code"] == 486 and result["record"] == "/records/call-3.jsonl"


def test_attempts_stop_at_max_attempts_and_the_last_back_off_repeats() -> None:
    clock = FakeClock()
    campaign, control = fake_campaign(1, 1, 10.0, 1.0, clock=clock,
                                      policy=policy(max_attempts=4, retry={"busy": [60, 120], "no_answer": 30}),
                                      answers={"2000": [486, 480, 486, 486, 486]})
    campaign.run()
    starts = wall_starts(campaign, clock, control, "2000")
    gaps = [round(b - a - 1.0) for a, b in zip(starts, starts[1:], strict=False)]  # from each call's end
    assert gaps == [60, 30, 120]  # busy: 60; no answer: its own 30; busy again: the last busy value repeats
    result = campaign.results()[0]
    assert result.status is ContactStatus.DONE and result.calls == 4 and str(result.last.outcome) == "busy"
    assert campaign.status()["outcomes"] == {"busy": 1}


@pytest.mark.parametrize(("code", "outcome"), [(603, "rejected"), (404, "unreachable"), (200, "answered")])
def test_outcomes_the_policy_does_not_name_are_final(code: int, outcome: str) -> None:
    campaign, control = fake_campaign(1, 1, 10.0, 1.0, policy=policy(retry={"busy": [1]}),
                                      answers={"2000": [code, 486]})
    campaign.run()
    assert len(control.starts) == 1 and campaign.results()[0].as_json()["outcome"] == outcome


def test_a_machine_is_retried_only_when_the_policy_says_so() -> None:
    retried, control = fake_campaign(1, 1, 10.0, 1.0, policy=policy(retry={"machine": [3600]}, max_attempts=2),
                                     amd={"2000": "machine"})
    retried.run()
    assert len(control.starts) == 2
    assert [h["amd"] for h in retried.results()[0].as_json()["history"]] == ["machine", "machine"]
    once, control = fake_campaign(1, 1, 10.0, 1.0, amd={"2000": "human"})
    once.run()
    assert len(control.starts) == 1 and once.results()[0].as_json()["amd"] == "human"


def test_a_refused_originate_is_invalid_and_never_retried() -> None:
    campaign, control = fake_campaign(1, 1, 10.0, 1.0, policy=policy(retry={"failed": [1]}),
                                      fail_numbers=frozenset({"2000"}))
    campaign.run()
    result = campaign.results()[0].as_json()
    assert (result["outcome"], result["attempts"], result["call_id"]) == ("invalid", 1, None)


# --- calling hours in the contact's time zone --------------------------------------------------------

NINE_TO_FIVE = [{"days": "mon-fri", "start": "09:00", "end": "17:00"}]


def zoned(*zones: str) -> list[Contact]:
    rows = [{"to": f"20{i:02d}", "timezone": zone} for i, zone in enumerate(zones)]
    return contacts_from_rows(rows, ZoneInfo("UTC"))


def test_a_contact_outside_its_window_waits_for_it_to_open() -> None:
    clock = FakeClock()  # Monday 12:00 UTC: 14:00 in Berlin, 08:00 in New York, 21:00 in Tokyo
    contacts = zoned("America/New_York", "Europe/Berlin", "Asia/Tokyo")
    campaign, control = fake_campaign(contacts, 3, 10.0, 60.0, clock=clock, policy=policy(calling_hours=NINE_TO_FIVE))
    campaign.run()
    started = {o[0]: clock.epoch + t for t, o in zip(control.starts, control.originated, strict=True)}
    assert started["2001"] == clock.epoch  # Berlin: open now
    assert started["2000"] == clock.epoch + 3600  # New York opens at 09:00 EDT = 13:00 UTC
    tokyo = dt.datetime.fromtimestamp(started["2002"], ZoneInfo("Asia/Tokyo"))
    assert (tokyo.weekday(), tokyo.hour, tokyo.minute) == (1, 9, 0)  # Tuesday 09:00 Tokyo time
    assert campaign.results()[2].timezone == "Asia/Tokyo"


@pytest.mark.parametrize(("saturday_noon_utc", "sunday_nine_utc"), [
    (dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC), dt.datetime(2026, 3, 29, 7, tzinfo=dt.UTC)),  # CET -> CEST
    (dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC), dt.datetime(2026, 10, 25, 8, tzinfo=dt.UTC)),  # CEST -> CET
])
def test_windows_follow_the_dst_change(saturday_noon_utc: dt.datetime, sunday_nine_utc: dt.datetime) -> None:
    clock = FakeClock(epoch=saturday_noon_utc.timestamp())
    campaign, control = fake_campaign(zoned("Europe/Berlin"), 1, 10.0, 60.0, clock=clock,
                                      policy=policy(calling_hours=[{"days": "sun", "start": "09:00", "end": "10:00"}]))
    campaign.run()
    assert clock.epoch + control.starts[0] == sunday_nine_utc.timestamp()  # 09:00 local on the night's new offset


def test_a_window_edge_in_the_spring_forward_gap_opens_at_the_gaps_end() -> None:
    zone = ZoneInfo("Europe/Berlin")
    hours = policy(calling_hours=[{"days": "sun", "start": "02:30", "end": "05:00"}]).hours
    before = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC).timestamp()  # 01:30 CET
    opens = hours.next_open(before, zone)
    assert dt.datetime.fromtimestamp(opens, zone).strftime("%H:%M %Z") == "03:00 CEST"
    assert not hours.allows(opens - 1, zone) and hours.allows(opens, zone)


def test_a_retry_that_falls_after_closing_time_waits_for_the_next_window() -> None:
    clock = FakeClock(epoch=dt.datetime(2026, 6, 1, 14, 50, tzinfo=dt.UTC).timestamp())  # 16:50 in Berlin
    campaign, control = fake_campaign(zoned("Europe/Berlin"), 1, 10.0, 30.0, clock=clock,
                                      policy=policy(calling_hours=NINE_TO_FIVE, retry={"busy": [600]}),
                                      answers={"2000": [486, 200]})
    campaign.run()
    retry = dt.datetime.fromtimestamp(clock.epoch + control.starts[1], ZoneInfo("Europe/Berlin"))
    assert (retry.day, retry.hour, retry.minute) == (2, 9, 0)  # not at 17:00:30, but Tuesday 09:00
    assert campaign.results()[0].as_json()["attempts"] == 2


def test_no_call_ever_starts_outside_the_window() -> None:
    clock = FakeClock(epoch=dt.datetime(2026, 3, 27, 15, tzinfo=dt.UTC).timestamp())  # Friday, a DST weekend ahead
    hours = [{"days": "mon-fri", "start": "09:00", "end": "09:02"}, {"days": "sun", "start": "02:15", "end": "03:30"}]
    contacts = zoned(*["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata"] * 5)
    campaign, control = fake_campaign(contacts, 2, 1.0, 20.0, clock=clock,
                                      policy=policy(calling_hours=hours, retry={"busy": [45]}, max_attempts=3),
                                      answers={c.to: [486, 486, 200] for c in contacts})
    campaign.run()
    policy_hours = campaign.policy.hours
    by_number = {c.to: c.zone for c in contacts}
    assert len(control.starts) == 60
    for t, (to, *_rest) in zip(control.starts, control.originated, strict=True):
        assert policy_hours.allows(clock.epoch + t, by_number[to]), (to, clock.epoch + t)


# --- the do-not-call list -----------------------------------------------------------------------------


@pytest.fixture
def dnc(tmp_path: Path) -> DoNotCallList:
    store = SqliteStore(tmp_path / "vg.db")
    listed = DoNotCallList(CampaignStorage(lambda: store))
    yield listed
    listed.close()


def test_a_number_on_the_list_is_never_dialled(dnc: DoNotCallList) -> None:
    dnc.add("+49 30 123-4567", "asked on 3 May")
    contacts = contacts_from_rows([{"to": "0049301234567"}, {"to": "2001"}], ZoneInfo("UTC"))
    campaign, control = fake_campaign(contacts, 1, 10.0, 1.0, dnc=dnc)
    campaign.run()
    assert [o[0] for o in control.originated] == ["2001"]
    result = campaign.results()[0].as_json()
    assert (result["outcome"], result["attempts"], result["status"]) == ("do_not_call", 0, "done")


def test_the_list_is_checked_right_before_each_dial(dnc: DoNotCallList) -> None:
    clock = FakeClock()
    campaign, control = fake_campaign(2, 1, 10.0, 5.0, clock=clock, dnc=dnc, policy=policy(retry={"busy": [60]}),
                                      answers={"2000": [486, 200]})
    clock.on_sleep = lambda: dnc.add("sip:2000@pbx") if control.starts else None  # listed while it waits
    campaign.run()
    assert [o[0] for o in control.originated] == ["2000", "2001"]
    assert [h["outcome"] for h in campaign.results()[0].as_json()["history"]] == ["busy", "do_not_call"]


def test_an_unreadable_list_holds_the_dial_back(tmp_path: Path) -> None:
    file = tmp_path / "dnc.txt"
    listed = DoNotCallList(CampaignStorage(lambda: SqliteStore(tmp_path / "vg.db")), file)  # no file: unreadable
    clock = FakeClock()
    campaign, control = fake_campaign(1, 1, 10.0, 1.0, clock=clock, dnc=listed)
    export = "# exported nightly\n2999  # not this contact\n"
    clock.on_sleep = lambda: file.write_text(export) if clock.now > 100 else None
    campaign.run()
    assert control.starts == [pytest.approx(120.0, abs=0.2)]  # the next try after the 60 s wait that read the file
    assert listed.file_numbers() == ["2999"]
    listed.close()


def test_the_file_is_read_again_when_it_changes(tmp_path: Path, dnc: DoNotCallList) -> None:
    file = tmp_path / "dnc.txt"
    file.write_text("+1 555 0100\n")
    listed = DoNotCallList(CampaignStorage(lambda: SqliteStore(tmp_path / "other.db")), file)
    assert listed.blocked("tel:+15550100") and not listed.blocked("+15550101")
    file.write_text("+1 555 0101\n")
    os.utime(file, (time.time() + 5, time.time() + 5))
    assert listed.blocked("+15550101") and not listed.blocked("+15550100")
    listed.close()


# --- results --------------------------------------------------------------------------------------------


def test_results_csv_has_one_line_per_contact() -> None:
    campaign, _ = fake_campaign(2, 1, 10.0, 1.0, answers={"2001": [603]})
    campaign.run()
    lines = results_csv(r.as_json() for r in campaign.results()).splitlines()
    assert lines[0] == ("row,to,name,timezone,status,outcome,amd,attempts,duration_s,call_id,record,last_attempt_at,"
                        "next_attempt_at")
    assert lines[1] == ("1,2000,caller 0,UTC,done,answered,,1,1.0,call-1,/records/call-1.jsonl,"
                        "2026-06-01T12:00:00+00:00,")
    assert lines[2].startswith("2,2001,caller 1,UTC,done,rejected,,1,")
