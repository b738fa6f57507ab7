"""One short-time Fourier transform of a song, in blocks, for every feature the analysis reads.

librosa's `melspectrogram(y=)`, `chroma_stft(y=)`, `mfcc(y=)` and `rms(y=)` each take their own STFT of the
whole song (a [1025, frames] complex array: about 50 MB for two minutes at 22.05 kHz) and keep copies of the
framed signal. Here the STFT is taken once, a block of frames at a time, and reduced to the mel power and the
chroma straight away, so the analysis of a long song stays small (peak RSS) and pays for one transform.
The transform, filters and normalisation are the numpy ports in `music.dsp`, so the values equal librosa's
(tests/test_music_numpy.py compares them) without importing librosa.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpop_helpers.music.dsp import chroma_filters, mel_filters, mfcc_from_db, normalize_max, power_to_db, stft_power

N_FFT = 2048
N_MELS = 128
BLOCK_FRAMES = 512  # frames per STFT block: [1025, 512] complex64 is 4 MB


@dataclass(frozen=True)
class Spectra:
    """Per-frame features at sr / hop frames per second."""

    mel_power: np.ndarray  # [N_MELS, F] float32, librosa.feature.melspectrogram(y=, n_mels=128)
    chroma: np.ndarray  # [12, F] float32, librosa.feature.chroma_stft(y=, tuning=0.0) (max-normalised)
    mean_square: np.ndarray  # [F] float64, librosa.feature.rms(y=) squared
    sr: int
    hop: int

    @property
    def frames(self) -> int:
        """Number of frames."""
        return int(self.mel_power.shape[1])

    def mfcc(self, n_mfcc: int = 14) -> np.ndarray:
        """[n_mfcc, F]: librosa.feature.mfcc(y=, n_mfcc=) from the same mel power."""
        return mfcc_from_db(power_to_db(self.mel_power), n_mfcc)


def _padded_slice(y: np.ndarray, start: int, stop: int, pad: int) -> np.ndarray:
    """y zero-padded by `pad` samples on both sides (librosa's centred frames), cut to [start, stop)."""
    out = np.zeros(stop - start, dtype=np.float32)
    lo, hi = max(start - pad, 0), min(stop - pad, y.size)
    if hi > lo:
        out[lo - (start - pad): hi - (start - pad)] = y[lo:hi]
    return out


def frame_mean_square(y: np.ndarray, hop: int, frame_length: int = N_FFT, *, block: int = 1 << 18) -> np.ndarray:
    """[1 + len(y) // hop] mean of y^2 over centred, zero-padded frames (librosa's rms, squared)."""
    pad = frame_length // 2
    starts = np.arange(1 + y.size // hop) * hop - pad  # in y's own coordinates
    a = np.clip(starts, 0, y.size)
    b = np.clip(starts + frame_length, 0, y.size)
    # The running energy sum(y[:i]^2) is needed only at the frame edges. It is accumulated a block at a time
    # (the whole float64 cumulative sum would cost 8 bytes a sample), each block's cumsum starting from the
    # running total, so the sums are added in the same order as one cumsum over the song and round alike.
    edges = np.union1d(a, b)
    energy = np.zeros(edges.size)
    total, done = 0.0, 0
    for lo in range(0, y.size, block):
        hi = min(y.size, lo + block)
        run = np.cumsum(np.concatenate([[total], np.square(y[lo:hi], dtype=np.float64)]))  # sum(y[:lo + k]^2)
        upto = int(np.searchsorted(edges, hi, side="right"))
        energy[done:upto] = run[edges[done:upto] - lo]
        total, done = float(run[-1]), upto
    at = np.searchsorted(edges, b), np.searchsorted(edges, a)
    return np.maximum(energy[at[0]] - energy[at[1]], 0.0) / frame_length


def compute_spectra(y: np.ndarray, sr: int, hop: int, *, block_frames: int = BLOCK_FRAMES) -> Spectra:
    """Mel power, chroma and frame level of mono samples `y`, one blockwise STFT (librosa's conventions)."""
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    frames = 1 + y.size // hop
    pad = N_FFT // 2
    mel_basis = mel_filters(sr, N_FFT, N_MELS)
    chroma_basis = chroma_filters(sr, N_FFT, tuning=0.0)
    mel = np.empty((N_MELS, frames), dtype=np.float32)
    chroma = np.empty((chroma_basis.shape[0], frames), dtype=np.float32)
    for f0 in range(0, frames, block_frames):
        f1 = min(frames, f0 + block_frames)
        chunk = _padded_slice(y, f0 * hop, (f1 - 1) * hop + N_FFT, pad)
        power = stft_power(chunk, N_FFT, hop, center=False)
        mel[:, f0:f1] = mel_basis @ power
        chroma[:, f0:f1] = chroma_basis @ power
    chroma = normalize_max(chroma, axis=-2)
    return Spectra(mel_power=mel, chroma=chroma, mean_square=frame_mean_square(y, hop), sr=int(sr), hop=int(hop))
