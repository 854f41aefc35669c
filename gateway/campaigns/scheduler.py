"""Outbound call campaigns: dial a contact list with bounded concurrency and rate, within calling
hours, never a number on the do-not-call list, trying again after busy or unanswered calls.

A campaign must never overload the trunk or the gateway's models, so it keeps at most
`concurrency` of its calls up and starts calls no faster than `calls_per_second` (spacing on a
monotonic clock: start N+1 is never earlier than start N + 1/rate).  A failed originate counts as
failed, still uses its slot in the rate, and the campaign goes on: one bad number in a list of
thousands must not stop the rest, nor make the gateway hammer a failing trunk.

Which contact goes next: the one whose turn (`due`, wall-clock time) came first, in list order
at first and later at the time a retry's back-off or a closed window set.  Right before dialling,
its calling hours are checked in its own time zone (closed: it waits until they open) and then the
do-not-call list, so a number added while the campaign runs is never dialled.

A campaign can be paused (no new calls; those up finish), resumed and cancelled, and it is kept in
the store (`persist.py`) as it goes, so a restarted gateway takes it up where it was: a contact whose
call was up when the process ended gets an `interrupted` attempt, which the retry policy judges like
any other outcome (not retried unless the policy names it), so nobody is dialled twice by accident.

Everything runs on one thread that polls `GatewayControl.ended_call(call_id)`, so the clocks and
sleep can be injected and a test drives a whole campaign deterministically through `run()`.  The
results are frozen snapshots replaced under a lock, so `status()` and `results()` are safe from
any thread.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from gateway.campaigns.contacts import Contact
from gateway.campaigns.dnc import DoNotCallError, DoNotCallList
from gateway.campaigns.outcomes import AttemptOutcome, EndedCall, classify
from gateway.campaigns.persist import CampaignArchive, CampaignSpec, CampaignState
from gateway.campaigns.policy import CampaignPolicy
from gateway.campaigns.results import Attempt, ContactResult, ContactStatus, tally

if TYPE_CHECKING:
    from gateway.http_api import GatewayControl

log = structlog.get_logger("campaign")

DNC_UNREADABLE_RETRY_S = 60.0  # a do-not-call list that cannot be read: that contact waits this long
_MAX_IDLE_WAIT_S = 60.0  # with nothing up, wake at least this often (a wall clock that was set moves due times)


@dataclass
class Campaign:
    """One campaign run; `start()` runs it on its own thread, `status()`/`results()` are safe from any thread."""

    contacts: list[Contact]
    agent: str | None
    concurrency: int
    calls_per_second: float
    control: GatewayControl
    account: str | None = None
    policy: CampaignPolicy = field(default_factory=CampaignPolicy)
    do_not_call: DoNotCallList | None = None
    archive: CampaignArchive | None = None  # where the campaign and each contact's latest result are kept
    name: str = ""  # the campaign's id, for the logs
    restored: list[ContactResult] | None = None  # a resumed campaign's kept results, one per contact
    state: CampaignState = CampaignState.RUNNING  # a resumed campaign may start paused
    clock: Callable[[], float] = time.monotonic  # rate spacing
    wall: Callable[[], float] = time.time  # calling hours and back-off
    sleep: Callable[[float], None] | None = None  # None: wait on the stop event, so stop() is prompt
    poll_interval: float = 0.2  # how often active calls are checked for their end

    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _paused: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _contacts: dict[int, Contact] = field(default_factory=dict, init=False, repr=False)
    _results: dict[int, ContactResult] = field(default_factory=dict, init=False, repr=False)
    _due: list[tuple[float, int]] = field(default_factory=list, init=False, repr=False)  # (wall time, row)
    _active: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # call_id -> row
    _started: int = field(default=0, init=False)
    _completed: int = field(default=0, init=False)
    _failed: int = field(default=0, init=False)
    _running: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not self.calls_per_second > 0:
            raise ValueError("calls_per_second must be greater than 0")
        rows = [c.row for c in self.contacts]
        if self.restored is None and rows != list(range(1, len(self.contacts) + 1)):
            raise ValueError("contacts must be numbered 1..n in list order")
        if rows != sorted(set(rows)) or (self.restored is not None and [r.row for r in self.restored] != rows):
            raise ValueError("contacts (and kept results) must be in list order, one per row")
        self._contacts = {c.row: c for c in self.contacts}
        self._results = {r.row: r for r in self.restored} if self.restored is not None else {
            c.row: ContactResult(c.row, c.to, c.zone.key, name=_name(c)) for c in self.contacts}
        self._due = _queue(self._results.values())
        calls = [a for r in self._results.values() for a in r.attempts if a.call_id is not None]
        self._started, self._completed = len(calls), sum(1 for a in calls if a.outcome is not None)
        if self.state is CampaignState.PAUSED:
            self._paused.set()
        self._log = log.bind(campaign_id=self.name) if self.name else log

    def start(self) -> None:
        """Run the campaign on a daemon thread (so it never holds up process exit)."""
        if self._thread is not None:
            raise RuntimeError("campaign already started")
        self._running = True
        self._thread = threading.Thread(target=self.run, name="campaign", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Start no more calls in this process (a shutdown): the kept state stays, so a restart resumes it.
        Calls already up are left to finish (and are still counted)."""
        self._stop.set()

    def cancel(self) -> bool:
        """Stop for good (the operator): no more calls, kept as cancelled; False if it had already finished."""
        return self._change(CampaignState.CANCELLED, {CampaignState.RUNNING, CampaignState.PAUSED})

    def pause(self) -> bool:
        """Start no calls until `resume()` (the calls up finish); False unless it was running."""
        return self._change(CampaignState.PAUSED, {CampaignState.RUNNING})

    def resume(self) -> bool:
        """Go on after `pause()`; False unless it was paused."""
        return self._change(CampaignState.RUNNING, {CampaignState.PAUSED})

    def _change(self, to: CampaignState, allowed: set[CampaignState]) -> bool:
        with self._lock:
            if self.state not in allowed:
                return False
            self.state = to
        if to is CampaignState.PAUSED:
            self._paused.set()
        else:
            self._paused.clear()
        if to is CampaignState.CANCELLED:
            self._stop.set()
        if self.archive is not None:
            self.archive.state(to)
        self._log.info("campaign_state", state=str(to))
        return True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the campaign thread; True once it has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return not self._running

    def results(self) -> list[ContactResult]:
        with self._lock:
            return list(self._results.values())

    def spec(self) -> CampaignSpec:
        return CampaignSpec(self.agent, self.account, self.concurrency, self.calls_per_second, self.policy)

    def status(self) -> dict[str, object]:
        with self._lock:
            counts = tally((r.status, None if r.last is None else str(r.last.outcome), bool(r.attempts))
                           for r in self._results.values())
            return {
                "state": str(self.state),
                "total": counts.pop("total"),
                "started": self._started,
                "completed": self._completed,
                "failed": self._failed,
                "active": len(self._active),
                "running": self._running,
                "stopped": self._stop.is_set(),
                **counts,
            }

    def run(self) -> None:
        """The campaign loop; returns once every contact has a final outcome (or stop()) and its calls ended."""
        self._running = True
        if self.archive is not None:
            self.archive.begin(self.spec(), self.state, self.contacts, self.results())
        self._recover()
        next_start = self.clock()
        try:
            while True:
                self._reap()
                if self._stop.is_set() or not self._due:
                    if not self._active:
                        self._finished()
                        return
                    self._wait(self.poll_interval)
                    continue
                if self._paused.is_set() or len(self._active) >= self.concurrency:
                    self._wait(self.poll_interval)
                    continue
                now = self.clock()
                if now < next_start:
                    self._wait(min(self.poll_interval, next_start - now))
                    continue
                wall = self.wall()
                due = self._due[0][0]
                if due > wall:
                    self._wait(min(due - wall, self.poll_interval if self._active else _MAX_IDLE_WAIT_S))
                    continue
                if self.control.draining:  # the gateway is going away: keep the rest of the list, unfailed
                    self._log.info("campaign_stopped", reason="draining", left=len(self._due))
                    self._stop.set()
                    continue
                contact = self._contacts[heapq.heappop(self._due)[1]]
                if self._may_dial(contact, wall):
                    next_start = max(next_start, now) + 1.0 / self.calls_per_second
                    self._originate(contact, wall)
        finally:
            with self._lock:
                self._running = False

    def _recover(self) -> None:
        """A resumed campaign's contacts whose call was up when the process ended: `interrupted`, then the policy."""
        for result in self.results():
            last = result.last
            if result.status is ContactStatus.CALLING and (last is None or last.outcome is not None):
                self._schedule(self._contacts[result.row], self.wall())  # not a call up after all: its turn again
            elif result.status is ContactStatus.CALLING and last is not None and last.outcome is None:
                self._log.warning("campaign_attempt_interrupted", row=result.row, call_id=last.call_id)
                self._after(self._contacts[result.row], dataclasses.replace(
                    last, outcome=AttemptOutcome.INTERRUPTED, reason="the gateway stopped while the call was up"),
                    replace_last=True)

    def _finished(self) -> None:
        """Every contact done (not stopped by a shutdown or drain, which a restart resumes): kept as finished."""
        with self._lock:
            done = not self._due and self.state is not CampaignState.CANCELLED
            if done:
                self.state = CampaignState.FINISHED
        if done and self.archive is not None:
            self.archive.state(CampaignState.FINISHED)

    # --- before the dial --------------------------------------------------------------------------

    def _may_dial(self, contact: Contact, wall: float) -> bool:
        """Calling hours, then the do-not-call list; a contact that may not be dialled now is rescheduled or done."""
        opens = self.policy.hours.next_open(wall, contact.zone)
        if opens is None or opens > wall:
            if opens is None:  # no window ever opens (cannot happen with validated windows): never dial
                self._finish(contact, Attempt(wall, None, AttemptOutcome.OTHER, reason="no calling hours"))
            else:
                self._schedule(contact, opens)
            return False
        if self.do_not_call is None:
            return True
        try:
            blocked = self.do_not_call.blocked(contact.to)
        except DoNotCallError as exc:
            self._log.error("campaign_do_not_call_unreadable", row=contact.row, error=str(exc),
                            retry_in_s=DNC_UNREADABLE_RETRY_S)
            self._schedule(contact, wall + DNC_UNREADABLE_RETRY_S)
            return False
        if blocked:
            self._log.info("campaign_do_not_call", row=contact.row)
            self._finish(contact, Attempt(wall, None, AttemptOutcome.DO_NOT_CALL))
        return not blocked

    # --- calls ------------------------------------------------------------------------------------

    def _originate(self, contact: Contact, wall: float) -> None:
        try:
            call_id = self.control.originate(contact.to, self.agent, dict(contact.variables), self.account)
        except ValueError as exc:  # a bad number, an unknown agent: trying again would not help
            self._log.warning("campaign_originate_failed", row=contact.row, error=str(exc))
            self._count(failed=1)
            self._finish(contact, Attempt(wall, None, AttemptOutcome.INVALID, reason=str(exc)))
            return
        except Exception as exc:  # anything else must not end the campaign; the policy may retry it
            self._log.warning("campaign_originate_failed", row=contact.row, error=str(exc))
            self._count(failed=1)
            self._after(contact, Attempt(wall, None, AttemptOutcome.FAILED, reason=str(exc)))
            return
        with self._lock:
            self._started += 1
            self._active[call_id] = contact.row
        result = self._results[contact.row]
        self._publish(dataclasses.replace(result, status=ContactStatus.CALLING, next_attempt_at=None,
                                          attempts=(*result.attempts, Attempt(wall, call_id))))

    def _reap(self) -> None:
        for call_id, row in list(self._active.items()):
            ended = self._ended(call_id)
            if ended is None:
                continue
            outcome = classify(ended)
            with self._lock:
                del self._active[call_id]
                self._completed += 1
            result = self._results[row]
            attempt = dataclasses.replace(
                result.attempts[-1], outcome=outcome, code=ended.code, reason=ended.reason,
                duration_s=ended.duration_s, amd=ended.amd, record=ended.record)
            self._log.info("campaign_attempt_ended", call_id=call_id, row=row, outcome=str(outcome),
                           attempt=result.calls, code=ended.code)
            self._after(self._contacts[row], attempt, replace_last=True)

    def _ended(self, call_id: str) -> EndedCall | None:
        try:
            return self.control.ended_call(call_id)
        except Exception:  # a gateway that lost track of the call: do not keep the slot forever
            self._log.exception("campaign_wait_failed", call_id=call_id)
            return EndedCall(call_id, 0, "other: the gateway lost track of the call", False, 0.0)

    # --- bookkeeping (campaign thread; each change replaces a snapshot under the lock) -------------

    def _after(self, contact: Contact, attempt: Attempt, replace_last: bool = False) -> None:
        """Retry per the policy, or finish the contact, after `attempt`."""
        result = self._results[contact.row]
        attempts = (*result.attempts[: -1 if replace_last else None], attempt)
        delay = None if attempt.outcome is None else self.policy.retry.retry_after(attempt.outcome, len(attempts))
        if delay is None:
            self._finish(contact, attempt, replace_last)
            return
        due = self.wall() + delay
        heapq.heappush(self._due, (due, contact.row))
        self._publish(dataclasses.replace(result, status=ContactStatus.SCHEDULED, attempts=attempts,
                                          next_attempt_at=due))

    def _finish(self, contact: Contact, attempt: Attempt, replace_last: bool = False) -> None:
        result = self._results[contact.row]
        attempts = (*result.attempts[: -1 if replace_last else None], attempt)
        self._publish(dataclasses.replace(result, status=ContactStatus.DONE, attempts=attempts, next_attempt_at=None))

    def _schedule(self, contact: Contact, due: float) -> None:
        heapq.heappush(self._due, (due, contact.row))
        self._publish(dataclasses.replace(self._results[contact.row], status=ContactStatus.SCHEDULED,
                                          next_attempt_at=due))

    def _publish(self, result: ContactResult) -> None:
        """Replace the contact's snapshot (under the lock: readers see whole snapshots) and keep it in the store."""
        with self._lock:
            self._results[result.row] = result
        if self.archive is not None:
            self.archive.results([result])

    def _count(self, failed: int) -> None:
        with self._lock:
            self._failed += failed

    def _wait(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        elif self._stop.is_set():  # stopped, waiting for calls to end: the event no longer blocks
            time.sleep(seconds)
        else:
            self._stop.wait(seconds)


def _queue(results: Iterable[ContactResult]) -> list[tuple[float, int]]:
    """The contacts still to dial as a heap of (due, row): pending ones first, in list order."""
    due = [(float("-inf") if r.status is ContactStatus.PENDING else r.next_attempt_at or float("-inf"), r.row)
           for r in results if r.status in (ContactStatus.PENDING, ContactStatus.SCHEDULED)]
    heapq.heapify(due)
    return due


def _name(contact: Contact) -> str | None:
    """The contact's `name` call variable (any case), for the results."""
    return next((v for k, v in contact.variables.items() if k.lower() == "name" and v), None)
