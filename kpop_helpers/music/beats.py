"""Beat strength, tempo and beats from onset envelopes (librosa's methods, ported to numpy in `music.dsp`; our
decisions), and the beat F-measure.

- envelopes: librosa's spectral flux on a log-mel spectrogram (median over bands, 512-sample hop), its
  low band (< 230 Hz) and an energy flux (rise of the linear amplitude: kicks and snares, barely hi-hats);
- beat strength: autocorrelations of the 1-s high-passed flux in 8-s windows; the median over windows of
  the highest one at 40-240 BPM lags. Below `MIN_BEAT_STRENGTH` (or with no onsets: silence, drones) the
  track has no clear beat;
- tempo: the peaks of the summed flux and energy autocorrelations (60-200 BPM, times a 1-octave log-normal
  prior at 120 BPM, refined on a quarter-frame lag grid); the first peak the tracker locks onto (its beats
  keep that tempo within 4 %), then octave checks on the tracked beats: doubled when the energy onsets
  halfway between beats match the weaker of alternate beats (half the pulse tracked), halved when every
  other beat is weak in both envelopes (eighth notes taken for beats);
- beats: librosa's dynamic-programming tracker (Ellis 2007; `dsp.beat_track`) at that tempo, or along a
  per-window tempo curve when the tempo moves by more than `TEMPO_CHANGE`, changes at most twice and the
  curve's beats land on stronger onsets (a ramp or a step, not a section's rhythm); then continued through
  a quiet intro/outro.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpop_helpers.music.dsp import beat_track, onset_strength, power_to_db
from kpop_helpers.numeric import median_filter, uniform_filter1d

HOP = 512
MIN_BPM, MAX_BPM = 60.0, 200.0
DEFAULT_BPM = 100.0
BEATS_PER_BAR = 4
MIN_BEAT_STRENGTH = 0.2
# Between tempo octaves with about equal evidence, prefer the one nearer 120 BPM (librosa's default prior).
PRIOR_BPM, PRIOR_OCTAVES = 120.0, 1.0
LOCK_TOLERANCE = 0.04  # the tracked beats' tempo within 4 % of the tempo asked for
MAX_TEMPO_JUMPS = 2  # jumps of more than 10 % between neighbouring windows a tempo curve may have
CURVE_GAIN = 1.05  # a tempo curve must raise the mean onset strength at the beats by 5 % to replace a steady tempo
# High-passed onset envelopes quieter than this (std, in dB of flux) have no onsets: silence, drones, pads.
ACTIVITY_FLOOR = 0.05
TEMPO_CHANGE = 1.08  # 95th / 5th percentile of the local tempo above which beats follow a tempo curve
HALVE_BELOW = 0.5  # weaker / stronger mean of alternate beats, in both envelopes
DOUBLE_ABOVE = 0.85  # between-beat / on-beat energy onset
LOW_MEL_BINS = 8  # of 128 mel bands at 22.05 kHz: up to ~230 Hz


def onset_envelopes(mel_power: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flux, low-band flux, energy flux) [F] each at sr / HOP frames per second, from one mel power spectrogram
    ([128, F], `music.spectra`).

    flux: librosa's onset strength (median over bands: any onset, hi-hats included); low: bands below
    ~230 Hz (kick drums, bass notes); energy: the rise of the total amplitude, dominated by the loudest
    sounds (kicks and snares rather than hi-hats) -- the envelope the octave and downbeat decisions read.
    """
    mel = power_to_db(mel_power)
    flux = onset_strength(mel, aggregate=np.median, hop=HOP)
    low = onset_strength(mel[:LOW_MEL_BINS], aggregate=np.mean, hop=HOP)
    # Linear amplitude, not dB: a quiet hi-hat after a decayed kick is a big rise in dB but a small one here.
    level = np.sqrt(mel_power.sum(axis=0, keepdims=True))
    energy = onset_strength(level, aggregate=np.mean, hop=HOP)
    return flux.astype(np.float64), low.astype(np.float64), energy.astype(np.float64)


