"""What the SIP abuse tests share: a guarded gateway, a legitimate call kept up meanwhile, and a
readable account of a gateway that died.

The abuse tests (the fuzz campaign, the two abort reproductions of issue 10) all ask the same three
questions: is the process alive, did the call that was up keep its audio, does a new call work. The
call is the flood test's: SIPp signals, :class:`TimedPeer` plays a tone and timestamps every packet
it receives on its own thread, the echo agent sends the tone back.

A second source without a second machine: Linux answers the whole of 127.0.0.0/8 on ``lo``, so a
socket bound to 127.0.0.9 is a different source address for the gateway's ``trusted_sources`` check.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtp.g711 import PCMU
from tests.integration.test_barge_in_echo import start_call
from tests.integration.test_sip_flood import TimedPeer
from tests.rig.gateway import GatewayProcess, gateway_config
from tests.rig.ports import free_port_pair
from tests.rig.proc import wait_until
from tests.rig.rtp_peer import rms_dbfs
from tests.rig.sipp import SippResult

TRUSTED_HOST = "127.0.0.1"
UNTRUSTED_HOST = "127.0.0.9"


def guarded_config(max_calls: int, invites_per_s: int = 5, burst: int = 20) -> dict[str, Any]:
    """The rig's echo gateway, taking INVITEs from 127.0.0.1 only (the PBX), with the given rate limit."""
    config = gateway_config(max_calls=max_calls)
    config["sip"]["trusted_sources"] = [f"{TRUSTED_HOST}/32"]
    config["sip"]["invites_per_source_per_s"] = invites_per_s
    config["sip"]["invite_burst"] = burst
    return config


def alive(gw: GatewayProcess) -> bool:
    return gw.process is not None and gw.process.poll() is None


def last_words(gw: GatewayProcess) -> list[str]:
    """What the process printed that is not a JSON log line: pjsip's ``Assertion ... failed``, a traceback."""
    with gw._cond:
        return [str(e.get("text", "")) for e in gw.lines if e.get("event") == "<non-json>"]


def death_note(gw: GatewayProcess) -> str:
    """"alive", or the exit status (negative: the signal; -6 is an abort) and the last lines that are not JSON."""
    if gw.process is None or alive(gw):
        return "alive"
    time.sleep(0.5)  # the log reader takes in what the process printed as it died
    return f"exit {gw.process.returncode}: " + " | ".join(last_words(gw)[-4:])


def crash_signature(gw: GatewayProcess) -> str | None:
    """The assertion (or fatal error) line a dead gateway printed last, if any."""
    hits = [t for t in last_words(gw) if "Assertion" in t or "Fatal Python error" in t or "Segmentation" in t]
    return hits[-1] if hits else None


@dataclass(frozen=True)
class CallAudio:
    """The legitimate call's received audio over a window of time."""

    packets: int
    expected: int
    longest_gap_s: float
    loud: int  # packets that carry the caller's tone back (echo agent)

    def describe(self) -> str:
        return (f"{self.packets} of {self.expected} packets, longest gap {self.longest_gap_s * 1000:.0f} ms, "
                f"{self.loud} carry the tone")


@dataclass
class LegitCall:
    """A normal call, up before the abuse starts and meant to outlast it."""

    peer: TimedPeer
    thread: threading.Thread

    @classmethod
    def start(cls, gw: GatewayProcess, workdir: Path, seconds: float) -> LegitCall:
        samples = np.arange(int(8000 * (seconds + 2)))
        tone = (8000 * np.sin(2 * np.pi * 440 * samples / 8000)).astype(np.int16)
        peer = TimedPeer(free_port_pair())
        peer.play_at(0, tone)
        seen = len(gw.find("call_confirmed"))
        thread = start_call(gw, workdir, peer, seconds=seconds)
        wait_until(lambda: len(gw.find("call_confirmed")) > seen, 10)
        return cls(peer, thread)

    def audio(self, t0: float, t1: float) -> CallAudio:
        """Packets received within [t0, t1]; the longest gap counts the edges, so silence at either end shows."""
        during = [(t, payload) for t, payload in list(self.peer.arrivals) if t0 <= t <= t1]
        times = [t0, *(t for t, _ in during), t1]
        loud = sum(rms_dbfs(PCMU.decode(payload)) > -30 for _, payload in during)
        return CallAudio(len(during), int((t1 - t0) / 0.02), float(np.diff(times).max()), loud)

    def finish(self, timeout: float) -> SippResult | None:
        """Wait for SIPp's BYE (the call's planned end), stop the media; SIPp's result if it finished."""
        self.thread.join(timeout)
        self.peer.stop()
        return self.thread.result.get("sipp")  # type: ignore[attr-defined]
