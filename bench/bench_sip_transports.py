"""SIP over UDP and over TCP side by side: call set-up time and the gateway's CPU per call.

How it is measured: the real gateway runs as a subprocess (`voicegate run`, echo agent, no models)
and SIPp's built-in `uac` scenario places `--calls` calls at `--rate` calls per second, each held
`--hold-ms` and ended with SIPp's BYE, once per transport: UDP (`-t u1`), TCP over one connection
for all calls (`-t t1`, a PBX trunk) and TCP with a connection per call (`-t tn`, phones). Set-up
time is SIPp's response time from the INVITE to the 200 OK (`-trace_rtt`, every call). CPU is the
gateway process's user + system time over the run (from /proc), divided by the calls; the echo
agent's RTP is in it too, the same for every transport, so the difference between rows is what the
transport costs.

    flock /work/heavy.lock .venv/bin/python bench/bench_sip_transports.py [--calls 40] [--rate 4]

At most ~2 calls are up at once: the pjsua2 wheel holds 4 calls in all (its PJSUA_MAX_CALLS),
whatever `sip.max_calls` says, and its own 486s would count as failures here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.rig.gateway import GatewayProcess, gateway_config  # noqa: E402
from tests.rig.ports import free_sip_port  # noqa: E402
from tests.rig.proc import wait_until  # noqa: E402
from tests.rig.sipp import run_sipp  # noqa: E402

TRANSPORTS = {"udp": "u1", "tcp (one connection)": "t1", "tcp (connection per call)": "tn"}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def run(transport: str, calls: int, rate: float, hold_ms: int, workdir: Path) -> dict[str, float]:
    config = gateway_config(max_calls=4)
    config["sip"]["tcp"] = True
    gw = GatewayProcess(workdir / f"gateway-{transport}", config)
    gw.start()
    try:
        gw.wait_ready()
        assert gw.process is not None
        before = cpu_seconds(gw.process.pid)
        sipp_dir = workdir / f"sipp-{transport}"
        result = run_sipp("sn:uac", f"127.0.0.1:{gw.sip_port}", sipp_dir, service="voicegate",
                          local_port=free_sip_port(), calls=calls, timeout=calls / rate + 60, name="uac",
                          extra_args=("-t", transport, "-r", f"{rate:g}", "-d", str(hold_ms),
                                      "-trace_rtt", "-rtt_freq", "1", "-max_socket", "1000"))
        wait_until(lambda: len(gw.find("rtp_released")) >= result.successful_calls, 30)
        cpu = cpu_seconds(gw.process.pid) - before
    finally:
        gw.stop()
    rtts = []
    for path in sipp_dir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2 and parts[1].strip():
                rtts.append(float(parts[1]))
    rtts.sort()
    return {"ok": result.successful_calls, "failed": result.failed_calls, "setups": len(rtts),
            "median_ms": statistics.median(rtts) if rtts else float("nan"),
            "p95_ms": rtts[int(0.95 * (len(rtts) - 1))] if rtts else float("nan"),
            "max_ms": rtts[-1] if rtts else float("nan"), "cpu_ms_per_call": 1000 * cpu / max(1, calls)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--hold-ms", type=int, default=500)
    args = parser.parse_args()
    print(f"{args.calls} calls at {args.rate:g}/s, each held {args.hold_ms} ms (echo agent)")
    print(f"{'transport':28} {'ok':>4} {'failed':>6} {'setup median':>13} {'p95':>8} {'max':>8} {'CPU/call':>9}")
    with tempfile.TemporaryDirectory(prefix="bench-sip-") as tmp:
        for label, transport in TRANSPORTS.items():
            r = run(transport, args.calls, args.rate, args.hold_ms, Path(tmp))
            print(f"{label:28} {r['ok']:>4} {r['failed']:>6} {r['median_ms']:>10.1f} ms {r['p95_ms']:>5.1f} ms "
                  f"{r['max_ms']:>5.1f} ms {r['cpu_ms_per_call']:>6.1f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
