"""numpy ports of the librosa 0.11.0 pieces the song analysis uses: STFT power, mel and chroma filters, dB
scaling, max-normalisation, onset strength, MFCCs and the dynamic-programming beat tracker (Ellis 2007).

librosa imports numba, scipy.signal and scipy.stats (about 110 MiB and 1.5 s); the edge runtime has 200 MiB.
Each port repeats librosa's arithmetic step for step (dtypes, operation order, loop bounds, tie-breaks), so the
numbers are librosa's; tests/test_music_numpy.py compares every function with librosa.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

# Slaney's mel scale (librosa's htk=False): linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = (_MIN_LOG_HZ - 0.0) / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hann(n: int) -> np.ndarray:
    """[n] float64 periodic Hann window, scipy.signal.get_window("hann", n, fftbins=True) to the bit."""
    if n <= 1:
        return np.ones(n)
    # scipy's general_cosine on n + 1 points, the last dropped (a periodic window for the FFT).
    fac = np.linspace(-np.pi, np.pi, n + 1)
    w = np.zeros(n + 1)
    for k, a in enumerate((0.5, 0.5)):
        w += a * np.cos(k * fac)
    return w[:-1]


def stft_power(y: np.ndarray, n_fft: int = 2048, hop: int = 512, *, center: bool = True) -> np.ndarray:
    """[1 + n_fft // 2, frames] float32 |STFT|^2 of mono y: librosa.stft(pad_mode="constant", window="hann")."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if center:
        y = np.pad(y, n_fft // 2)
    if y.size < n_fft:
        raise ValueError(f"{y.size} samples are fewer than n_fft={n_fft}")
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]  # [F, n_fft], a view
    # librosa multiplies by the float64 window (so the FFT runs in float64) and stores complex64.
    spectrum = np.fft.rfft(frames * hann(n_fft), axis=-1).astype(np.complex64)
    # Transposed view: [bins, F] with librosa's memory layout (Fortran order), so matrix products sum alike.
    return (np.abs(spectrum) ** 2).T


def _hz_to_mel(hz: float) -> float:
    """Slaney mel of one frequency (librosa.hz_to_mel, htk=False)."""
    hz_arr = np.asanyarray(hz)
    if hz_arr >= _MIN_LOG_HZ:
        return _MIN_LOG_MEL + np.log(hz_arr / _MIN_LOG_HZ) / _LOGSTEP
    return (hz_arr - 0.0) / _F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Frequencies of Slaney mels (librosa.mel_to_hz, htk=False)."""
    freqs = 0.0 + _F_SP * mels
    log_t = mels >= _MIN_LOG_MEL
    freqs[log_t] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log_t] - _MIN_LOG_MEL))
    return freqs


def mel_filters(sr: float, n_fft: int, n_mels: int = 128) -> np.ndarray:
    """[n_mels, 1 + n_fft // 2] float32 triangular filters, Slaney scale and norm, 0 to sr / 2 (librosa.filters.mel)."""
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(float(sr) / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    # librosa computes the slopes in float64 and stores them in float32 before the Slaney scaling.
    weights[:] = np.maximum(0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    weights *= (2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


def _tiny(dtype: np.dtype) -> float:
    """The smallest normal number of a float dtype (float32's for other dtypes), librosa's util.tiny."""
    return float(np.finfo(dtype if np.issubdtype(dtype, np.inexact) else np.float32).tiny)


def _normalize(x: np.ndarray, axis: int, norm: float) -> np.ndarray:
    """x over its inf- or 2-norm along axis; slices with a norm below tiny are left as they are (librosa)."""
    if not np.all(np.isfinite(x)):
        raise ValueError("normalize: input must be finite")
    mag = np.abs(x).astype(float)
    if norm == np.inf:
        length = np.max(mag, axis=axis, keepdims=True)
    else:
        length = np.sum(mag ** norm, axis=axis, keepdims=True) ** (1.0 / norm)
    length[length < _tiny(x.dtype)] = 1.0  # librosa's threshold=None, fill=None: an all-zero column stays zero
    out = np.empty_like(x)
    out[:] = x / length
    return out


def normalize_max(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """x divided by its largest magnitude along axis (librosa.util.normalize(norm=np.inf)), in x's dtype."""
    return _normalize(np.asarray(x), axis, np.inf)


def chroma_filters(sr: float, n_fft: int, tuning: float = 0.0, n_chroma: int = 12) -> np.ndarray:
    """[n_chroma, 1 + n_fft // 2] float32 chroma filters (librosa.filters.chroma: ctroct 5, octwidth 2, norm 2,
    starting at C)."""
    frequencies = np.linspace(0, sr, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (float(a440) / 16))
    # The 0 Hz bin gets a made-up value 1.5 octaves below bin 1 (librosa's choice).
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    n_chroma2 = np.round(float(n_chroma) / 2)
    d = np.remainder(d + n_chroma2 + 10 * n_chroma, n_chroma) - n_chroma2
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    wts = _normalize(wts, 0, 2)
    wts *= np.tile(np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2) ** 2)), (n_chroma, 1))
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)], dtype=np.float32)


