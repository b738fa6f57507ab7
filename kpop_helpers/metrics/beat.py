"""Beat Alignment Score, Bailando's variant (`utils/beat_align_score.py`: calc_db, get_mb, BA, calc_ba_score).

Motion beats are strict local minima of the Gaussian-smoothed mean joint speed; each music beat takes its
nearest motion beat, and the score averages exp(-d^2 / (2 sigma^2)) over music beats (sigma = 3 frames).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.metrics.kinetic import REFERENCE_FPS, Mode, check_joints, check_mode, check_reference_fps
# numpy equals of scipy.ndimage.gaussian_filter and scipy.signal.argrelextrema(x, np.less)[0]: importing
# scipy.signal/ndimage would cost the edge runtime about 80 MiB of memory.
from kpop_helpers.numeric import gaussian_filter, local_minima

SMOOTHING_SIGMA_FRAMES = 5.0
SCORE_SIGMA_FRAMES = 3.0
LIBROSA_HOP = 512  # librosa's default hop: sr = 512 * fps gives one onset frame per motion frame

BeatUnit = Literal["frames", "seconds"]


def kinetic_velocity(joints: np.ndarray, *, sigma: float = SMOOTHING_SIGMA_FRAMES) -> np.ndarray:
    """Smoothed mean joint speed [T-1] in metres per frame (gaussian_filter, sigma 5, mode reflect)."""
    positions = check_joints(joints, min_frames=2)
    speed = np.mean(np.sqrt(np.sum((positions[1:] - positions[:-1]) ** 2, axis=2)), axis=1)
    return gaussian_filter(speed, sigma)


def motion_beats(joints: np.ndarray) -> np.ndarray:
    """Motion-beat frame indices: strict local minima (order 1) of `kinetic_velocity` (Bailando `calc_db`)."""
    return local_minima(kinetic_velocity(joints)).astype(np.int64)


def music_beat_frames(beats, *, fps: float = REFERENCE_FPS, unit: BeatUnit = "frames") -> np.ndarray:
    """Music beats as int64 frame indices: frame indices pass through, times in seconds become round(t * fps)."""
    arr = np.asarray(beats, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise DataError("contains negative, NaN or inf values", field="music_beats",
                        expected="non-negative beat frame indices or times")
    if unit == "seconds":
        return np.round(arr * float(fps)).astype(np.int64)
    if unit != "frames":
        raise DataError(f"unknown unit {unit!r}", field="unit", expected="'frames' or 'seconds'")
    if np.any(arr != np.round(arr)):
        raise DataError("has non-integer frame indices", field="music_beats",
                        expected="integer frames (pass unit='seconds' for beat times)")
    return arr.astype(np.int64)


def used_music_beats(beat_frames: np.ndarray, num_velocity_frames: int) -> np.ndarray:
    """The music beats the reference keeps: frames < T-1 (`get_mb(key, length)` slices the beat column)."""
    beat_frames = np.asarray(beat_frames, dtype=np.int64)
    return np.unique(beat_frames[beat_frames < num_velocity_frames])


def beat_align(music: np.ndarray, motion: np.ndarray, *, mode: Mode = "compat",
               sigma: float = SCORE_SIGMA_FRAMES) -> float:
    """BA: mean over music beats of exp(-min_d (d - b)^2 / (2 sigma^2)), d over motion beats (Bailando `BA`).

    Empty beat sets crash the reference (B2): compat raises DataError; corrected warns and returns 0.0
    for no motion beats and NaN for no music beats.
    """
    check_mode(mode)
    music = np.asarray(music, dtype=np.int64).reshape(-1)
    motion = np.asarray(motion, dtype=np.int64).reshape(-1)
    if music.size == 0 or motion.size == 0:
        which = "music" if music.size == 0 else "motion"
        if mode == "compat":
            raise DataError(f"no {which} beats: the beat alignment score is undefined", field=f"{which}_beats",
                            expected="at least one beat in the dance's frame range")
        warnings.warn(f"no {which} beats: beat alignment score set to {'NaN' if which == 'music' else '0'}",
                      RuntimeWarning, stacklevel=2)
        return float("nan") if which == "music" else 0.0
    nearest_sq = np.min((motion[None, :] - music[:, None]) ** 2, axis=1)
    return float(np.mean(np.exp(-nearest_sq / 2.0 / sigma**2)))


@dataclass(frozen=True)
class BeatAlignment:
    """One motion's beat alignment: score, used music beats, motion beats and the smoothed velocity."""

    score: float
    music_beats: np.ndarray
    motion_beats: np.ndarray
    kinetic_velocity: np.ndarray


def beat_alignment(joints: np.ndarray, music_beats, *, fps: float = REFERENCE_FPS, unit: BeatUnit = "frames",
                   mode: Mode = "compat") -> BeatAlignment:
    """Beat alignment of one dance [T, J, 3] with its music beats (frames at `fps`, or seconds).

    compat requires fps = 60 (the smoothing and sigma are in 60-fps frames); corrected scales both
    sigmas by fps / 60 so they keep their durations (83 ms smoothing, 50 ms score) at any frame rate.
    """
    check_mode(mode)
    check_reference_fps(fps, mode, "beat alignment scores")
    scale = 1.0 if mode == "compat" else float(fps) / REFERENCE_FPS
    velocity = kinetic_velocity(joints, sigma=SMOOTHING_SIGMA_FRAMES * scale)
    dance = local_minima(velocity).astype(np.int64)
    music = used_music_beats(music_beat_frames(music_beats, fps=fps, unit=unit), velocity.shape[0])
    score = beat_align(music, dance, mode=mode, sigma=SCORE_SIGMA_FRAMES * scale)
    return BeatAlignment(score=score, music_beats=music, motion_beats=dance, kinetic_velocity=velocity)


def beat_align_score(dances: Sequence[np.ndarray], music_beats: Sequence, *, fps: float = REFERENCE_FPS,
                     unit: BeatUnit = "frames", mode: Mode = "compat") -> float:
    """Mean BAS over dances, each with its own music beats (Bailando `calc_ba_score`)."""
    if len(dances) != len(music_beats):
        raise DataError(f"{len(dances)} dances but {len(music_beats)} beat lists", field="music_beats",
                        expected="one beat list per dance")
    if len(dances) == 0:
        raise DataError("no dances given", field="dances", expected="at least one dance")
    scores = [beat_alignment(d, b, fps=fps, unit=unit, mode=mode).score for d, b in zip(dances, music_beats)]
    return float(np.mean(scores))


def music_beats_from_audio(path: str | Path, *, fps: float = REFERENCE_FPS) -> np.ndarray:
    """Beat frame indices at `fps` from an audio file, the Bailando way (needs librosa: pip install librosa).

    Loads at sr = 512 * fps (30720 Hz for 60 fps), takes the onset strength (aggregate=median) of the
    percussive part of HPSS and runs `librosa.beat.beat_track` on it; hop 512 gives one frame per motion frame.
    """
    try:
        import librosa  # optional dependency: only this function needs it
    except ImportError as exc:
        raise ImportError("music_beats_from_audio needs librosa: pip install librosa "
                          "(or kpop-helpers[audio]); or pass beat times/frames directly") from exc
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path, expected="an audio file librosa can read")
    sample_rate = int(round(LIBROSA_HOP * float(fps)))
    audio, _ = librosa.load(str(path), sr=sample_rate)
    _, percussive = librosa.effects.hpss(audio)
    envelope = librosa.onset.onset_strength(y=percussive, sr=sample_rate, aggregate=np.median)
    _, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=sample_rate)
    return np.asarray(beats, dtype=np.int64)