def _highpass(env: np.ndarray, fps: float) -> np.ndarray:
    """The envelope minus its 1-s moving average: slow swells are not beats."""
    return env - uniform_filter1d(env, max(1, int(round(fps))), mode="nearest")


@dataclass(frozen=True)
class Periodicity:
    """Autocorrelation of the high-passed envelope in 8-s windows (2-s hop), at quarter-frame lags."""

    lags_s: np.ndarray  # [L]
    local: np.ndarray  # [W, L]: each window's autocorrelation, 1 at lag 0 (0 for windows without onsets)
    centers_s: np.ndarray  # [W]
    strength: float  # median over windows of the highest autocorrelation at 40-240 BPM lags

    def band(self, lo_bpm: float, hi_bpm: float) -> np.ndarray:
        """Indices of the lags between lo_bpm and hi_bpm."""
        with np.errstate(divide="ignore"):
            bpm = 60.0 / self.lags_s
        return np.flatnonzero((bpm >= lo_bpm) & (bpm <= hi_bpm))

    def peak_bpm(self, curve: np.ndarray, lo_bpm: float, hi_bpm: float, *, center_bpm: float = PRIOR_BPM,
                 octaves: float = PRIOR_OCTAVES) -> float:
        """The tempo of the highest lag of `curve` (times a log-normal prior) in [lo_bpm, hi_bpm], refined by a
        parabola between lags."""
        idx = self.band(lo_bpm, hi_bpm)
        prior = np.exp(-0.5 * (np.log2(60.0 / self.lags_s[idx] / center_bpm) / octaves) ** 2)
        weighted = np.zeros_like(curve)
        weighted[idx] = np.maximum(curve[idx], 0.0) * prior
        k = int(idx[np.argmax(weighted[idx])])
        shift = 0.0
        if 0 < k < curve.size - 1:
            a, b, c = weighted[k - 1], weighted[k], weighted[k + 1]
            if a - 2 * b + c < 0:
                shift = float(np.clip(0.5 * (a - c) / (a - 2 * b + c), -0.5, 0.5))
        step = self.lags_s[1] - self.lags_s[0]
        return 60.0 / (self.lags_s[k] + shift * step)


def periodicity(env: np.ndarray, fps: float, *, win_s: float = 8.0, hop_s: float = 2.0) -> Periodicity:
    """Windowed autocorrelations of the onset envelope; the beat strength is their median peak.

    Windows keep tempo changes from smearing the peak (a ramp has no global period); the 4x finer lag grid
    (spectrum zero-padding) keeps beats that fall between frames from splitting their peak over two lags.
    """
    x_all = _highpass(np.asarray(env, np.float64), fps)
    win = min(x_all.size, int(round(win_s * fps)))
    max_lag = min(win - 1, int(np.ceil(fps * 60 / 40)) + 2)
    starts = list(range(0, max(1, x_all.size - win + 1), max(1, int(round(hop_s * fps)))))
    nfft = 1 << int(np.ceil(np.log2(2 * max(win, 2))))
    up = 4
    rows = []
    for start in starts:
        x = x_all[start:start + win]
        x = x - x.mean()
        if x.std() < ACTIVITY_FLOOR:
            rows.append(np.zeros(up * max_lag))
            continue
        spec = np.fft.rfft(x, nfft)
        ac = np.fft.irfft(np.abs(spec) ** 2, up * nfft)[: up * max_lag]
        rows.append(ac / ac[0])
    local = np.asarray(rows)
    lags_s = np.arange(local.shape[1]) / (up * fps)
    out = Periodicity(lags_s, local, (np.asarray(starts) + win / 2) / fps, 0.0)
    band = out.band(40.0, 240.0)
    peaks = local[:, band].max(axis=1) if band.size else np.zeros(len(starts))
    return Periodicity(lags_s, local, out.centers_s, float(np.clip(np.median(peaks), 0.0, 1.0)))


def track(env: np.ndarray, sr: int, bpm: float | np.ndarray) -> np.ndarray:
    """Beat times (s) from librosa's dynamic-programming tracker at `bpm` (a number or one per frame)."""
    if not np.any(env):
        return np.zeros(0)
    frames = beat_track(env, sr / HOP, bpm)
    return (frames * HOP) / float(sr)  # librosa.frames_to_time: whole samples, then seconds