def power_to_db(s: np.ndarray, ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    """10 log10(max(amin, s) / ref), floored top_db below the peak (librosa.power_to_db), in s's dtype."""
    s = np.asarray(s)
    log_spec = 10.0 * np.log10(np.maximum(amin, s))
    log_spec -= 10.0 * np.log10(np.maximum(amin, np.abs(ref)))
    if top_db is not None:
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


def onset_strength(s: np.ndarray, *, lag: int = 1, aggregate: Callable = np.mean, center: bool = True,
                   n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """[F] spectral flux: the aggregate over bands of the rise of s [bands, F] (librosa.onset.onset_strength,
    max_size=1, detrend=False)."""
    s = np.atleast_2d(s)
    rise = np.maximum(0.0, s[..., lag:] - s[..., :-lag])
    env = np.empty(rise.shape[-1], dtype=rise.dtype)  # librosa's util.sync keeps the spectrogram's dtype
    env[:] = aggregate(rise, axis=-2)
    # librosa pads lag frames (and n_fft / 2 samples of centring) at the front, then cuts to the input length.
    pad = lag + (n_fft // (2 * hop) if center else 0)
    env = np.pad(env, (int(pad), 0))
    return env[: s.shape[-1]] if center else env


def mfcc_from_db(s_db: np.ndarray, n_mfcc: int = 20) -> np.ndarray:
    """[n_mfcc, F] MFCCs of a dB mel spectrogram: orthonormal DCT-II over bands (librosa.feature.mfcc(S=))."""
    s_db = np.asarray(s_db)
    n = s_db.shape[-2]
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi * k * (2 * np.arange(n)[None, :] + 1) / (2 * n))
    basis *= np.where(k == 0, np.sqrt(1.0 / n), np.sqrt(2.0 / n))
    out = basis @ s_db.astype(np.float64)
    return out.astype(s_db.dtype) if np.issubdtype(s_db.dtype, np.floating) else out


# ---------------------------------------------------------------- beat tracking


def _local_score(onsets: np.ndarray, fpb: np.ndarray) -> np.ndarray:
    """Onsets smoothed by a Gaussian of +-fpb frames, each frame with its own fpb (librosa's __beat_local_score)."""
    n = onsets.size
    per_frame = np.broadcast_to(fpb, (n,))
    out = np.zeros(n)
    for f in np.unique(per_frame):
        rows = np.flatnonzero(per_frame == f)
        x = np.arange(-f, f + 1) * 32.0 / f
        window = np.array([math.exp(-0.5 * (v * v)) for v in x])  # libm's exp, as numba calls it
        half = window.size // 2
        acc = np.zeros(rows.size)
        # Summed tap by tap in librosa's order, so the sums round alike. Its loop bounds leave out onsets[0].
        for k, w in enumerate(window):
            src = rows + half - k
            ok = (src >= 1) & (src < n)
            acc[ok] += w * onsets[src[ok]]
        out[rows] = acc
    return out


def _track_dp(local: np.ndarray, fpb: np.ndarray, tightness: float) -> tuple[np.ndarray, np.ndarray]:
    """(backlink, cumulative score) of the beat DP (librosa's __beat_track_dp), a block of frames at a time."""
    n = local.size
    values, which = np.unique(np.broadcast_to(fpb, (n,)), return_inverse=True)
    # Predecessor distances from round(fpb / 2) (half to even, as librosa) to 2 fpb, nearest first: librosa
    # searches in that order and keeps the first best score, so argmax's first hit breaks ties the same way.
    spans = [np.arange(int(np.round(f / 2)), int(2 * f) + 1) for f in values]
    width = max(span.size for span in spans)
    dist = np.full((values.size, width), -1, np.int64)
    penalty = np.zeros((values.size, width))
    for u, (f, span) in enumerate(zip(values, spans)):
        dist[u, : span.size] = span
        penalty[u, : span.size] = [tightness * (math.log(d) - math.log(f)) ** 2 for d in span]
    cumscore = np.zeros(n)
    backlink = np.full(n, -1, np.int64)
    # Frames closer together than the shortest distance do not depend on each other: one block at a time.
    step = max(1, min(int(span[0]) for span in spans))
    for t in range(0, n, step):
        rows = np.arange(t, min(n, t + step))
        d = dist[which[rows]]
        loc = rows[:, None] - d
        ok = (d >= 0) & (loc >= 0)
        score = np.where(ok, cumscore[np.where(ok, loc, 0)] - penalty[which[rows]], -np.inf)
        j = np.argmax(score, axis=1)
        pick = np.arange(rows.size)
        found = ok[pick, j]
        cumscore[rows] = np.where(found, local[rows] + score[pick, j], local[rows])
        backlink[rows] = np.where(found, loc[pick, j], -1)
    # No back-link before the first frame whose local score reaches 1 % of the highest.
    start = np.flatnonzero(~(local < 0.01 * local.max()))
    backlink[: start[0] if start.size else n] = -1
    return backlink, cumscore


def _last_beat(cumscore: np.ndarray) -> int:
    """The last local maximum of the cumulative score reaching half their median (librosa's __last_beat)."""
    peaks = np.zeros(cumscore.size, bool)
    # librosa's localmax: x[i] > x[i-1] and x[i] >= x[i+1]; never the first frame; the last if above its neighbour.
    peaks[1:-1] = (cumscore[1:-1] > cumscore[:-2]) & (cumscore[1:-1] >= cumscore[2:])
    if cumscore.size > 1:
        peaks[-1] = cumscore[-1] > cumscore[-2]
    if not peaks.any():
        return cumscore.size - 1
    hits = np.flatnonzero(peaks & (cumscore >= 0.5 * np.median(cumscore[peaks])))
    return int(hits[-1]) if hits.size else cumscore.size - 1


def _trim_beats(local: np.ndarray, beats: np.ndarray, trim: bool) -> np.ndarray:
    """beats without the leading and trailing frames of weak local score (librosa's __trim_beats)."""
    w = np.hanning(5)
    # librosa's slice keeps two samples of the full convolution's tail: same threshold, same trimming.
    smooth = np.convolve(local[beats], w)[len(w) // 2: local.size + len(w) // 2]
    threshold = 0.5 * ((smooth ** 2).mean() ** 0.5) if trim else 0.0
    out = beats.copy()
    strong = ~(local <= threshold)
    if not strong.any():
        out[:] = False
        return out
    out[: int(np.argmax(strong))] = False
    out[local.size - int(np.argmax(strong[::-1])):] = False
    return out


def beat_track(onset_envelope: np.ndarray, frame_rate: float, bpm: float | np.ndarray, *,
               tightness: float = 100.0, trim: bool = True) -> np.ndarray:
    """Beat frame indices at `bpm` (a number or one per frame): librosa.beat.beat_track(onset_envelope=, bpm=)."""
    env = np.asarray(onset_envelope)
    if env.ndim != 1:
        raise ValueError(f"onset envelope of shape {env.shape}: one channel expected")
    if not env.any():
        return np.zeros(0, dtype=np.int64)
    bpm_arr = np.atleast_1d(bpm)
    if np.any(bpm_arr <= 0) or tightness <= 0:
        raise ValueError(f"bpm and tightness must be positive (bpm={bpm!r}, tightness={tightness})")
    if bpm_arr.shape not in ((1,), env.shape):
        raise ValueError(f"bpm of shape {bpm_arr.shape} for an envelope of shape {env.shape}")
    fpb = np.round(frame_rate * 60.0 / bpm_arr).astype(np.float64)
    # Scaled by the sample standard deviation (librosa's __normalize_onsets), in the envelope's dtype.
    onsets = (env / (env.std(ddof=1, keepdims=True) + _tiny(env.dtype))).astype(np.float64)
    local = _local_score(onsets, fpb)
    backlink, cumscore = _track_dp(local, fpb, float(np.float32(tightness)))
    beats = np.zeros(env.size, bool)
    n = _last_beat(cumscore)
    while n >= 0:
        beats[n] = True
        n = int(backlink[n])
    return np.flatnonzero(_trim_beats(local, beats, trim))
