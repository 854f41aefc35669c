"""What the web console's live feed costs a call, and how fast a transcript line reaches a page.

Run from the repository root::

    python bench/bench_console_feed.py [--events 20000] [--samples 300]

1. Hook cost: the wall time of `CallFeed.record()` (the observer `CallReporting.record_to` calls
   on a call's controller thread for each recorded event), with 0, 1, 8 and 32 (the cap) live
   pages subscribed, each drained by its own thread as the HTTP side does.
2. Record to page: a real `HttpApi` with the console on 127.0.0.1, one logged-in SSE client
   reading `/console/events`; the time from `record()` to the event's line read by the client,
   one event at a time (p50, p95, max).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import queue
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.agents.base import RecordKind  # noqa: E402
from gateway.console import CallFeed, Console, ConsoleSources, Credentials  # noqa: E402
from gateway.http_api import HttpApi  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402

PASSWORD = "bench-console-password"


class OneCall:
    """The gateway as the console sees it: one call up, nothing else."""

    draining = False

    def list_calls(self) -> list[dict[str, object]]:
        return [{"call_id": "bench", "remote": "sip:2002@pbx", "agent": "a", "started_at": 0.0, "state": "confirmed"}]

    def hangup(self, call_id: str) -> bool:
        return False

    def originate(self, *args: object) -> str:
        raise ValueError("not here")

    def wait_ended(self, call_id: str, timeout: float) -> bool:
        return True

    def readiness(self) -> dict[str, object]:
        return {"ready": True}

    def drain(self) -> int:
        return 0


def hook_cost(events: int, pages: int) -> float:
    """Mean µs per record() with `pages` subscribers drained by their own threads."""
    feed = CallFeed()
    stop = threading.Event()
    subs = [feed.subscribe() for _ in range(pages)]

    def drain(sub) -> None:
        while not stop.is_set():
            with contextlib.suppress(queue.Empty):
                sub.events.get(timeout=0.1)

    threads = [threading.Thread(target=drain, args=(s,), daemon=True) for s in subs]
    for t in threads:
        t.start()
    fields: dict[str, object] = {"start": 1.0, "end": 2.0, "text": "What time do you open on Saturday?"}
    start = time.perf_counter()
    for _ in range(events):
        feed.record("bench", RecordKind.CALLER_SPEECH, fields)
    elapsed = time.perf_counter() - start
    stop.set()
    for t in threads:
        t.join()
    return elapsed / events * 1e6


def record_to_page(samples: int) -> list[float]:
    feed = CallFeed()
    control = OneCall()
    sources = ConsoleSources(control=control, metrics=Metrics(), credentials=Credentials(None, PASSWORD, None),
                             feed=feed)
    api = HttpApi(("127.0.0.1", 0), None, control, sources.metrics, console=Console(sources))
    api.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        conn.request("POST", "/console/login", urlencode({"password": PASSWORD}),
                     {"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        cookie = response.getheader("Set-Cookie").split(";", 1)[0]
        response.read()
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        conn.request("GET", "/console/events", headers={"Cookie": cookie})
        stream = conn.getresponse()
        while not stream.fp.readline().startswith(b"event: ready"):
            pass
        delays = []
        for i in range(samples):
            sent = time.perf_counter()
            feed.record("bench", RecordKind.CALLER_SPEECH, {"start": 1.0, "end": 2.0, "text": f"line {i}"})
            while not stream.fp.readline().startswith(b"data: "):
                pass
            delays.append((time.perf_counter() - sent) * 1000)
        stream.close()
        conn.close()
        return delays
    finally:
        api.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    print("hook cost on the call's thread (CallFeed.record):")
    for pages in (0, 1, 8, 32):
        print(f"  {pages:2d} live pages: {hook_cost(args.events, pages):6.1f} µs per recorded event")
    delays = sorted(record_to_page(args.samples))
    p95 = delays[int(0.95 * (len(delays) - 1))]
    print(f"record -> SSE line read by a client ({len(delays)} events): p50 {statistics.median(delays):.2f} ms, "
          f"p95 {p95:.2f} ms, max {delays[-1]:.2f} ms")


if __name__ == "__main__":
    main()
