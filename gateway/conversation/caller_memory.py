"""Caller memory for one call: who is calling (at the greeting) and what they said (at the end).

Memory may live in a shared database that is slow or away: the greeting waits at most
`_MEMORY_WAIT_S` for the caller's record, and the end of the call at most that long for its write
(which goes on in the background). Both run on the controller thread, never on the SIP thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from gateway.conversation.caller_facts import call_reason, caller_name
from gateway.store import CallerRecord, Store, StoreError

_MEMORY_WAIT_S = 0.5
_MEMORY_IO = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memory")


class CallerMemory:
    def __init__(self, store: Store | None, caller_id: str | None, log: Any):
        self.store = store
        self.caller_id = caller_id
        self.log = log

    def recall(self) -> CallerRecord | None:
        if self.store is None or not self.caller_id:
            return None
        lookup = _MEMORY_IO.submit(self.store.caller, self.caller_id)
        try:
            return lookup.result(timeout=_MEMORY_WAIT_S)
        except StoreError as exc:  # a database that is down (restarting) costs the memory, not the call
            self.log.error("caller_memory_unavailable", error=str(exc))
        except FutureTimeout:  # nor does a slow one cost the caller a silent start
            self.log.warning("caller_memory_slow", waited_s=_MEMORY_WAIT_S, on="lookup")
        return None

    def remember(self, lines: list[str]) -> None:
        if self.store is None or not self.caller_id or not lines:
            return
        name = next((n for n in map(caller_name, lines) if n), None)
        reason = next((r for r in map(call_reason, lines) if r), None)
        write = _MEMORY_IO.submit(self.store.record_call, self.caller_id, name=name, reason=reason)
        try:
            write.result(timeout=_MEMORY_WAIT_S)
        except FutureTimeout:
            self.log.warning("caller_memory_slow", waited_s=_MEMORY_WAIT_S, on="write")
            return
        except Exception:
            self.log.exception("caller_memory_failed")
            return
        self.log.info("caller_remembered", caller_id=self.caller_id, name=name, reason=reason)


def returning_caller_note(known: CallerRecord) -> str:
    """What the LLM is told about a caller it knows: their name, last reason and open requests."""
    about = f" Last time they called about: {known.last_reason}." if known.last_reason else ""
    requests = f" Open requests: {'; '.join(known.open_requests)}." if known.open_requests else ""
    return f"The caller is {known.name}, a returning caller.{about}{requests}"
