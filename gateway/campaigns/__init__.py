"""Outbound call campaigns: a contact list dialled with bounded concurrency and rate, a policy
(retries per outcome with back-off, calling hours in each contact's time zone), a do-not-call
list checked right before each dial, and results per contact.

| module | job |
|---|---|
| `contacts.py` | the uploaded CSV, strictly parsed; `Contact` (number, time zone, call variables) |
| `policy.py` | `CampaignPolicy` from YAML defaults and request overrides: retries, calling hours, zone |
| `hours.py` | calling-hours windows in local time, DST-correct |
| `outcomes.py` | `EndedCall` (what a call left) -> `AttemptOutcome` (busy, no answer, machine, ...) |
| `dnc.py` | the do-not-call list: the store's table and an optional file |
| `scheduler.py` | `Campaign`: the one thread that dials, reaps and reschedules |
| `results.py` | per-contact results as JSON and CSV |

Import from the modules themselves: the config reader imports `policy.py`, and this package must
not pull the scheduler (and through it the call and store code) into every config import.
"""
