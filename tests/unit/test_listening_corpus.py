"""The listening corpus: its split keeps tuning away from the reported half, and its audio is what it says."""

from __future__ import annotations

import numpy as np
import pytest

from bench.caller_audio import SPEECH_DBFS, active_dbfs, background, cough, hum, pink_noise
from bench.listening_spec import (
    BABBLE_VOICES,
    BACKCHANNELS,
    CONDITIONS,
    MID_THOUGHTS,
    ONE_WORDS,
    QUESTIONS,
    VOICES,
    Background,
    Split,
    TurnKind,
    plan_calls,
)


def test_halves_share_no_voice_sentence_or_backchannel() -> None:
    for pools in (QUESTIONS, ONE_WORDS, BACKCHANNELS):
        assert not set(pools[Split.TUNE]) & set(pools[Split.HELD_OUT])
    assert not {m[2] for m in MID_THOUGHTS[Split.TUNE]} & {m[2] for m in MID_THOUGHTS[Split.HELD_OUT]}
    tune = {v.name for v in VOICES if v.split is Split.TUNE}
    held = {v.name for v in VOICES if v.split is Split.HELD_OUT}
    assert tune and held and not tune & held
    assert not set(BABBLE_VOICES) & (tune | held)


def test_each_call_stays_in_its_half() -> None:
    for plan in plan_calls((Split.TUNE, Split.HELD_OUT)):
        assert plan.voice.split is plan.split
        assert len({t.reference for t in plan.turns}) == len(plan.turns)  # nothing said twice in a call
        for turn in plan.turns:
            if turn.kind is TurnKind.QUESTION:
                assert turn.parts[0] in QUESTIONS[plan.split]
            if turn.backchannel:
                assert turn.backchannel in BACKCHANNELS[plan.split]


def test_plan_is_deterministic_and_covers_every_condition() -> None:
    assert plan_calls((Split.HELD_OUT,)) == plan_calls((Split.HELD_OUT,))
    plans = plan_calls((Split.HELD_OUT,))
    assert [p.condition for p in plans] == list(CONDITIONS)
    pauses = [p for plan in plans for t in plan.turns for p in t.pauses_s]
    assert pauses and all(0.5 <= p <= 1.5 for p in pauses)
    assert len(plan_calls((Split.TUNE,), quick=True)) < len(plans)


@pytest.mark.parametrize("kind", [Background.BABBLE, Background.PINK, Background.HUM])
def test_background_sits_snr_below_speech(kind: Background) -> None:
    bed = background(kind, 15, 4.0, Split.HELD_OUT, seed=3)
    level = 20 * np.log10(np.sqrt(np.mean((bed / 32768.0) ** 2)))
    assert level == pytest.approx(SPEECH_DBFS - 15, abs=0.5)
    assert np.array_equal(bed, background(kind, 15, 4.0, Split.HELD_OUT, seed=3))


def test_noise_shapes() -> None:
    rng = np.random.default_rng(0)
    spectrum = np.abs(np.fft.rfft(pink_noise(80000, rng))) ** 2
    f = np.fft.rfftfreq(80000, 1 / 8000)
    low, high = spectrum[(f > 100) & (f < 200)].mean(), spectrum[(f > 1600) & (f < 3200)].mean()
    assert 10 * np.log10(low / high) == pytest.approx(10 * np.log10(1600 / 100 * 1.5), abs=3)  # -3 dB/octave
    peak = np.fft.rfftfreq(8000, 1 / 8000)[np.argmax(np.abs(np.fft.rfft(hum(8000, rng))))]
    assert peak == pytest.approx(50, abs=1)


def test_cough_is_short_and_at_speech_level() -> None:
    c = cough(np.random.default_rng(1))
    assert 0.3 < len(c) / 8000 < 0.6
    assert active_dbfs(c / 32768.0) == pytest.approx(SPEECH_DBFS + 3, abs=1)
