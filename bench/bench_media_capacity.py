"""Media engine capacity: N concurrent G.711 echo calls on loopback, on one core.

How it is measured: this process runs the real media path (one MediaClock thread, N RtpSessions
with the echo agent, real UDP sockets on 127.0.0.1) pinned to CPU 0. A separate load-generator
process pinned to CPU 1 plays the far ends: for every call it sends a G.711 µ-law packet every
20 ms on absolute deadlines and counts the echoed packets it gets back. For each N we report the
media process's CPU time per call (as % of one core), media-clock tick lateness p50/p99/max, the
tick work time, and the share of sent packets echoed back. Bounded: every run lasts `--seconds`.
With ``--srtp`` every call count runs twice, plain RTP then SRTP (AES_CM_128_HMAC_SHA1_80, the
far ends encrypting and checking with their own libsrtp sessions), so the cost of SRTP is a ratio
measured in one run.

    .venv/bin/python bench/bench_media_capacity.py [--calls 25 50 100 150] [--seconds 10] [--srtp]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import secrets
import socket
import struct
import time

from gateway.agents.base import CallContext
from gateway.agents.echo import EchoAgent
from gateway.calls.media import CallMedia
from gateway.logs import configure_logging
from rtp.clock import MediaClock
from rtp.g711 import PCMU
from rtp.ports import PortAllocator
from rtp.session import RemoteMedia, RtpSession
from rtp.srtp import SrtpContext, SrtpError, SrtpKeys

SUITE = "AES_CM_128_HMAC_SHA1_80"


def _drain(sock: socket.socket, payload: bytes, srtp: SrtpContext | None) -> int:
    """Count the waiting packets that carry our own audio back (silence does not count)."""
    echoed = 0
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return echoed
        if srtp is not None:
            try:
                data = srtp.unprotect(data)
            except SrtpError:
                continue
        echoed += data[12:] == payload


def _generator(ports: list[int], local_ports: list[int], seconds: float, ready, result,
               keys: list[SrtpKeys] | None = None) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})
    socks = []
    for lp in local_ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", lp))
        s.setblocking(False)
        socks.append(s)
    # µ-law codes that survive decode + encode exactly, so an echoed payload is recognisable.
    payload = bytes(0x10 + i % 0x60 for i in range(160))
    contexts: list[SrtpContext | None] = [SrtpContext(k) for k in keys] if keys else [None] * len(socks)
    ready.set()
    sent = received = 0
    start = time.monotonic()
    n = 0
    seq = 0
    while True:
        deadline = start + n * 0.02
        now = time.monotonic()
        if now - start >= seconds:
            break
        if deadline > now:
            time.sleep(deadline - now)
        header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, 0x1234)
        for s, port, srtp in zip(socks, ports, contexts, strict=True):
            packet = header + payload if srtp is None else srtp.protect(header + payload)
            s.sendto(packet, ("127.0.0.1", port))
            sent += 1
            received += _drain(s, payload, srtp)
        seq += 1
        n += 1
    time.sleep(0.2)
    for s, srtp in zip(socks, contexts, strict=True):
        received += _drain(s, payload, srtp)
        s.close()
    result.put((sent, received))


def run(calls: int, seconds: float, srtp: bool = False) -> dict:
    allocator = PortAllocator("127.0.0.1", 40000, 40000 + 4 * calls + 10)
    far = PortAllocator("127.0.0.1", 45000, 45000 + 4 * calls + 10)
    clock = MediaClock()
    sessions = []
    ours = [SrtpKeys(SUITE, secrets.token_bytes(30), secrets.token_bytes(30)) for _ in range(calls)] if srtp else []
    far_keys = [SrtpKeys(SUITE, k.rx_key, k.tx_key) for k in ours] if srtp else None
    far_pairs = [far.allocate() for _ in range(calls)]
    far_ports = [p.rtp_port for p in far_pairs]
    for p in far_pairs:
        p.close()  # the generator process binds them
    for i in range(calls):
        context = CallContext(call_id=f"bench-{i}", direction="inbound", local_uri="", remote_uri="",
                              agent_name="echo", hangup=lambda r: None, send_dtmf=lambda d: None)
        agent = EchoAgent(context)
        session = RtpSession(allocator.allocate(), CallMedia(agent, lambda idle: None),
                             inactivity_timeout_s=3600)
        session.configure(RemoteMedia(rtp_address=("127.0.0.1", far_ports[i]),
                                      rtcp_address=("127.0.0.1", far_ports[i] + 1), codec=PCMU,
                                      srtp=ours[i] if srtp else None))
        sessions.append(session)
        clock.add(session)
    ready, result = mp.Event(), mp.Queue()
    gen = mp.Process(target=_generator, args=([s.local_port for s in sessions], far_ports, seconds, ready,
                                              result, far_keys))
    gen.start()
    ready.wait()
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    clock.start()
    gen.join(seconds + 30)
    clock.stop()
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    sent, received = result.get(timeout=5)
    stats = clock.stats()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    for session in sessions:
        session.close()
    return {
        "calls": calls,
        "media": "SRTP" if srtp else "RTP",
        "cpu_pct_of_core": 100 * cpu / wall,
        "cpu_pct_per_call": 100 * cpu / wall / calls,
        "lateness_p50_ms": stats.lateness_p50_ms,
        "lateness_p99_ms": stats.lateness_p99_ms,
        "lateness_max_ms": stats.lateness_max_ms,
        "work_p50_ms": stats.work_p50_ms,
        "work_p99_ms": stats.work_p99_ms,
        "skipped_ticks": stats.skipped,
        "echoed_pct": 100 * received / sent if sent else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[25, 50, 100, 150])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--srtp", action="store_true", help="run each call count with plain RTP, then with SRTP")
    args = parser.parse_args()
    configure_logging("warning")  # one info line per session would drown the table
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {0})
    print(__doc__.split("\n\n")[1].replace("\n", " "))
    print()
    print("| calls | media | media CPU (% of one core) | CPU per call (%) | tick lateness p50 / p99 / max (ms) "
          "| tick work p50 / p99 (ms) | skipped ticks | packets echoed |")
    print("|---|---|---|---|---|---|---|---|")
    for calls in args.calls:
        for srtp in ((False, True) if args.srtp else (False,)):
            _row(run(calls, args.seconds, srtp))


def _row(r: dict) -> None:
    print(f"| {r['calls']} | {r['media']} | {r['cpu_pct_of_core']:.1f} | {r['cpu_pct_per_call']:.2f} | "
          f"{r['lateness_p50_ms']:.2f} / {r['lateness_p99_ms']:.2f} / {r['lateness_max_ms']:.2f} | "
          f"{r['work_p50_ms']:.2f} / {r['work_p99_ms']:.2f} | {r['skipped_ticks']} | "
          f"{r['echoed_pct']:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
