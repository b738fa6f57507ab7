"""Audio loading: any file soundfile (or ffmpeg) decodes, or samples in memory, as mono float32 at one rate.

Decoding goes through soundfile (libsndfile: WAV, FLAC, Ogg Vorbis/Opus, MP3 from libsndfile 1.1, AIFF, ...);
formats libsndfile does not recognise (M4A/AAC, WMA, video files) go through an ffmpeg binary (imageio-ffmpeg's,
else one on PATH). Resampling is libsoxr's (the `soxr` package, "HQ"), so loading needs neither librosa, numba
nor scipy.signal.
"""

from __future__ import annotations

import dataclasses

import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.utils import ffmpeg_path

DEFAULT_SR = 22050
MIN_DURATION_S = 2.0
MIN_SR, MAX_SR = 8000, 192000
# A decoded stream this much shorter than its header declares is a cut-off file (a broken download), not a
# rounding difference of the container.
TRUNCATION_TOLERANCE = 0.02
# WAV data sizes that streaming writers leave in the header when the length is unknown: not a truncation.
WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)
BLOCK_FRAMES = 1 << 16  # frames decoded (and downmixed) at a time
INSTALL_HINT = "pip install 'kpop-helpers[audio]' (soundfile, soxr)"


@dataclass(frozen=True)
class Audio:
    """Decoded audio: float32 samples ([N] mono, or [channels, N]), rate, duration and where it came from."""

    samples: np.ndarray
    sr: int
    duration_s: float
    channels: int  # channels of the source (before any downmix)
    source: str

    def head(self, seconds: float | None) -> Audio:
        """The first `seconds` of the audio (itself when None or not shorter)."""
        if seconds is None or seconds >= self.duration_s:
            return self
        keep = int(round(float(seconds) * self.sr))
        return dataclasses.replace(self, samples=self.samples[..., :keep], duration_s=keep / self.sr)

    @property
    def mono(self) -> np.ndarray:
        """The samples as one channel (the mean of the channels)."""
        return self.samples if self.samples.ndim == 1 else self.samples.mean(axis=0)


def _soundfile():
    try:
        import soundfile
    except ImportError as exc:  # the [audio] extra is optional
        raise ImportError(f"reading audio files needs soundfile: {INSTALL_HINT}") from exc
    return soundfile


def wav_declared_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header declares for its data chunk, or None (not WAV, unknown size, unreadable).

    libsndfile silently clamps a cut-off WAV to what is on disk, so truncation is read from the header here.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(size + (size & 1))
                    block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                elif cid == b"data":
                    if size in WAV_UNKNOWN_SIZES or not block_align:
                        return None
                    return size // block_align
                else:
                    fh.seek(size + (size & 1), 1)
    except OSError:
        return None


