"""A campaign's policy: which outcomes are tried again and after how long, and when calls may go out.

One parser reads it from the YAML `campaigns:` section (the defaults) and from a `POST /campaigns`
body (overrides, key by key), so both take the same keys and give the same errors: each names
the key and what was expected, and the caller (config reader, HTTP handler) adds where it came
from (the file, the request).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.campaigns.hours import DAYS, CallingHours, Window
from gateway.campaigns.outcomes import RETRYABLE, AttemptOutcome

MAX_ATTEMPTS = 10
MAX_BACKOFF_S = 7 * 86_400.0
POLICY_KEYS = frozenset({"max_attempts", "retry", "calling_hours", "timezone"})
_TIME = re.compile(r"(\d{1,2}):(\d{2})")


class PolicyError(ValueError):
    """A policy value is wrong; `key` is its path (`retry.busy`), the message says what was expected."""

    def __init__(self, key: str, expected: str, got: object = dataclasses.MISSING):
        self.key = key
        self.expected = expected
        self.got = got
        shown = "" if got is dataclasses.MISSING else f", got {got!r}"
        super().__init__(f"'{key}': expected {expected}{shown}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Outcome -> back-off schedule (seconds before the 2nd, 3rd, ... attempt; the last repeats).

    Outcomes not named are final.  `max_attempts` counts every attempt of a contact, whatever
    its outcomes were, so a number that is busy, then unanswered, then busy stops at the cap.
    """

    backoff_s: Mapping[AttemptOutcome, tuple[float, ...]] = field(default_factory=lambda: {
        AttemptOutcome.BUSY: (300.0,), AttemptOutcome.NO_ANSWER: (1800.0,),
    })
    max_attempts: int = 3

    def retry_after(self, outcome: AttemptOutcome, attempts: int) -> float | None:
        """Seconds to wait before the next attempt after `attempts` tries ending in `outcome`; None: final."""
        schedule = self.backoff_s.get(outcome)
        if not schedule or attempts >= self.max_attempts:
            return None
        return schedule[min(attempts, len(schedule)) - 1]


@dataclass(frozen=True, slots=True)
class CampaignPolicy:
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    hours: CallingHours = field(default_factory=CallingHours)
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))  # contacts without a `timezone`

    def merged(self, overrides: Mapping[str, object]) -> CampaignPolicy:
        """This policy with the keys given in `overrides` (a request body or a YAML section) replaced."""
        retry = self.retry
        if "max_attempts" in overrides:
            retry = dataclasses.replace(retry, max_attempts=_attempts(overrides["max_attempts"]))
        if "retry" in overrides:
            retry = dataclasses.replace(retry, backoff_s=_retry(overrides["retry"]))
        hours = _hours(overrides["calling_hours"]) if "calling_hours" in overrides else self.hours
        zone = parse_zone(overrides["timezone"], "timezone") if "timezone" in overrides else self.timezone
        return CampaignPolicy(retry, hours, zone)

    def describe(self) -> dict[str, object]:
        """The policy as the API shows it (the same keys it is given with: a resumed campaign reads it back)."""
        return {
            "max_attempts": self.retry.max_attempts,
            "retry": {str(k): list(v) for k, v in self.retry.backoff_s.items()},
            "calling_hours": [
                {"days": [DAYS[d] for d in sorted(w.days)], "start": w.start.strftime("%H:%M"),
                 "end": "24:00" if w.end == dt.time.max else w.end.strftime("%H:%M")} for w in self.hours.windows
            ],
            "timezone": self.timezone.key,
        }


@dataclass(frozen=True, slots=True)
class CampaignDefaults:
    """The YAML `campaigns:` section: the policy every campaign starts from, and the do-not-call file."""

    policy: CampaignPolicy = field(default_factory=CampaignPolicy)
    do_not_call_file: Path | None = None


