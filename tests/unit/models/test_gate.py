"""ComputeGate: one heavy step at a time, deadline order (STT/TTS before a waiting LLM token), no starvation."""

from __future__ import annotations

import threading
import time

from models.gate import ComputeGate, Priority, gated


def test_mutual_exclusion() -> None:
    gate = ComputeGate()
    inside = 0
    peak = 0
    lock = threading.Lock()

    def step() -> None:
        nonlocal inside, peak
        for _ in range(20):
            with gate.hold(Priority.LLM):
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.0005)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=step) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 1
    assert gate.stats.steps == 80 and gate.stats.waited > 0


def _order_of_waiters(first: tuple[Priority, float], second: tuple[Priority, float]) -> list[Priority]:
    """Hold the gate, queue two waiters (the second ``delay`` s after the first), release, see who goes first."""
    gate = ComputeGate()
    order: list[Priority] = []
    release = threading.Event()

    def holder() -> None:
        with gate.hold(Priority.STT):
            release.wait()

    def waiter(p: Priority) -> None:
        with gate.hold(p):
            order.append(p)

    h = threading.Thread(target=holder)
    h.start()
    time.sleep(0.01)
    threads = []
    for p, delay in (first, second):
        time.sleep(delay)
        threads.append(threading.Thread(target=waiter, args=(p,)))
        threads[-1].start()
        time.sleep(0.005)
    release.set()
    for t in [h, *threads]:
        t.join()
    return order


def test_transcript_or_sentence_overtakes_a_waiting_token() -> None:
    assert _order_of_waiters((Priority.LLM, 0.0), (Priority.TTS, 0.0)) == [Priority.TTS, Priority.LLM]
    assert _order_of_waiters((Priority.LLM, 0.0), (Priority.STT, 0.0)) == [Priority.STT, Priority.LLM]


def test_a_token_that_waited_long_enough_is_not_overtaken() -> None:
    """Strict priorities let a loop of STT calls starve the LLM; the 50 ms slack bounds that."""
    assert _order_of_waiters((Priority.LLM, 0.0), (Priority.STT, 0.08)) == [Priority.LLM, Priority.STT]


def test_back_to_back_stt_does_not_starve_llm() -> None:
    gate = ComputeGate()
    stop = threading.Event()

    def stt_loop() -> None:
        while not stop.is_set():
            with gate.hold(Priority.STT):
                time.sleep(0.01)

    t = threading.Thread(target=stt_loop)
    t.start()
    time.sleep(0.02)
    t0 = time.perf_counter()
    for _ in range(5):
        with gate.hold(Priority.LLM):
            pass
    elapsed = time.perf_counter() - t0
    stop.set()
    t.join()
    assert elapsed < 1.0


def test_gated_without_gate_is_a_no_op() -> None:
    with gated(None, Priority.TTS):
        pass
