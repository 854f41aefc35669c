"""One call from a scripted caller through the real gateway, for the benchmarks that listen at the caller.

SIPp does the signalling with `tests/integration/scenarios/external_media.xml`, whose SDP points the
gateway at an `RtpPeer` that plays the caller and records the bot by arrival time. Several calls may
run at once: each peer takes the first call the gateway announced that no other peer took.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rtp.g711 import PCMU
from tests.rig.gateway import GatewayProcess
from tests.rig.rtp_peer import RtpPeer
from tests.rig.sipp import run_sipp

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "tests" / "integration" / "scenarios" / "external_media.xml"
ONSET_FRAMES = 3  # bot audio = three 20 ms frames above -40 dBFS in a row

_LOCK = threading.Lock()
_TAKEN: set[str] = set()


def bot_onset(peer: RtpPeer, after: int, until: int) -> int | None:
    """First tick in [after, until) that starts ONSET_FRAMES ticks of bot audio, or None."""
    run = 0
    for tick in range(after, until):
        run = run + 1 if peer.bot_active(tick) else 0
        if run == ONSET_FRAMES:
            return tick - ONSET_FRAMES + 1
    return None


def place_call(gw: GatewayProcess, workdir: Path, peer: RtpPeer, finished: threading.Event, max_s: float,
               started: list[float] | None = None) -> str:
    """Call the gateway with `peer` as the media end until `finished` is set (or `max_s`); its Call-ID.

    The SDP offers the peer's codec. `started`, if given, gets the wall time of the peer's tick 0, so
    the gateway's log lines can be placed on the peer's clock.
    """
    scenario = SCENARIO.read_text().replace("[peer_port]", str(peer.port)).replace("[call_ms]", str(int(max_s * 1000)))
    if peer.codec is not PCMU:
        pt = peer.codec.payload_type
        scenario = scenario.replace("RTP/AVP 0 101", f"RTP/AVP {pt} 101").replace(
            "a=rtpmap:0 PCMU/8000", f"a=rtpmap:{pt} {peer.codec.name}/8000")
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "external_media.xml"
    path.write_text(scenario)
    seen = len(gw.find("call_media"))
    thread = threading.Thread(target=run_sipp, args=(path, f"127.0.0.1:{gw.sip_port}", workdir / "sipp"),
                              kwargs={"service": "voicegate", "timeout": max_s + 30}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while len(gw.find("call_media")) <= seen and time.monotonic() < deadline:
        time.sleep(0.02)
    with _LOCK:
        mine = next(m for m in gw.find("call_media") if m["call_id"] not in _TAKEN)
        _TAKEN.add(mine["call_id"])
    if started is not None:
        started.append(time.time())
    peer.start(mine["local_port"])
    finished.wait(max_s)
    peer.stop()
    thread.join(max_s + 40)
    return str(mine["call_id"])