def strength_at(env: np.ndarray, times: np.ndarray, fps: float, radius: int = 2) -> np.ndarray:
    """The envelope's maximum within +-radius frames of each time."""
    frames = np.clip(np.round(np.asarray(times) * fps).astype(int), 0, env.size - 1)
    window = np.stack([env[np.clip(frames + d, 0, env.size - 1)] for d in range(-radius, radius + 1)])
    return window.max(axis=0)


def octave_check(flux: np.ndarray, energy: np.ndarray, beats: np.ndarray, fps: float) -> float:
    """2 (double the tempo), 0.5 (halve it) or 1, from the energy onsets at, between and on alternate beats.

    Medians, not means: one syncopated kick between beats (hip-hop) must not make every gap look like a beat.
    """
    if beats.size < 4:  # two of each alternate beat at least
        return 1.0
    on = strength_at(energy, beats, fps)
    even, odd = np.median(on[0::2]), np.median(on[1::2])
    if max(even, odd) <= 1e-9:
        return 1.0
    mid = np.median(strength_at(energy, (beats[1:] + beats[:-1]) / 2, fps))
    # Half the pulse tracked: the points between beats are as strong as the weaker of alternate beats
    # (accented clicks or kick-snare bars make alternate beats unequal, so compare with the weaker).
    if mid > DOUBLE_ABOVE * min(even, odd):
        return 2.0
    # Eighth notes taken for beats: every other beat weak in both envelopes (not just kick vs snare).
    weak = []
    for s in (on, strength_at(flux, beats, fps)):
        a, b = np.median(s[0::2]), np.median(s[1::2])
        weak.append(min(a, b) / max(a, b, 1e-9))
    return 0.5 if max(weak) < HALVE_BELOW else 1.0


