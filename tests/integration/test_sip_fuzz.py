"""A SIP fuzz campaign against the running gateway while one legitimate call is up (issue 10).

Why: one untrusted INVITE a little over 4,000 bytes aborted the whole gateway process (pjsip's
``pjsip_rx_data_free_cloned: Assertion 'rdata' failed``), taking every call with it; nothing in the
suite sent a message of that size from a source outside ``sip.trusted_sources``. This campaign
would have: it sends mutated SIP (kinds and sizes in ``sip_fuzz_cases``: around the 4,000-byte
boundary and far beyond it, up to a 65,507-byte datagram) from a trusted (127.0.0.1) and an
untrusted (127.0.0.9) loopback source, alternating at random, paced at ``RATE`` datagrams a second.
Every 2xx to an INVITE is ACKed and hung up at once (``RawSipPeer``), so fuzz calls do not pile up.

It asserts, after the campaign: the process never died (a death stops the campaign and saves the
datagrams sent just before it under the test's tmp dir, ``crash-inputs/``); the legitimate call's
RTP kept flowing (longest inter-arrival gap, timed on the peer's own receive thread, within
``MAX_GAP_S``; at least 90 % of the packets; the echoed tone); no INVITE from the untrusted source
was ever answered 18x/2xx; a plain OPTIONS gets 200 and the log has no traceback; the legitimate
call ends normally; a new call works.

The figures (datagrams by kind and size, responses by code and source, crashes, the longest RTP
gap) are printed and written to ``fuzz-figures.json`` / ``.md`` in the test's tmp dir; a run's
figures are in docs/operations.md ("SIP fuzz campaign").

Bounded: ``COUNT`` datagrams at ``RATE`` per second (default 1,000 at 40/s: 25 s), cut off at twice
that; the whole test takes well under two minutes. Seeded: ``VOICEGATE_FUZZ_SEED`` replays a
campaign datagram for datagram; ``VOICEGATE_FUZZ_COUNT`` / ``VOICEGATE_FUZZ_RATE`` make a longer
one by hand, e.g. ``VOICEGATE_FUZZ_COUNT=20000 VOICEGATE_FUZZ_SEED=7 pytest -s tests/integration/test_sip_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.sip_abuse import (
    TRUSTED_HOST,
    UNTRUSTED_HOST,
    CallAudio,
    LegitCall,
    alive,
    crash_signature,
    death_note,
    guarded_config,
)
from tests.integration.sip_fuzz_cases import SIZE_BUCKETS, Mutation, next_case, size_bucket
from tests.integration.test_sip_torture import (
    Outcome,
    RawSipPeer,
    Torture,
    assert_echo_call_works,
    assert_healthy,
)
from tests.rig.gateway import GatewayProcess

SEED = int(os.environ.get("VOICEGATE_FUZZ_SEED", "10"))
COUNT = int(os.environ.get("VOICEGATE_FUZZ_COUNT", "1000"))
RATE = float(os.environ.get("VOICEGATE_FUZZ_RATE", "40"))
MAX_CALLS = 20  # room for fuzz INVITEs that became calls whose 200 went astray (a mangled Via): they end on
#                 pjsip's ACK timeout (32 s), and a new call must still find a slot right after the campaign
# Runs of this campaign measured 23-36 ms on an idle machine and 106 ms on a busy one (a CI run beside
# another session's benchmark); 200 ms, like the flood test, still fails a stalled media clock.
MAX_GAP_S = 0.200
OPEN_SOCKETS = 200  # per source; older ones are closed (select() takes 1024 descriptors at most)
SOURCES = {"trusted": TRUSTED_HOST, "untrusted": UNTRUSTED_HOST}


@dataclass
class Sent:
    source: str
    kind: str
    outcome: Outcome


@dataclass
class Campaign:
    """Sends the cases, files the answers, stops at the first death of the gateway."""

    gw: GatewayProcess
    seed: int
    count: int
    rate: float
    rng: random.Random = field(init=False)
    peers: dict[str, RawSipPeer] = field(init=False)
    sent: list[Sent] = field(default_factory=list)
    recent: deque[tuple[str, str, bytes]] = field(default_factory=lambda: deque(maxlen=20))
    duration_s: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.peers = {name: RawSipPeer(self.gw.sip_port, host) for name, host in SOURCES.items()}

    def run(self, cutoff_s: float) -> None:
        t0 = time.monotonic()
        next_at = t0
        for i in range(self.count):
            if not alive(self.gw) or time.monotonic() - t0 > cutoff_s:
                break
            source = self.rng.choice(list(self.peers))
            kind, torture, mutate = self.next_case(source)
            self.sent.append(Sent(source, kind, self.peers[source].send(torture, mutate)))
            next_at += 1 / self.rate
            self.pump_until(next_at)
            if i % 50 == 0:
                for peer in self.peers.values():
                    peer.retire(OPEN_SOCKETS)
        if alive(self.gw):
            self.pump_until(time.monotonic() + 2.0)  # late answers
        self.duration_s = time.monotonic() - t0

    def next_case(self, source: str) -> tuple[str, Torture, Mutation]:
        """The next case, its mutation also keeping the bytes it produced in `recent`."""
        case = next_case(self.rng)

        def mutate(data: bytes) -> bytes:
            out = case.mutate(data)
            self.recent.append((source, case.kind, out))
            return out

        return case.kind, case.torture, mutate

    def pump_until(self, deadline: float) -> None:
        while (left := deadline - time.monotonic()) > 0:
            for peer in self.peers.values():
                peer.pump(min(left / 2, 0.005))

    def close(self) -> None:
        for peer in self.peers.values():
            peer.close()

    def save_recent(self, directory: Path) -> list[str]:
        """The datagrams sent last (the one that killed the gateway is among them), one file each."""
        directory.mkdir(parents=True, exist_ok=True)
        names = []
        first = len(self.sent) - len(self.recent)
        for n, (source, kind, data) in enumerate(self.recent, start=first):
            path = directory / f"{n:05d}-{source}-{kind}-{len(data)}.sip"
            path.write_bytes(data)
            names.append(path.name)
        return names

    def figures(self, audio: CallAudio) -> dict[str, Any]:
        by_kind: dict[str, Counter[str]] = {}
        responses: dict[str, Counter[str]] = {name: Counter() for name in self.peers}
        answered: Counter[str] = Counter()
        for s in self.sent:
            by_kind.setdefault(s.kind, Counter())[size_bucket(s.outcome.size)] += 1
            for r in s.outcome.responses:
                responses[s.source][str(r.status)] += 1
            answered[s.source] += bool(s.outcome.responses)
        died = not alive(self.gw)
        return {
            "seed": self.seed, "planned": self.count, "rate_per_s": self.rate,
            "datagrams": len(self.sent), "duration_s": round(self.duration_s, 1),
            "by_source": dict(Counter(s.source for s in self.sent)),
            "by_size": {label: sum(c[label] for c in by_kind.values()) for _, label in SIZE_BUCKETS},
            "by_kind": {kind: dict(c) for kind, c in sorted(by_kind.items())},
            "largest_datagram": max((s.outcome.size for s in self.sent), default=0),
            "responses": {name: dict(sorted(c.items())) for name, c in responses.items()},
            "datagrams_answered": dict(answered),
            "crashes": int(died), "crash": death_note(self.gw) if died else None,
            "crash_signature": crash_signature(self.gw) if died else None,
            "legit_call": {"longest_rtp_gap_ms": round(audio.longest_gap_s * 1000, 1), "packets": audio.packets,
                           "expected": audio.expected, "echoed": audio.loud},
        }


def figures_markdown(fig: dict[str, Any]) -> str:
    """The figures as the tables docs/operations.md shows."""
    buckets = [label for _, label in SIZE_BUCKETS]
    out = [f"seed {fig['seed']}: {fig['datagrams']} datagrams in {fig['duration_s']} s "
           f"({fig['by_source']}), largest {fig['largest_datagram']} bytes", "",
           "| kind | " + " | ".join(buckets) + " | all |", "|---" * (len(buckets) + 2) + "|"]
    for kind, sizes in fig["by_kind"].items():
        out.append(f"| {kind} | " + " | ".join(str(sizes.get(b, 0)) for b in buckets) + f" | {sum(sizes.values())} |")
    out.append("| all | " + " | ".join(str(fig["by_size"][b]) for b in buckets) + f" | {fig['datagrams']} |")
    out += ["", "| source | datagrams answered | responses by code |", "|---|---|---|"]
    for source, codes in fig["responses"].items():
        listed = ", ".join(f"{code}: {n}" for code, n in codes.items()) or "none"
        out.append(f"| {source} | {fig['datagrams_answered'].get(source, 0)} | {listed} |")
    call = fig["legit_call"]
    out += ["", f"crashes: {fig['crashes']}" + (f" ({fig['crash']})" if fig["crashes"] else ""),
            f"legitimate call: longest RTP gap {call['longest_rtp_gap_ms']} ms, {call['packets']} of "
            f"{call['expected']} packets, {call['echoed']} echoed the tone"]
    return "\n".join(out) + "\n"


def test_fuzz_campaign_leaves_the_gateway_and_its_calls_working(gateway_factory, tmp_path: Path) -> None:
    gw = gateway_factory(guarded_config(max_calls=MAX_CALLS))  # the production rate limit: 5/s, burst 20
    planned_s = COUNT / RATE
    legit = LegitCall.start(gw, tmp_path / "legit", seconds=planned_s + 6)
    time.sleep(1.0)  # a second of undisturbed audio first
    campaign = Campaign(gw, SEED, COUNT, RATE)
    print(f"\nSIP fuzz campaign: seed {SEED}, {COUNT} datagrams at {RATE:g}/s (VOICEGATE_FUZZ_SEED to replay)")
    t0 = time.monotonic()
    try:
        campaign.run(cutoff_s=2 * planned_s + 10)
        t1 = time.monotonic()
        audio = legit.audio(t0, t1)
        fig = campaign.figures(audio)
        saved = campaign.save_recent(tmp_path / "crash-inputs") if fig["crashes"] else []
        (tmp_path / "fuzz-figures.json").write_text(json.dumps(fig, indent=2) + "\n")
        (tmp_path / "fuzz-figures.md").write_text(figures_markdown(fig))
        print(figures_markdown(fig) + f"(figures in {tmp_path})")
        assert not fig["crashes"], (f"the gateway died after {fig['datagrams']} datagrams: {fig['crash']}; "
                                    f"the last ones sent are in {tmp_path / 'crash-inputs'}: {saved[-3:]}")
        untrusted_calls = [r.status for s in campaign.sent if s.source == "untrusted" for r in s.outcome.responses
                           if 180 <= r.status < 300 and r.header("cseq").upper().endswith("INVITE")]
        assert not untrusted_calls, f"INVITEs from {UNTRUSTED_HOST} answered {untrusted_calls}"
        assert audio.longest_gap_s <= MAX_GAP_S, f"legitimate call: {audio.describe()}"
        assert audio.packets >= 0.9 * audio.expected, f"legitimate call: {audio.describe()}"
        assert audio.loud >= 0.8 * audio.packets, f"legitimate call lost its echo: {audio.describe()}"
        assert_healthy(gw, campaign.peers["trusted"], "fuzz campaign")
    except BaseException:
        legit.peer.stop()  # its RTP must not go on into the ports of the tests that follow
        raise
    finally:
        campaign.close()
    result = legit.finish(planned_s + 40)
    assert result is not None and result.ok, result.describe() if result else "the legitimate call never ended"
    assert_echo_call_works(gw, tmp_path / "after")
