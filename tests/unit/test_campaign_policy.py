"""Campaign policy pieces on their own: outcome classification, the policy parser (YAML and API),
the contacts' time zones."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from gateway.calls.outcome import CallOutcome
from gateway.campaigns.contacts import contacts_from_rows
from gateway.campaigns.outcomes import AmdVerdict, AttemptOutcome, EndedCall, classify
from gateway.campaigns.policy import CampaignPolicy, PolicyError, RetryPolicy, read_defaults, read_policy
from gateway.operations import GatewayOperations


def after_call_progress(*values: object) -> object:
    """A case that needs the call-progress outcomes (BUSY, NO_ANSWER, REJECTED, UNREACHABLE) in CallOutcome."""
    missing = not all(hasattr(CallOutcome, name) for name in ("BUSY", "NO_ANSWER", "REJECTED", "UNREACHABLE"))
    return pytest.param(*values, marks=pytest.mark.skipif(missing, reason="CallOutcome has no call-progress outcomes"))


@pytest.mark.parametrize(("reason", "code", "answered", "amd", "outcome"), [
    ("remote_bye: Normal call clearing", 200, True, None, AttemptOutcome.ANSWERED),
    ("goodbye", 0, True, AmdVerdict.HUMAN, AttemptOutcome.ANSWERED),
    ("tool_hangup", 0, True, AmdVerdict.MACHINE, AttemptOutcome.MACHINE),
    ("not_answered: Busy Here", 486, False, None, AttemptOutcome.BUSY),  # today's reason for a busy callee
    ("busy: Busy Here", 486, False, None, AttemptOutcome.BUSY),  # with the call-progress outcomes
    after_call_progress("no_answer: ring timeout", 0, False, None, AttemptOutcome.NO_ANSWER),
    ("not_answered: Request Timeout", 408, False, None, AttemptOutcome.NO_ANSWER),
    ("not_answered: Temporarily Unavailable", 480, False, None, AttemptOutcome.NO_ANSWER),
    ("rejected: Decline", 603, False, None, AttemptOutcome.REJECTED),
    ("not_answered: Not Found", 404, False, None, AttemptOutcome.UNREACHABLE),
    after_call_progress("unreachable: no route", 0, False, None, AttemptOutcome.UNREACHABLE),
    ("failed: Service Unavailable", 503, False, None, AttemptOutcome.UNREACHABLE),
    ("failed: Internal Server Error", 500, False, None, AttemptOutcome.FAILED),
    ("media_error", 0, False, None, AttemptOutcome.FAILED),
    ("api", 0, False, None, AttemptOutcome.STOPPED),
    ("shutdown", 0, False, None, AttemptOutcome.STOPPED),
    ("something new: 0", 0, False, None, AttemptOutcome.OTHER),  # unknown: never retried
    ("not_answered: ", 0, False, None, AttemptOutcome.OTHER),
])
def test_classify(reason: str, code: int, answered: bool, amd: AmdVerdict | None, outcome: AttemptOutcome) -> None:
    assert classify(EndedCall("c", code, reason, answered, 1.0, amd)) is outcome


@pytest.mark.parametrize(("value", "verdict"), [
    (None, None), ("", None), ("MACHINE", AmdVerdict.MACHINE), (AmdVerdict.HUMAN, AmdVerdict.HUMAN),
    ("fax", AmdVerdict.UNKNOWN),
])
def test_amd_verdict_from_what_the_call_carries(value: object, verdict: AmdVerdict | None) -> None:
    assert AmdVerdict.parse(value) is verdict


def test_retry_after_counts_every_attempt() -> None:
    retry = RetryPolicy({AttemptOutcome.BUSY: (10.0, 20.0)}, max_attempts=4)
    assert [retry.retry_after(AttemptOutcome.BUSY, n) for n in (1, 2, 3, 4)] == [10.0, 20.0, 20.0, None]
    assert retry.retry_after(AttemptOutcome.NO_ANSWER, 1) is None


def test_defaults_retry_busy_and_no_answer_any_time_in_utc() -> None:
    described = CampaignPolicy().describe()
    assert described == {"max_attempts": 3, "retry": {"busy": [300.0], "no_answer": [1800.0]},
                         "calling_hours": [], "timezone": "UTC"}


def test_request_keys_replace_the_yaml_defaults_key_by_key() -> None:
    defaults = read_defaults({"timezone": "Europe/Berlin", "max_attempts": 5, "retry": {"busy": 60},
                              "calling_hours": [{"start": "09:00", "end": "18:00"}]})
    merged = defaults.policy.merged({"retry": {"no_answer": [120, 600]}}).describe()
    assert merged["retry"] == {"no_answer": [120.0, 600.0]}  # replaced whole, not merged outcome by outcome
    assert (merged["max_attempts"], merged["timezone"]) == (5, "Europe/Berlin")
    assert merged["calling_hours"] == [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                        "start": "09:00", "end": "18:00"}]


@pytest.mark.parametrize(("raw", "key", "expected"), [
    ({"retry": {"answered": [1]}}, "retry.answered", "an outcome that can be retried"),
    ({"retry": {"busy": [-1]}}, "retry.busy", "back-off seconds"),
    ({"retry": {"busy": True}}, "retry.busy", "back-off seconds"),
    ({"retry": [1]}, "retry", "a mapping of outcome"),
    ({"max_attempts": 11}, "max_attempts", "from 1 to 10"),
    ({"timezone": "Europe/Nowhere"}, "timezone", "IANA time zone"),
    ({"calling_hours": [{"start": "9", "end": "17:00"}]}, "calling_hours[0].start", "'HH:MM'"),
    ({"calling_hours": [{"start": "22:00", "end": "06:00"}]}, "calling_hours[0].end", "across midnight"),
    ({"calling_hours": [{"days": "sat-mon", "start": "10:00"}]}, "calling_hours[0]", "start and end"),
    ({"calling_hours": {"start": "10:00"}}, "calling_hours", "a list"),
    ({"retries": 3}, "retries", "no such key"),
])
def test_policy_errors_name_the_key(raw: dict, key: str, expected: str) -> None:
    with pytest.raises(PolicyError) as err:
        read_policy(raw)
    assert err.value.key == key and expected in err.value.expected


def test_day_ranges_wrap_the_week() -> None:
    hours = read_policy({"calling_hours": [{"days": ["sat-mon"], "start": "10:00", "end": "24:00"}]}).hours
    assert hours.windows[0].days == frozenset({5, 6, 0})


def test_timezone_column_is_per_contact_and_not_a_variable() -> None:
    rows = [{"to": "1", "TimeZone": "Asia/Tokyo", "name": "Ann"}, {"to": "2", "TimeZone": "", "name": "Bob"}]
    first, second = contacts_from_rows(rows, ZoneInfo("Europe/Berlin"))
    assert (first.zone.key, dict(first.variables)) == ("Asia/Tokyo", {"name": "Ann"})
    assert second.zone.key == "Europe/Berlin"
    with pytest.raises(ValueError, match=r"row 2 \(2\): 'TimeZone': expected an IANA"):
        contacts_from_rows([rows[0], {"to": "2", "TimeZone": "CEST"}], ZoneInfo("UTC"))


def test_the_gateway_tells_campaigns_what_an_ended_call_left() -> None:
    hooks: list = []
    calls = SimpleNamespace(on_ended=hooks.append, metrics=SimpleNamespace(on_collect=lambda f: None))
    operations = GatewayOperations(SimpleNamespace(calls=calls))  # type: ignore[arg-type]
    recorder = SimpleNamespace(paths=SimpleNamespace(jsonl=Path("/records/2026-06-01/c1.jsonl")))
    answered = SimpleNamespace(call_id="c1", confirmed=True, created_at=time.monotonic() - 12.3, recorder=recorder,
                               amd_verdict="machine")
    assert operations.ended_call("c1") is None
    hooks[0](answered, 200, "remote_bye: Normal call clearing")
    ended = operations.ended_call("c1")
    assert ended is not None and operations.wait_ended("c1", 0)
    assert (ended.code, ended.answered, ended.amd, ended.record) == (200, True, AmdVerdict.MACHINE,
                                                                     "/records/2026-06-01/c1.jsonl")
    assert 12.3 <= ended.duration_s < 15 and classify(ended) is AttemptOutcome.MACHINE
    hooks[0](SimpleNamespace(call_id="c2", confirmed=False, created_at=time.monotonic(), recorder=None,
                             amd_verdict=None), 486,
             "not_answered: Busy Here")  # no AMD on a call nobody answered
    assert classify(operations.ended_call("c2")) is AttemptOutcome.BUSY


def test_the_amd_verdict_the_agent_records_is_what_the_call_carries() -> None:
    from gateway.agents.base import RecordKind
    from gateway.calls.reporting import AnsweredBy, CallReporting
    from gateway.config import RecordingConfig
    from gateway.metrics import Metrics

    answered_by = AnsweredBy()
    to_record = CallReporting(RecordingConfig(), Metrics(), None).record_to(None, "c1", answered_by)
    to_record(RecordKind.AMD, verdict="human", reason="short_answer")
    to_record(RecordKind.AMD, ready="beep")  # machine-ready lines carry no verdict
    assert answered_by.verdict == "human"
    to_record(RecordKind.AMD, verdict="machine", reason="beep_after_answer")  # the latest wins
    assert AmdVerdict.parse(answered_by.verdict) is AmdVerdict.MACHINE
