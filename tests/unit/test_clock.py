"""Media clock scheduling on a fake monotonic clock: absolute deadlines, lateness, stalls."""

from rtp.clock import MediaClock


class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.extra_delay: dict[int, float] = {}  # sleep index -> oversleep
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.extra_delay.get(self.sleeps, 0.0)
        self.sleeps += 1


class Recorder:
    def __init__(self, fake: FakeTime, work_s: float = 0.0):
        self.fake = fake
        self.work_s = work_s
        self.times: list[float] = []

    def tick(self, now: float) -> None:
        self.times.append(now)
        self.fake.now += self.work_s


def test_ticks_follow_absolute_deadlines_despite_work_time():
    fake = FakeTime()
    clock = MediaClock(monotonic=fake.monotonic, sleep=fake.sleep)
    rec = Recorder(fake, work_s=0.007)  # 7 ms of work per tick must not accumulate as drift
    clock.add(rec)
    clock.run(max_ticks=500)
    assert len(rec.times) == 500
    assert abs(rec.times[-1] - (100.0 + 499 * 0.020)) < 1e-9
    assert clock.stats().lateness_p99_ms < 1e-6


def test_late_tick_is_run_and_its_lateness_recorded():
    fake = FakeTime()
    fake.extra_delay = {10: 0.004}
    clock = MediaClock(monotonic=fake.monotonic, sleep=fake.sleep)
    rec = Recorder(fake)
    clock.add(rec)
    clock.run(max_ticks=100)
    assert len(rec.times) == 100
    assert abs(clock.stats().lateness_max_ms - 4.0) < 1e-6
    # the next deadlines are unaffected by the late one
    assert abs(rec.times[-1] - (100.0 + 99 * 0.020)) < 1e-9


def test_long_stall_skips_instead_of_bursting():
    fake = FakeTime()
    fake.extra_delay = {5: 0.5}  # half a second lost (25 periods)
    clock = MediaClock(monotonic=fake.monotonic, sleep=fake.sleep, max_catch_up=3)
    rec = Recorder(fake)
    clock.add(rec)
    clock.run(max_ticks=50)
    assert clock.skipped >= 20
    gaps = [b - a for a, b in zip(rec.times, rec.times[1:], strict=False)]
    assert min(gaps) > 0.015  # no burst of back-to-back ticks


def test_failing_session_is_removed_and_others_keep_ticking():
    fake = FakeTime()
    errors = []

    class Broken:
        def tick(self, now):
            raise RuntimeError("boom")

    clock = MediaClock(monotonic=fake.monotonic, sleep=fake.sleep, on_error=lambda s, e: errors.append(e))
    broken, rec = Broken(), Recorder(fake)
    clock.add(broken)
    clock.add(rec)
    clock.run(max_ticks=10)
    assert len(errors) == 1 and broken not in clock.sessions
    assert len(rec.times) == 10


def test_remove_runs_callback_after_tick():
    fake = FakeTime()
    clock = MediaClock(monotonic=fake.monotonic, sleep=fake.sleep)
    rec = Recorder(fake)
    closed = []
    clock.add(rec)
    clock.remove(rec, then=lambda: closed.append(True))  # clock not running: applied at once
    assert closed == [True] and rec not in clock.sessions