def read_defaults(raw: object) -> CampaignDefaults:
    """The `campaigns:` section; PolicyError names the key below `campaigns`."""
    if not isinstance(raw, Mapping):
        raise PolicyError("campaigns", "a mapping", raw)
    _only(raw, POLICY_KEYS | {"do_not_call_file"})
    policy = read_policy({k: v for k, v in raw.items() if k != "do_not_call_file"})
    file = raw.get("do_not_call_file")
    if file is not None and (not isinstance(file, str) or not file.strip()):
        raise PolicyError("do_not_call_file", "a file path (one number a line)", file)
    return CampaignDefaults(policy, Path(file).expanduser() if file else None)


def read_policy(raw: object, base: CampaignPolicy | None = None) -> CampaignPolicy:
    """A policy from a mapping with (some of) POLICY_KEYS; other keys are an error."""
    if not isinstance(raw, Mapping):
        raise PolicyError("campaigns", "a mapping", raw)
    _only(raw, POLICY_KEYS)
    return (base or CampaignPolicy()).merged(raw)


def _only(raw: Mapping[object, object], allowed: frozenset[str]) -> None:
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise PolicyError(unknown[0], f"no such key (allowed here: {', '.join(sorted(allowed))})")


def parse_zone(value: object, key: str) -> ZoneInfo:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(key, "an IANA time zone name such as 'Europe/Berlin'", value)
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(key, "an IANA time zone name such as 'Europe/Berlin'", value) from None


def _attempts(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS:
        raise PolicyError("max_attempts", f"an integer from 1 to {MAX_ATTEMPTS}", value)
    return value


def _retry(value: object) -> dict[AttemptOutcome, tuple[float, ...]]:
    names = ", ".join(sorted(RETRYABLE))
    if not isinstance(value, Mapping):
        raise PolicyError("retry", f"a mapping of outcome ({names}) to back-off seconds", value)
    rules: dict[AttemptOutcome, tuple[float, ...]] = {}
    for name, schedule in value.items():
        key = f"retry.{name}"
        if name not in RETRYABLE:
            raise PolicyError(key, f"an outcome that can be retried: {names}")
        items = [schedule] if isinstance(schedule, int | float) and not isinstance(schedule, bool) else schedule
        if not isinstance(items, list) or not items or not all(_seconds(s) for s in items):
            raise PolicyError(key, f"back-off seconds, a number or a list of numbers from 0 to {MAX_BACKOFF_S:g}",
                              schedule)
        rules[AttemptOutcome(name)] = tuple(float(s) for s in items)
    return rules


def _seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_BACKOFF_S


def _hours(value: object) -> CallingHours:
    if not isinstance(value, list):
        raise PolicyError("calling_hours", "a list of {days, start, end} windows", value)
    return CallingHours(tuple(_window(item, f"calling_hours[{i}]") for i, item in enumerate(value)))


def _window(raw: object, key: str) -> Window:
    if not isinstance(raw, Mapping) or set(raw) - {"days", "start", "end"} or not {"start", "end"} <= set(raw):
        raise PolicyError(key, "a mapping with start and end ('09:00') and optionally days ([mon, tue, ...])", raw)
    start, end = _time(raw["start"], f"{key}.start"), _time(raw["end"], f"{key}.end")
    if end <= start:
        raise PolicyError(f"{key}.end", f"a time after start ({start:%H:%M}); split a window across midnight in two",
                          raw["end"])
    return Window(_days(raw.get("days", list(DAYS)), f"{key}.days"), start, end)


def _time(value: object, key: str) -> dt.time:
    m = _TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None or int(m[1]) > 24 or int(m[2]) > 59 or (int(m[1]) == 24 and int(m[2]) != 0):
        raise PolicyError(key, "a local time 'HH:MM' (00:00 to 24:00)", value)
    return dt.time.max if int(m[1]) == 24 else dt.time(int(m[1]), int(m[2]))


def _days(value: object, key: str) -> frozenset[int]:
    items = [value] if isinstance(value, str) else value
    expected = "weekdays: a list of mon, tue, wed, thu, fri, sat, sun (or 'mon-fri')"
    if not isinstance(items, list) or not items:
        raise PolicyError(key, expected, value)
    days: set[int] = set()
    for item in items:
        text = str(item).strip().lower()
        first, _, last = text.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise PolicyError(key, expected, item)
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)