def _candidates(period: Periodicity, curve: np.ndarray, count: int = 3) -> list[float]:
    """The tempi of the `count` highest local maxima of `curve` (prior-weighted) between MIN_BPM and MAX_BPM."""
    idx = period.band(MIN_BPM, MAX_BPM)
    prior = np.exp(-0.5 * (np.log2(60.0 / period.lags_s[idx] / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
    weighted = np.maximum(curve[idx], 0.0) * prior
    peaks = [i for i in range(1, idx.size - 1) if weighted[i] >= weighted[i - 1] and weighted[i] > weighted[i + 1]]
    peaks = sorted(peaks, key=lambda i: -weighted[i])[:count]
    out = []
    for i in peaks or [int(np.argmax(weighted))]:
        lo, hi = 60.0 / period.lags_s[idx[i]] * 0.98, 60.0 / period.lags_s[idx[i]] * 1.02
        out.append(period.peak_bpm(curve, max(lo, MIN_BPM * 0.98), min(hi, MAX_BPM * 1.02)))
    return out


def estimate_tempo(flux: np.ndarray, energy: np.ndarray, sr: int,
                   period: Periodicity) -> tuple[float, np.ndarray, np.ndarray | None]:
    """(tempo in BPM, beat times, per-frame tempo curve or None when steady) of a track with a clear beat."""
    fps = sr / HOP
    # The flux hears hi-hats as loudly as kicks (off-beat hats look like beats); the energy flux barely hears
    # them: their autocorrelations together pick the level where the loud onsets repeat.
    local = period.local + periodicity(energy, fps).local
    candidates = _candidates(period, local.mean(axis=0))
    tempo, beats = candidates[0], track(flux, sr, candidates[0])
    for bpm in candidates:  # the first periodicity peak the tracker can lock onto (its beats keep that tempo)
        found = track(flux, sr, bpm)
        got = tempo_from_beats(found)
        if got is not None and abs(got / bpm - 1) <= LOCK_TOLERANCE:
            tempo, beats = bpm, found
            break
    for _ in range(2):  # an octave at a time; a second step catches a track two octaves off
        factor = octave_check(flux, energy, beats, fps)
        if factor == 1.0 or not MIN_BPM <= tempo * factor <= MAX_BPM:
            break
        tempo *= factor
        beats = track(flux, sr, tempo)
    curve = tempo_curve(period, local, tempo, flux.size, fps)
    if curve is not None:
        # Keep the curve only where it finds stronger onsets than the steady tempo does (a real ramp or step),
        # not where a section's rhythm merely moves a window's peak.
        moving = track(flux, sr, curve)
        if strength_at(flux, moving, fps, 1).mean() > CURVE_GAIN * strength_at(flux, beats, fps, 1).mean():
            return tempo, moving, curve
    return tempo, beats, None


def tempo_curve(period: Periodicity, local: np.ndarray, tempo: float, frames: int, fps: float) -> np.ndarray | None:
    """Per-frame tempo (each window's peak, within a fifth of `tempo` and drawn to it), or None when steady.

    A ramp or a step changes tempo at most a couple of times; a curve jumping back and forth (a window at
    a time hearing 3:4 or 2:3 of the beat) is metrical confusion, not a tempo change.
    """
    active = period.local[:, 0] > 0
    if np.count_nonzero(active) < 3:
        return None
    peaks = np.array([period.peak_bpm(row, tempo / 1.5, tempo * 1.5, center_bpm=tempo, octaves=0.3)
                      for row in local[active]])
    peaks = median_filter(peaks, size=3, mode="nearest")
    lo, hi = np.percentile(peaks, [5, 95])
    jumps = np.count_nonzero(np.abs(np.diff(np.log(peaks))) > np.log(1.1))
    if hi / lo <= TEMPO_CHANGE or jumps > MAX_TEMPO_JUMPS:
        return None
    return np.interp(np.arange(frames) / fps, period.centers_s[active], peaks)


def extend_grid(beats: np.ndarray, duration_s: float, *, span: int = 8) -> np.ndarray:
    """The beats continued at their edge period (median of `span` intervals) through a quiet intro and outro.

    librosa trims beats where the onsets are weak; dancers count through an intro, so the grid goes on to the
    ends of the song (a beat within 35 ms before 0 is put at 0).
    """
    if beats.size < 2:
        return beats
    head = float(np.median(np.diff(beats[: span + 1])))
    tail = float(np.median(np.diff(beats[-span - 1:])))
    before = beats[0] - head * np.arange(int(np.floor((beats[0] + 0.035) / head)), 0, -1)
    after = beats[-1] + tail * np.arange(1, int(np.ceil((duration_s - beats[-1]) / tail)) + 1)
    return np.concatenate([np.maximum(before, 0.0), beats, after[after < duration_s - 1e-6]])


def tempo_from_beats(beats: np.ndarray) -> float | None:
    """Median tempo over spans of up to 16 beats (frame rounding averages out over the span)."""
    if beats.size < 2:
        return None
    span = min(16, beats.size - 1)
    periods = (beats[span:] - beats[:-span]) / span
    return float(60.0 / np.median(periods))


def grid(duration_s: float, bpm: float, start_s: float = 0.0) -> np.ndarray:
    """A steady beat grid from `start_s` to the end."""
    return np.arange(start_s, duration_s - 1e-6, 60.0 / bpm)


def f_measure(reference: np.ndarray, estimated: np.ndarray, window: float = 0.07) -> float:
    """Beat F-measure as mir_eval.beat.f_measure: one-to-one matches within +-window s (0 if either is empty)."""
    ref, est = np.sort(np.asarray(reference, float)), np.sort(np.asarray(estimated, float))
    if ref.size == 0 or est.size == 0:
        return 0.0
    # Greedy in time order is a maximum matching here: each event's window is an interval on one line.
    i = j = hits = 0
    while i < ref.size and j < est.size:
        if abs(ref[i] - est[j]) <= window:
            hits, i, j = hits + 1, i + 1, j + 1
        elif est[j] < ref[i]:
            j += 1
        else:
            i += 1
    precision, recall = hits / est.size, hits / ref.size
    return 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)