def _read_blocks(sf, path: Path, mono: bool) -> np.ndarray:
    """[N, C] float32 (or [N, 1] downmixed a block at a time when `mono`: a long multichannel file never sits
    in memory at full width)."""
    if not mono:
        return sf.read(str(path), dtype="float32", always_2d=True)[0]
    # Filled in place up to the declared length (a list of blocks and its concatenation would hold the song
    # twice); frames past the declaration (an estimate for some formats) are appended.
    out = np.empty((max(int(sf.info(str(path)).frames), 0), 1), np.float32)
    filled, extra = 0, []
    for block in sf.blocks(str(path), blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
        mixed = block.mean(axis=1, keepdims=True, dtype=np.float32)
        take = min(mixed.shape[0], out.shape[0] - filled)
        out[filled: filled + take] = mixed[:take]
        filled += take
        if take < mixed.shape[0]:
            extra.append(mixed[take:])
    return np.concatenate([out[:filled], *extra]) if extra else out[:filled]


def _decode_soundfile(path: Path, mono: bool = False) -> tuple[np.ndarray, int, int] | None:
    """(samples [N, C] float32, sr, channels) via libsndfile; None when libsndfile does not recognise the format."""
    sf = _soundfile()
    try:
        info = sf.info(str(path))
        data, sr = _read_blocks(sf, path, mono), info.samplerate
    except (sf.LibsndfileError, RuntimeError) as exc:
        message = str(exc)
        if "Format not recognised" in message or "not recognized" in message.lower():
            return None
        raise DataError(f"cannot decode audio, the file may be truncated or corrupt ({message})", path=path,
                        expected="a complete audio file") from None
    declared = wav_declared_frames(path) or info.frames
    if data.shape[0] == 0:
        raise DataError("no audio frames could be decoded (the file may be truncated or corrupt)", path=path,
                        expected="a complete audio file")
    if declared > 0 and data.shape[0] < declared * (1 - TRUNCATION_TOLERANCE):
        raise DataError(f"truncated: the header declares {declared / sr:.2f} s but only {data.shape[0] / sr:.2f} s "
                        "could be decoded", path=path, expected="a complete audio file")
    return data, int(sr), int(info.channels)


def _decode_ffmpeg(path: Path, reason: str, mono: bool = False) -> tuple[np.ndarray, int, int]:
    """(samples [N, C], sr, channels) decoded by ffmpeg into a temporary float WAV; DataError when ffmpeg cannot."""
    exe = ffmpeg_path()
    if exe is None:
        raise DataError(f"{reason}, and no ffmpeg was found to try other formats", path=path,
                        expected="WAV, FLAC, Ogg or MP3 (or install imageio-ffmpeg for other formats)")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "decoded.wav"
        proc = subprocess.run([exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-c:a", "pcm_f32le",
                               "-f", "wav", str(out)], capture_output=True, text=True, timeout=600)
        errors = proc.stderr.strip().splitlines()
        if proc.returncode != 0 or not out.is_file():
            detail = errors[-1] if errors else f"ffmpeg exit status {proc.returncode}"
            raise DataError(f"{reason}; ffmpeg cannot decode it either ({detail})", path=path,
                            expected="an audio file") from None
        if errors:  # decoding went on past errors: a damaged or cut-off stream
            raise DataError(f"the audio stream is damaged or truncated (ffmpeg: {errors[-1]})", path=path,
                            expected="a complete audio file")
        sf = _soundfile()
        sr, channels = sf.info(str(out)).samplerate, sf.info(str(out)).channels
        data = _read_blocks(sf, out, mono)
    if data.shape[0] == 0:
        raise DataError("no audio frames could be decoded", path=path, expected="an audio file")
    return data, int(sr), int(channels)


def resample(samples: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """[N] or [C, N] samples resampled along the last axis (libsoxr "HQ"), float32 out."""
    if sr_from == sr_to:
        return samples.astype(np.float32, copy=False)
    try:
        import soxr
    except ImportError as exc:  # the [audio] extra is optional
        raise ImportError("resampling audio needs soxr: pip install soxr (or 'kpop-helpers[audio]')") from exc
    x = np.asarray(samples, dtype=np.float32)
    # soxr takes [frames, channels]; channels stay independent (the same filter runs on each).
    frames_first = np.ascontiguousarray(x.T if x.ndim == 2 else x)
    out = soxr.resample(frames_first, int(sr_from), int(sr_to), quality="HQ")
    return np.ascontiguousarray(out.T if x.ndim == 2 else out, dtype=np.float32)


def _channels_first(samples: np.ndarray, source: str) -> np.ndarray:
    """[C, N] from [N], [N, C] (soundfile's layout) or [C, N] (librosa's): the shorter axis is the channels."""
    arr = np.asarray(samples)
    if arr.ndim == 1:
        return arr[None, :]
    if arr.ndim != 2 or 0 in arr.shape:
        raise DataError(f"samples of shape {arr.shape}", path=source, field="samples",
                        expected="[N], [N, channels] or [channels, N]")
    return arr.T if arr.shape[0] > arr.shape[1] else arr


def _finish(samples: np.ndarray, sr: int, *, target_sr: int | None, mono: bool, source: str,
            channels: int | None = None) -> Audio:
    """Check (finite, long enough), downmix and resample decoded [C, N] samples (`channels`: of the source, when
    the decoder downmixed already)."""
    if not np.issubdtype(samples.dtype, np.number):
        raise DataError(f"samples of dtype {samples.dtype}", path=source, field="samples", expected="numbers")
    if not MIN_SR <= sr <= MAX_SR:
        raise DataError(f"sample rate {sr} Hz", path=source, field="sr", expected=f"{MIN_SR} to {MAX_SR} Hz")
    channels, frames = channels or samples.shape[0], samples.shape[1]
    if not np.isfinite(samples).all():
        bad = ~np.isfinite(samples)
        raise DataError(f"{int(bad.sum())} samples are NaN or infinite (first at {np.argmax(bad.any(0)) / sr:.2f} s)",
                        path=source, field="samples", expected="finite samples")
    if frames / sr < MIN_DURATION_S:
        raise DataError(f"the audio is {frames / sr:.2f} s long", path=source,
                        expected=f"at least {MIN_DURATION_S:g} s of audio")
    # Integer samples from memory are scaled to [-1, 1] the way soundfile reads integer files.
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples / float(np.iinfo(samples.dtype).max)
    samples = samples.astype(np.float32, copy=False)
    if mono and samples.shape[0] > 1:  # one channel (a decoder's downmix) is its own mean: no copy
        samples = samples.mean(axis=0, keepdims=True)
    out_sr = int(target_sr) if target_sr else int(sr)
    if not MIN_SR <= out_sr <= MAX_SR:
        raise DataError(f"target rate {out_sr} Hz", field="sr", expected=f"{MIN_SR} to {MAX_SR} Hz")
    samples = resample(samples, int(sr), out_sr)
    out = samples[0] if mono else samples
    return Audio(np.ascontiguousarray(out), out_sr, out.shape[-1] / out_sr, int(channels), source)


def load_audio(source: str | Path | Audio | tuple[np.ndarray, int], *, sr: int | None = DEFAULT_SR,
               mono: bool = True) -> Audio:
    """Audio from a file, an `Audio` or `(samples, sr)`: mono (or [channels, N]) float32 at `sr` (None: as is).

    Raises DataError naming the file for a missing, empty, truncated, undecodable or non-audio file, NaN/inf
    samples, a rate outside 8-192 kHz, or audio shorter than 2 s.
    """
    if isinstance(source, Audio):
        return _finish(_channels_first(source.samples, source.source), source.sr, target_sr=sr, mono=mono,
                       source=source.source)
    if isinstance(source, tuple):
        if len(source) != 2:
            raise DataError(f"a tuple of {len(source)} items", field="audio", expected="(samples, sample_rate)")
        samples, rate = source
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)) or rate != int(rate):
            raise DataError(f"sample rate {rate!r}", field="sr", expected="a whole number of Hz")
        return _finish(_channels_first(samples, "<memory>"), int(rate), target_sr=sr, mono=mono, source="<memory>")
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError("file not found", path=path, expected="an audio file")
    if not path.is_file():
        raise DataError("not a file", path=path, expected="an audio file")
    if path.stat().st_size == 0:
        raise DataError("empty file (0 bytes)", path=path, expected="an audio file")
    decoded = _decode_soundfile(path, mono)
    if decoded is None:
        decoded = _decode_ffmpeg(path, "not an audio format soundfile recognises", mono)
    data, rate, channels = decoded
    return _finish(data.T, rate, target_sr=sr, mono=mono, source=str(path), channels=channels)
