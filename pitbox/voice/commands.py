"""Spoken commands, recognised offline with pocketsphinx (its wheel ships the en-us model).

>>> rec = CommandRecognizer()
>>> r = rec.recognise(samples_int16, 16000)
>>> r.command, r.arg, r.phrase          # ('focus on turn', 6, 'focus on turn six') or (None, None, '')

**Grammar** (JSGF): "repeat", "mute", "unmute", "quiet in the corners", "talk anywhere",
"last lap", "delta", "fuel", "best lap", "where am i losing time", "focus on turn N" (N from
one to ``max_turn``), after the wake phrase "pit box" when ``wake=True``.

**Decoding.** The clip is decoded with the grammar under three vocal-tract-length warps
(:data:`WARPS`; the en-us model fits some voices better warped); the sentence most warps
heard wins (ties: the best path score per frame). Every decode starts from a fresh front end
(``reinit_feat``), so a clip decodes the same whatever was decoded before.

**Noise.** pocketsphinx's own noise removal (``remove_noise``, :data:`REMOVE_NOISE`) stays
on, as the en-us model's ``feat.params`` sets it. That file wins over ``Decoder`` arguments
(``Decoder(remove_noise=False)``, ``lowerf``, ``upperf`` are silently ignored), so the value
is set in the decoder's config and the front end rebuilt. Off, the training clips
(``VOICES_TRAIN``, seed 100) gained 4 of 165 commands (157 against 153 after rejection), a
difference within their sampling noise, while two fixed clips of the tests were heard as
another command under every warp: it was not switched off.

**Rejection.** A grammar maps every sound to some command (engine noise, a team-mate's
"pit lane speed limit"). So each hypothesis is checked: a second pass decodes the same audio
with pocketsphinx's free phone loop (``allphone``), and a logistic model
(:data:`REJECT_MODEL`) weighs four measures: the grammar path's score minus the phone loop's,
per frame (a log-likelihood ratio: how much worse the command explains the audio than any
phone sequence), the grammar path's score per frame, the phone edit distance per phone
between the phone loop's phones and the command's pronunciation, and the ratio of their
phone counts. Accepted when the model's probability is at least ``threshold``
(:data:`DEFAULT_THRESHOLD`). Model and threshold come from ``bench/voice_train_rejection.py``
on training clips only (the 15 espeak-ng voices ``VOICES_TRAIN``, three of them with raised
formants, and phrases ``OOG_TRAIN`` of :mod:`pitbox.voice.testing`, seed 100), none of whose
voices, variants, phrases or seeds the tests and the benchmark use; the threshold is the
lowest with at most 3 % false accepts there.

**Audio front end.** Any rate is resampled to 16 kHz; runs of exact digital silence at the
ends are cut (pocketsphinx's noise and mean normalisation misjudge them: measured on this
machine, exact silence around speech costs 15 % of commands) and faint fixed-seed dither is
added.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pitbox.voice.errors import VoiceError
from pitbox.voice.wav import read_wav, resample

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
           "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty")
#: the commands, as the grammar says them ("focus on turn" takes a number)
PHRASES = ("repeat", "mute", "unmute", "quiet in the corners", "talk anywhere", "last lap", "delta", "fuel",
           "best lap", "where am i losing time", "focus on turn")
WAKE = "pit box"
#: pronunciations the shipped dictionary lacks
EXTRA_WORDS = {"unmute": "AH N M Y UW T"}
_FILLERS = {"<sil>", "<s>", "</s>", "[NOISE]", "SIL", "+NSN+", "+SPN+", "+BREATH+", "(NULL)", "[BREATH]", "[SMACK]",
            "[COUGH]", "[UM]", "[UH]", "+UH+", "+UM+", "+SMACK+", "+COUGH+"}
_LOG_BASE = math.log(1.0001)  # pocketsphinx's log base: scores come back as base**score

#: the confidence model: measures, their mean and scale, the logistic weights, fitted by
#: bench/voice_train_rejection.py on the training clips only (VOICES_TRAIN, OOG_TRAIN, seed 100)
REJECT_MODEL: dict[str, Any] = {
    "features": ["llr_pf", "score_pf", "ed", "nph_ratio"],
    "mean": [-0.071185, -25.640502, 1.039496, 1.152969],
    "scale": [6.337444, 7.884832, 0.588955, 0.650075],
    "coef": [1.576001, 1.939576, -2.973284, -1.062839],
    "intercept": -1.109444,
}
#: the lowest threshold with at most 3 % false accepts on the training clips
DEFAULT_THRESHOLD = 0.38
#: pocketsphinx's own noise removal (the en-us model's ``feat.params`` turns it on; module
#: docstring, "Noise")
REMOVE_NOISE = True
#: vocal tract length warps tried on every clip (pocketsphinx ``inverse_linear``): the
#: en-us model fits some voices better warped; the best-scoring complete command wins
WARPS = (0.88, 1.0, 1.12)


def grammar(max_turn: int = 20, wake: bool = False) -> str:
    """The JSGF grammar of the commands."""
    if not 1 <= max_turn <= len(NUMBERS):
        raise VoiceError(f"max_turn {max_turn}: expected 1 to {len(NUMBERS)}")
    cmds = " | ".join(p if p != "focus on turn" else "focus on turn <num>" for p in PHRASES)
    return ("#JSGF V1.0;\ngrammar pitbox;\n"
            f"public <command> = {WAKE + ' ' if wake else ''}<cmd>;\n"
            f"<cmd> = {cmds};\n"
            f"<num> = {' | '.join(NUMBERS[:max_turn])};\n")


@dataclass
class Recognition:
    """What a clip said: ``command`` (one of :data:`PHRASES`, or None), ``arg`` (the turn
    number of "focus on turn"), ``phrase`` (the words recognised, without the wake phrase;
    "" when rejected), ``heard`` (the grammar's raw hypothesis), ``confidence`` (0-1),
    ``reason`` (why it was rejected), ``decode_s`` (time spent) and the measures."""

    command: str | None
    arg: int | None
    phrase: str
    heard: str
    confidence: float
    reason: str = ""
    decode_s: float = 0.0
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "arg": self.arg, "phrase": self.phrase or None, "heard": self.heard,
                "confidence": round(self.confidence, 3), "reason": self.reason or None,
                "decode_s": round(self.decode_s, 4)}


def parse_command(words: str, wake: bool = False) -> tuple[str | None, int | None]:
    """(command, turn number) of a complete grammar sentence, (None, None) otherwise."""
    w = words.split()
    if wake:
        if w[:2] != WAKE.split():
            return None, None
        w = w[2:]
    text = " ".join(w)
    if text in PHRASES and text != "focus on turn":
        return text, None
    if len(w) == 4 and " ".join(w[:3]) == "focus on turn" and w[3] in NUMBERS:
        return "focus on turn", NUMBERS.index(w[3]) + 1
    return None, None


def _edit_distance(a: list[str], b: list[str]) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            cur = d[j]
            d[j] = min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
            prev = cur
    return d[-1]


def _log(score: float) -> float:
    return math.log(max(float(score), 1e-300)) / _LOG_BASE


def prepare(samples: np.ndarray, rate: int, seed: int = 0) -> np.ndarray:
    """16 kHz int16 samples with exact digital silence cut off the ends and faint dither."""
    x = np.asarray(samples)
    if x.ndim > 1:
        x = x.mean(axis=1)
    if x.dtype.kind == "f":
        x = np.clip(np.round(x * 32767.0), -32768, 32767)
    x = resample(x.astype(np.int16), int(rate), SAMPLE_RATE).astype(np.int32)
    loud = np.flatnonzero(np.abs(x) > 2)
    if len(loud) == 0:
        return np.zeros(0, np.int16)
    x = x[loud[0]:loud[-1] + 1]
    rng = np.random.default_rng(seed)
    x = x + np.round(rng.normal(0.0, 8.0, len(x))).astype(np.int32)
    return np.clip(x, -32768, 32767).astype(np.int16)


class CommandRecognizer:
    """Recognises one command per clip (module docstring). The decoder starts on first use
    (about 0.5 s) and is shared by the calls of this object, one at a time."""

    def __init__(self, wake: bool = False, max_turn: int = 20, reject: bool = True,
                 threshold: float = DEFAULT_THRESHOLD, warps: tuple[float, ...] = WARPS):
        self.wake = wake
        self.max_turn = max_turn
        self.reject = reject
        self.threshold = float(threshold)
        self.warps = tuple(warps)
        self._grammar = grammar(max_turn, wake)
        self._decoders: list[Any] = []
        self._decoder: Any = None  # the one whose hypothesis is being checked
        self._lock = threading.Lock()

    def _init(self) -> Any:
        if not self._decoders:
            try:
                from pocketsphinx import Decoder, get_model_path
            except ImportError as exc:
                raise VoiceError("voice commands need pocketsphinx (pip install 'pitbox[voice]')") from exc
            phone_lm = os.path.join(get_model_path(), "en-us", "en-us-phone.lm.bin")
            for w in self.warps:
                d = Decoder(loglevel="FATAL", lm=None, warp_type="inverse_linear", warp_params=f"{w:g}")
                # the model's feat.params wins over a Decoder argument for remove_noise:
                # set it in the config and rebuild the front end (module docstring)
                d.config["remove_noise"] = REMOVE_NOISE
                d.reinit_feat()
                for word, phones in EXTRA_WORDS.items():
                    if d.lookup_word(word) is None:
                        d.add_word(word, phones, True)
                d.add_jsgf_string("commands", self._grammar)
                d.add_allphone_file("phones", phone_lm)
                self._decoders.append(d)
            self._decoder = self._decoders[len(self._decoders) // 2]
        return self._decoder

    def _decode(self, search: str, x: np.ndarray, d: Any = None) -> tuple[Any, list[tuple[str, float, int, int]], int]:
        d = d if d is not None else self._decoder
        d.activate_search(search)
        # a fresh front end for every clip: no state (noise estimate, cepstral mean) carries
        # over from the last utterance, so a clip decodes the same whatever came before
        d.reinit_feat()
        d.start_utt()
        d.process_raw(x.tobytes(), False, True)
        d.end_utt()
        segs = [(s.word, s.ascore, s.start_frame, s.end_frame) for s in (d.seg() or [])]
        return d.hyp(), segs, d.n_frames()

    def _phones(self, words: str) -> list[str]:
        out: list[str] = []
        for w in words.split():
            p = self._decoder.lookup_word(w)
            out += p.split() if p else []
        return out

    def features(self, x: np.ndarray, hyp: Any, segs: list[tuple[str, float, int, int]], nf: int,
                 votes: float = 1.0) -> dict[str, float]:
        """The confidence measures of a grammar hypothesis (module docstring): ``llr_pf`` the
        grammar path's score minus the free phone loop's over the same audio, per frame
        (log base 1.0001); ``score_pf`` the grammar path's score per frame; ``votes`` the
        share of the vocal-tract warps whose decode heard the same sentence;
        ``ed`` (the phone edit distance per phone between the phone loop's phones and the
        sentence's pronunciation) and ``nph_ratio`` (their phone counts' ratio); and, for
        diagnosis, ``prob`` (the path's posterior) and ``words_frac``."""
        words = [s for s in segs if s[0] not in _FILLERS]
        wf = sum(s[3] - s[2] + 1 for s in words)
        phyp, psegs, _ = self._decode("phones", x)
        loop = [s[0] for s in psegs if s[0] not in _FILLERS]
        expected = self._phones(hyp.hypstr)
        return {
            "llr_pf": (_log(hyp.score) - (_log(phyp.score) if phyp is not None else 0.0)) / max(nf, 1),
            "score_pf": _log(hyp.score) / max(nf, 1),
            "votes": float(votes),
            "prob": float(hyp.prob),
            "ed": _edit_distance(loop, expected) / max(len(expected), 1),
            "nph_ratio": len(loop) / max(len(expected), 1),
            "words_frac": wf / max(nf, 1),
        }

    @staticmethod
    def confidence(features: dict[str, float], model: dict[str, Any] | None = None) -> float:
        """The rejection model's probability that the hypothesis is right (0-1)."""
        m = model or REJECT_MODEL
        z = float(m["intercept"])
        for name, mu, sc, w in zip(m["features"], m["mean"], m["scale"], m["coef"], strict=True):
            z += w * (features[name] - mu) / sc
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def recognise(self, samples: np.ndarray, rate: int) -> Recognition:
        """The command in a clip (int16 or float samples at ``rate`` [Hz]), or a rejection."""
        t0 = time.perf_counter()
        x = prepare(samples, rate)
        if len(x) < SAMPLE_RATE // 10:
            return Recognition(None, None, "", "", 0.0, "no sound", time.perf_counter() - t0)
        with self._lock:
            self._init()
            heard_any = ""
            cands: list[tuple[str, float, Any, Any, list[tuple[str, float, int, int]], int]] = []
            for d in self._decoders:
                hyp, segs, nf = self._decode("commands", x, d)
                heard = hyp.hypstr if hyp is not None else ""
                heard_any = heard_any or heard
                if parse_command(heard, self.wake)[0] is None:
                    continue
                cands.append((heard, _log(hyp.score) / max(nf, 1), d, hyp, segs, nf))
            if not cands:
                why = "no command" if not heard_any else "incomplete command"
                return Recognition(None, None, "", heard_any, 0.0, why, time.perf_counter() - t0)
            # the sentence most warps heard (ties: the best score per frame)
            count = {c[0]: sum(o[0] == c[0] for o in cands) for c in cands}
            heard, _, self._decoder, hyp, segs, nf = max(cands, key=lambda c: (count[c[0]], c[1]))
            command, arg = parse_command(heard, self.wake)
            feats = self.features(x, hyp, segs, nf, count[heard] / len(self._decoders))
        conf = self.confidence(feats)
        phrase = " ".join(heard.split()[2:] if self.wake else heard.split())
        if self.reject and conf < self.threshold:
            return Recognition(None, None, "", heard, conf, "rejected: not sure it was a command",
                               time.perf_counter() - t0, feats)
        return Recognition(command, arg, phrase, heard, conf, "", time.perf_counter() - t0, feats)

    def recognise_wav(self, wav: bytes, name: str = "<audio>") -> Recognition:
        """The command in a WAV file's bytes (any rate, 8- or 16-bit PCM)."""
        x, rate = read_wav(wav, name)
        return self.recognise(x, rate)
