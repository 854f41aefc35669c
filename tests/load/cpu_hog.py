"""Keep every core busy for a bounded time, so a test run sees the machine CI may give it.

CI machines are shared: a test whose timeout is really a latency target passes on a quiet machine
and fails on a busy one. `make test-under-load` runs the unit suite and the conversation
integration tests beside this hog. It stops by itself after `--max-seconds`, or as soon as the
process that started it is gone, so it can never outlive the run.

    python tests/load/cpu_hog.py --workers 2 --max-seconds 1800
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import time


def _spin(deadline: float, parent: int) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    x = 0
    while time.monotonic() < deadline:
        for _ in range(200_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        if os.getppid() != parent:  # our parent (the hog) died: stop
            return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--watch-pid", type=int, default=os.getppid(), help="stop when this process is gone")
    args = parser.parse_args()
    deadline = time.monotonic() + args.max_seconds
    workers = [multiprocessing.Process(target=_spin, args=(deadline, os.getpid()), daemon=True)
               for _ in range(args.workers)]
    for w in workers:
        w.start()
    print(f"cpu_hog: {args.workers} workers for at most {args.max_seconds:.0f} s", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    try:
        while time.monotonic() < deadline and any(w.is_alive() for w in workers):
            try:
                os.kill(args.watch_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(1.0)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
