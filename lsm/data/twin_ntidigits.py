"""Offline N-TIDIGITS twin: spoken digits from a real speech synthesiser through a cochlea model.

Speech: espeak-ng, from the PyPI package ``espeakng-loader`` (its shared library and voice data),
driven through ctypes: ``espeak_Initialize`` in synchronous mode, a synthesis callback that
collects the 16-bit samples (22,050 Hz), ``espeak_SetVoiceByName`` (language plus a voice
variant such as ``en-us+m3``), ``espeak_SetParameter`` for rate (words per minute) and pitch.
A "speaker" is one (voice, variant, rate, pitch) combination; train and test speakers are
disjoint, as in TIDIGITS.

Cochlea (:func:`cochlea_events`, usable on any waveform or WAV file): 64 fourth-order gammatone
band-pass filters (scipy.signal.gammatone) with centre frequencies log-spaced from 100 Hz to
``f_high``; half-wave rectification; an integrate-and-fire neuron per channel
(``v += gain * r[n] / fs``, spike and subtract ``threshold`` when ``v >= threshold``, a refractory
period), like the silicon cochlea's spike generators. The waveform is first normalised to a
fixed RMS level (the sensor's automatic gain).
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing
import os
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from numba import njit

from lsm.data.formats import write_ntidigits_hdf5

__all__ = ["CochleaParams", "cochlea_events", "wav_to_cochlea_events", "Espeak",
           "make_ntidigits_twin", "WORDS", "VOICES", "VARIANTS"]

#: TIDIGITS vocabulary: 'o' is "oh", 'z' is "zero"
WORDS = {"o": "oh", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
         "7": "seven", "8": "eight", "9": "nine", "z": "zero"}


@dataclass(frozen=True)
class CochleaParams:
    """Silicon-cochlea model settings.

    Parameters
    ----------
    n_channels : int
        Filter channels (64 as the CochleaAMS sensor of N-TIDIGITS).
    f_low, f_high : float
        Lowest and highest centre frequency, Hz (default 100 and 8000; clipped below Nyquist).
    threshold : float
        Integrate-and-fire threshold (arbitrary units of rectified, RMS-normalised signal x s).
    gain : float
        Input gain of the integrators.
    refractory_s : float
        Dead time after a spike, s (default 1 ms).
    rms : float
        RMS level the waveform is normalised to.
    """

    n_channels: int = 64
    f_low: float = 100.0
    f_high: float = 8000.0
    threshold: float = 1.0
    gain: float = 20000.0
    refractory_s: float = 0.001
    rms: float = 0.1

    def __post_init__(self) -> None:
        from lsm.validation import check_int, check_number

        check_int("CochleaParams", "n_channels", self.n_channels, 1)
        check_number("CochleaParams", "f_low", self.f_low, 0.0, low_open=True)
        check_number("CochleaParams", "f_high", self.f_high, self.f_low, low_open=True)
        for name in ("threshold", "gain", "rms"):
            check_number("CochleaParams", name, getattr(self, name), 0.0, low_open=True)
        check_number("CochleaParams", "refractory_s", self.refractory_s, 0.0)


@njit(cache=True)
def _integrate_and_fire(rect, fs, gain, threshold, refractory_s):
    n_ch, n = rect.shape
    chans = []
    times = []
    for c in range(n_ch):
        v = 0.0
        last = -1e9
        for k in range(n):
            v += gain * rect[c, k] / fs
            if v >= threshold:
                t = k / fs
                v -= threshold
                if t - last >= refractory_s:
                    chans.append(c)
                    times.append(t)
                    last = t
                if v > threshold:
                    v = threshold  # saturate: no burst longer than the refractory allows
    return np.array(chans, dtype=np.int64), np.array(times, dtype=np.float64)


def cochlea_events(wave: np.ndarray, fs: float,
                   params: CochleaParams = CochleaParams()) -> tuple[np.ndarray, np.ndarray]:
    """Cochlea spikes of a mono waveform: ``(channels, timestamps_s)`` sorted by time."""
    from scipy import signal

    x = np.asarray(wave, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"wave must be a non-empty 1-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("wave holds NaN or inf")
    rms = np.sqrt(np.mean(x ** 2))
    if rms > 0:
        x = x * (params.rms / rms)
    f_high = min(params.f_high, 0.45 * fs)
    centres = np.geomspace(params.f_low, f_high, params.n_channels)
    rect = np.empty((params.n_channels, x.size))
    for c, fc in enumerate(centres):
        b, a = signal.gammatone(fc, "iir", fs=fs)
        rect[c] = np.maximum(signal.lfilter(b, a, x), 0.0)
    ch, t = _integrate_and_fire(rect, float(fs), params.gain, params.threshold,
                                params.refractory_s)
    order = np.argsort(t, kind="stable")
    return ch[order], t[order]


def wav_to_cochlea_events(path: str | os.PathLike,
                          params: CochleaParams = CochleaParams()) -> tuple[np.ndarray, np.ndarray]:
    """Cochlea spikes of a WAV file (mono, or the mean of its channels)."""
    from scipy.io import wavfile

    fs, data = wavfile.read(path)
    data = np.asarray(data, dtype=np.float64)
    if data.ndim == 2:
        data = data.mean(axis=1)
    return cochlea_events(data, float(fs), params)


class Espeak:
    """espeak-ng through ctypes (one per process: the library keeps global state)."""

    _lock = threading.Lock()
    _instance: Espeak | None = None

    AUDIO_OUTPUT_SYNCHRONOUS = 2
    POS_CHARACTER = 1
    RATE, PITCH = 1, 3

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:  # pragma: no cover - a declared dependency
            raise RuntimeError("the N-TIDIGITS twin needs the PyPI package espeakng-loader"
                               ) from None
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path().encode()
        self.lib.espeak_Initialize.restype = ctypes.c_int
        fs = self.lib.espeak_Initialize(self.AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if fs <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({fs})")
        self.fs = int(fs)
        self._chunks: list[np.ndarray] = []
        proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                 ctypes.c_void_p)

        def collect(wav, n, _events):
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = proto(collect)  # keep a reference: the library calls it
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def say(self, text: str, voice: str = "en-us", rate_wpm: int = 170,
            pitch: int = 50, seed: int | None = None) -> np.ndarray:
        """Synthesise ``text``; returns int16 samples at :attr:`fs` Hz.

        ``seed`` seeds espeak-ng's own noise generator (breathy voice variants), which is
        otherwise seeded from the clock."""
        with self._lock:
            if seed is not None:
                self.lib.espeak_ng_SetRandSeed(ctypes.c_long(int(seed) & 0x7FFFFFFF))
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(self.RATE, int(rate_wpm), 0)
            self.lib.espeak_SetParameter(self.PITCH, int(pitch), 0)
            self._chunks = []
            b = text.encode()
            rc = self.lib.espeak_Synth(ctypes.c_char_p(b), len(b) + 1, 0, self.POS_CHARACTER,
                                       0, 0, None, None)
            if rc != 0:
                raise RuntimeError(f"espeak_Synth failed ({rc}) on {text!r}")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


VOICES = ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


def _speakers(n: int, rng: np.random.Generator) -> list[tuple[str, int, int]]:
    combos = [(f"{v}+{var}", r, p) for v in VOICES for var in VARIANTS
              for r in (130, 150, 170, 190) for p in (35, 50, 65)]
    pick = rng.choice(len(combos), size=min(n, len(combos)), replace=False)
    return [combos[i] for i in sorted(pick)]


def _synthesise_chunk(chunk, cochlea: CochleaParams, seed: int = 0):
    """Worker: speak and hear a list of ((speaker, take, label), (voice, rate, pitch))."""
    tts = Espeak.get()
    out = []
    for (s, take, lab), (voice, rate, pitch) in chunk:
        # takes differ slightly in rate and pitch, as a speaker's repetitions do; espeak's noise
        # generator is seeded per utterance
        utt_seed = int(np.random.SeedSequence([seed, s, take, ord(lab)]).generate_state(1)[0])
        wave = tts.say(WORDS[lab], voice, rate + 6 * take, pitch + 3 * take, seed=utt_seed)
        ch, t = cochlea_events(wave.astype(np.float64), tts.fs, cochlea)
        spk = voice.replace("-", "_").replace("+", "_") + f"_r{rate}_p{pitch}"
        out.append(((s, take, lab), f"{spk}-{take}-{lab}", ch, t))
    return out


def make_ntidigits_twin(out: str | os.PathLike, n_speakers: int = 40, test_fraction: float = 0.25,
                        takes: int = 1, seed: int = 0,
                        cochlea: CochleaParams = CochleaParams(), progress: bool = True,
                        workers: int | None = None) -> dict:
    """Write an N-TIDIGITS-layout HDF5 twin: every speaker says the 11 words ``takes`` times.

    Synthesis and the cochlea run in ``workers`` spawned processes (default: all CPUs), a fresh
    one per chunk of speakers; in a script, call this under ``if __name__ == "__main__":`` as
    Python's spawn start method requires (the ``lsm`` command does).

    Speakers are drawn (with ``seed``) from espeak-ng voices x variants x rates x pitches; a
    ``test_fraction`` of them form the test split. Sample ids are
    ``"<speaker>-<take>-<label>"`` with label in 'o', '1'..'9', 'z'.
    """
    from lsm.io import check_output_file
    from lsm.progress import progress_bar
    from lsm.validation import check_int

    check_output_file(out, "twin file")
    if Path(out).exists():
        raise FileExistsError(f"{out} exists: a twin never replaces a dataset file; remove it or "
                              "choose a new name")
    check_int("make_ntidigits_twin", "takes", takes, 1)
    workers = workers or os.cpu_count() or 1
    if n_speakers < 2:
        raise ValueError("n_speakers must be >= 2 (train and test need a speaker each)")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    speakers = _speakers(n_speakers, rng)
    n_test = max(1, int(round(test_fraction * len(speakers))))
    test_idx = set(rng.choice(len(speakers), n_test, replace=False).tolist())
    jobs = [(s, take, lab) for s in range(len(speakers)) for take in range(takes)
            for lab in WORDS]
    # espeak-ng keeps state from one utterance to the next, so the same utterance can differ
    # with what was said before it, and seeds its noise generator from the clock. Each chunk of
    # speakers is synthesised in a fresh process (spawned, one task per process) and every
    # utterance seeds the noise: the same seed then gives the same file, bit for bit.
    per_chunk = max(1, -(-len(speakers) // max(2, min(16, len(speakers) // 3))))
    chunks = [[(j, speakers[j[0]]) for j in jobs if lo <= j[0] < lo + per_chunk]
              for lo in range(0, len(speakers), per_chunk)]
    splits: dict[str, list] = {"train": [], "test": []}
    counts = []
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=min(workers, len(chunks)), maxtasksperchild=1) as pool, \
            progress_bar(total=len(jobs), desc="N-TIDIGITS twin", unit="utterance",
                 disable=not progress) as bar:
        for results in pool.imap(partial(_synthesise_chunk, cochlea=cochlea, seed=seed), chunks):
            for (s, _take, _lab), sample_id, ch, t in results:
                splits["test" if s in test_idx else "train"].append((sample_id, ch, t))
                counts.append(len(ch))
            bar.update(len(results))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    import json

    write_ntidigits_hdf5(out, splits, attrs={"lsm_twin": json.dumps(
        {"generator": "lsm.data.twin_ntidigits", "seed": seed, "speakers": len(speakers),
         "takes": takes, "cochlea": dataclasses.asdict(cochlea)})})
    return {"path": str(out), "speakers": len(speakers), "test_speakers": n_test,
            "train": len(splits["train"]), "test": len(splits["test"]),
            "events_per_sample": {"min": int(min(counts)), "median": float(np.median(counts)),
                                  "max": int(max(counts))}}
