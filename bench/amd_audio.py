"""The AMD set as audio: what the callee's side sends from the answer on, at 8 kHz through µ-law.

Speech comes from the listening corpus's voices (`caller_audio.speech`: espeak-ng or piper's joe,
cached, active speech at -20 dBFS) and its backgrounds (`caller_audio.background`, at the answer's
SNR); beeps and a carrier's information tones are plain sines (`tests/rig/audio.tone`). Each answer
comes with its truth: when the first words start and end, when the greeting ends, when the beep is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from bench.amd_spec import Answer, Who
from bench.caller_audio import RATE, Pcm, background, speech
from rtp.g711 import PCMU
from tests.rig.audio import tone

# The three special information tones of a carrier's announcement (ITU-T E.180 / Telcordia):
# frequencies and lengths of a "vacant code"
SIT_TONES = ((913.8, 0.274), (1370.6, 0.274), (1776.7, 0.380))
MACHINE_TAIL_S = 6.0  # recording silence after the beep: the message goes here
HUMAN_TAIL_S = 4.0  # the person waits for us to say something


@dataclass(frozen=True)
class AnswerAudio:
    answer: Answer
    pcm: Pcm  # from the answer on, µ-law coded and decoded, as the gateway hears it
    first_words_at: float  # seconds after the answer
    first_words_end: float  # end of the first sentence (a person's first words)
    speech_end: float  # end of the last word
    beep_at: float | None
    beep_end: float | None


def render(answer: Answer) -> AnswerAudio:
    rng = random.Random(answer.seed)
    parts: list[np.ndarray] = [_silence(answer.lead_s)]
    t = answer.lead_s
    if answer.sit_tones:
        for hz, length in SIT_TONES:
            parts.append(_tone(hz, length, -14.0))
            t += length
        parts.append(_silence(0.3))
        t += 0.3
    first_words_at = t
    first_end = None
    for i, sentence in enumerate(answer.sentences):
        if i:
            parts.append(_silence(answer.pauses_s[i - 1]))
            t += answer.pauses_s[i - 1]
        words = speech(answer.voice, sentence)
        parts.append(words)
        t += len(words) / RATE
        first_end = first_end if first_end is not None else t
    speech_end = t
    beep_at = beep_end = None
    if answer.beep is not None:
        parts.append(_silence(answer.beep.gap_s))
        beep_at = t + answer.beep.gap_s
        parts.append(_tone(answer.beep.frequency_hz, answer.beep.length_s, rng.uniform(-22.0, -10.0)))
        beep_end = beep_at + answer.beep.length_s
        t = beep_end
    parts.append(_silence(MACHINE_TAIL_S if answer.who is Who.MACHINE else HUMAN_TAIL_S))
    clean = np.concatenate(parts).astype(np.int32)
    bed = background(answer.background, answer.snr_db, len(clean) / RATE + 0.1, answer.split, answer.seed)
    mixed = np.clip(clean + bed[: len(clean)].astype(np.int32), -32767, 32767).astype(np.int16)
    line = PCMU.decode(PCMU.encode(mixed))
    assert first_end is not None
    return AnswerAudio(answer, line, first_words_at, first_end, speech_end, beep_at, beep_end)


def _silence(seconds: float) -> Pcm:
    return np.zeros(int(round(seconds * RATE)), dtype=np.int16)


def _tone(hz: float, seconds: float, dbfs: float) -> Pcm:
    amplitude = 10 ** (dbfs / 20) * np.sqrt(2)  # a sine's RMS is its amplitude over sqrt(2)
    return np.rint(tone(hz, seconds, RATE, amplitude) * 32767).astype(np.int16)
