"""Campaigns that survive a restart (kept in a real SQLite store, read back, taken up again) and that
an operator pauses, resumes and cancels; on the fake clock of test_campaign.py."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.campaigns.book import CampaignBook
from gateway.campaigns.persist import CampaignArchive, CampaignState, load_kept
from gateway.campaigns.policy import read_policy
from gateway.campaigns.results import ContactStatus
from gateway.campaigns.scheduler import Campaign
from gateway.campaigns.storage import CampaignStorage
from gateway.store import SqliteStore
from tests.unit.test_campaign import FakeClock, TimedControl, rows

OWNER = "gw-host:5080"


def storage_at(path: Path) -> CampaignStorage:
    return CampaignStorage(lambda: SqliteStore(path))


def campaign_on(storage: CampaignStorage, clock: FakeClock, control: TimedControl, n: int, **policy: object):
    return Campaign(rows(n), "sales", 1, 10.0, control, policy=read_policy(policy), name="camp1",
                    archive=CampaignArchive(storage, "camp1", OWNER), clock=clock, wall=clock.wall,
                    sleep=clock.sleep, poll_interval=0.05)


def died_during_the_second_call(db: Path, **policy: object) -> TimedControl:
    """Run a 3-contact campaign until its second call is up, then lose the process (the store is gone
    before the call's end is seen, as when the gateway stops)."""
    first = storage_at(db)
    clock = FakeClock()
    control = TimedControl(clock, 10.0)
    campaign = campaign_on(first, clock, control, 3, **policy)

    def die() -> None:
        if len(control.starts) == 2 and not campaign._stop.is_set():
            first.close()  # what a shutdown does before the SIP stack hangs the calls up
            campaign.stop()

    clock.on_sleep = die
    campaign.run()
    return control


def resumed(db: Path) -> tuple[Campaign, TimedControl, FakeClock]:
    (kept,) = load_kept(storage_at(db), OWNER)
    clock = FakeClock(epoch=FakeClock().epoch + 100.0)
    control = TimedControl(clock, 10.0)
    spec = kept.spec
    campaign = Campaign(kept.contacts, spec.agent, spec.concurrency, spec.calls_per_second, control,
                        policy=spec.policy, name=kept.record.campaign_id, restored=kept.results,
                        state=CampaignState(kept.record.state),
                        archive=CampaignArchive(storage_at(db), kept.record.campaign_id, OWNER),
                        clock=clock, wall=clock.wall, sleep=clock.sleep, poll_interval=0.05)
    return campaign, control, clock


def test_a_resumed_campaign_never_redials_a_done_contact_and_the_interrupted_one_follows_the_policy(tmp_path):
    db = tmp_path / "voicegate.db"
    before = died_during_the_second_call(db, max_attempts=2, retry={"interrupted": 30, "busy": 60},
                                         calling_hours=[{"days": "mon-sun", "start": "00:00", "end": "24:00"}])
    assert [o[0] for o in before.originated] == ["2000", "2001"]
    kept = SqliteStore(db).campaign_contact_rows("camp1")
    assert [r.result["status"] for r in kept] == ["done", "calling", "pending"]
    assert kept[0].contact == {"to": "2000", "timezone": "UTC", "variables": {"name": "caller 0"}}

    campaign, control, clock = resumed(db)
    assert campaign.policy.hours.windows[0].end.hour == 23  # 24:00 read back as the end of the day
    campaign.run()
    assert [o[0] for o in control.originated] == ["2002", "2001"]  # 2000 answered before: never again
    assert control.originated[0][2] == {"name": "caller 2"}  # the call variables came back too
    results = {r.row: r.as_json() for r in campaign.results()}
    assert [h["outcome"] for h in results[2]["history"]] == ["interrupted", "answered"]
    assert results[2]["history"][0]["call_id"] == "call-2"  # the first process's call, ended as interrupted
    assert (results[1]["attempts"], results[3]["attempts"]) == (1, 1)
    assert campaign.status()["state"] == "finished" and campaign.status()["started"] == 4
    assert SqliteStore(db).campaign("camp1").state == "finished"
    assert load_kept(storage_at(db), OWNER) == []  # a finished campaign is not taken up again


def test_without_a_rule_for_it_an_interrupted_call_is_final(tmp_path):
    db = tmp_path / "voicegate.db"
    died_during_the_second_call(db)
    campaign, control, _ = resumed(db)
    campaign.run()
    assert [o[0] for o in control.originated] == ["2002"]
    second = campaign.results()[1]
    assert (second.status, str(second.last.outcome), second.calls) == (ContactStatus.DONE, "interrupted", 1)


def test_only_the_owner_resumes_and_a_cancelled_campaign_stays_down(tmp_path):
    db = tmp_path / "voicegate.db"
    died_during_the_second_call(db)
    assert load_kept(storage_at(db), "another-gateway:5080") == []
    SqliteStore(db).set_campaign_state("camp1", "cancelled")
    assert load_kept(storage_at(db), OWNER) == []


def test_pause_holds_new_calls_resume_goes_on_cancel_ends_it(tmp_path):
    clock = FakeClock()
    control = TimedControl(clock, 1.0)
    storage = storage_at(tmp_path / "voicegate.db")
    campaign = campaign_on(storage, clock, control, 4)
    paused_at: list[float] = []

    def operator() -> None:
        if len(control.starts) == 1 and not paused_at:
            assert campaign.pause() and not campaign.pause()  # twice: the second has nothing to do
            paused_at.append(clock.now)
        elif paused_at and clock.now > paused_at[0] + 600 and campaign.state is CampaignState.PAUSED:
            assert len(control.starts) == 1  # ten minutes paused: no call started
            assert SqliteStore(tmp_path / "voicegate.db").campaign("camp1").state == "paused"
            assert campaign.resume()
        elif len(control.starts) == 3 and campaign.state is CampaignState.RUNNING:
            assert campaign.cancel()

    clock.on_sleep = operator
    campaign.run()
    assert len(control.starts) == 3  # cancelled after the third: the fourth contact is never called
    assert campaign.status()["state"] == "cancelled" and not campaign.resume()
    assert SqliteStore(tmp_path / "voicegate.db").campaign("camp1").state == "cancelled"


def test_the_book_lists_kept_campaigns_and_resumes_its_own(tmp_path):
    db = tmp_path / "voicegate.db"
    died_during_the_second_call(db)
    clock = FakeClock()
    control = TimedControl(clock, 0.0)
    book = CampaignBook(storage=storage_at(db), owner=OWNER)
    assert book.resume_kept(control) == ["camp1"]
    deadline = time.monotonic() + 30  # started on the book's thread once the gateway is ready: real time
    while book.status("camp1")["state"] != "finished" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c["campaign_id"] for c in book.listing()] == ["camp1"]
    assert book.status("camp1")["state"] == "finished"
    assert [o[0] for o in control.originated] == ["2002"]
    book.close()
