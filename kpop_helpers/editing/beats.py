"""Put a dance on the beat: retime HumanML3D features along a monotone time map so its motion beats meet the music's.

Motion beats are the Beat Alignment Score's (`metrics.beat`, Bailando): strict local minima of the smoothed
mean joint speed, found on the joints converted the way the metric is defined (SMPL-24 at 60 fps,
`metrics.convert.to_aist_convention`). A time map g sends the dance's own time s to music time t; it is
piecewise linear and its slope dt/ds stays within [1 - max_speed_change, 1 + max_speed_change].

`time_warp` resamples features along g: poses (root height, ric positions, 6D rotations, re-orthonormalised)
are taken at the mapped times from a cubic spline through the frames, foot contacts from the nearest frame,
and the per-frame velocity columns are differences of their running sums at those times, so a segment played
slower moves less per frame and integrating the warped velocities gives the original path (the root's xz
path is warped in the world frame the decoder builds, then turned back into the facing frame).

`align_to_beats` finds g ("snap"): the most dance/music beat pairs matched in order under the slope bound
(dynamic programming), a map through them that keeps its slope constant around each matched beat, and ends
aimed at the dance's own start and end. The output keeps the input's length: where g leaves the dance's start
or end inside it, the first or last pose is held; where it runs past, the dance is cut ("start_shift_s" and
"end_shift_s" in `info`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.metrics.beat import SCORE_SIGMA_FRAMES, beat_alignment, motion_beats
from kpop_helpers.metrics.convert import AIST_FPS, to_aist_convention
from kpop_helpers.motion.features import FEATURE_DIM, FEATURE_SLICES, features_to_joints
from kpop_helpers.numeric import cubic_spline  # scipy's CubicSpline numbers without scipy's import cost

Method = Literal["snap", "tempo", "none"]
METHODS: tuple[str, ...] = ("snap", "tempo", "none")
DEFAULT_MAX_SPEED_CHANGE = 0.15
BEAT_SIGMA_S = SCORE_SIGMA_FRAMES / AIST_FPS  # the score's 50 ms: the phase search rewards what BAS rewards
_LOOKBACK = 16  # dance beats a match may skip back to its predecessor (keeps the DP linear in the dance length)
PLATEAU_S = 0.15  # about 2 sigma of the BAS speed smoothing (83 ms): the minimum's neighbourhood
EDGE_S = 0.1  # about the BAS speed smoothing's sigma (83 ms)
_TIE = 1e-3  # weight of the time distortion in the DP: only breaks ties between equally many matches
_VELOCITY_COLUMNS = (FEATURE_SLICES["root_rot_velocity"], FEATURE_SLICES["local_velocity"])
_POSE_COLUMNS = (FEATURE_SLICES["root_y"], FEATURE_SLICES["ric"])


@dataclass(frozen=True)
class TimeWarp:
    """A monotone piecewise-linear map from the dance's time to music time (knots in seconds)."""

    source_s: np.ndarray
    target_s: np.ndarray

    def __call__(self, source_s: Any) -> np.ndarray:
        """Music times of dance times (slope 1 outside the knots)."""
        return _extend(np.asarray(source_s, dtype=np.float64), self.source_s, self.target_s)

    def inverse(self, target_s: Any) -> np.ndarray:
        """Dance times of music times (slope 1 outside the knots)."""
        return _extend(np.asarray(target_s, dtype=np.float64), self.target_s, self.source_s)

    @property
    def slopes(self) -> np.ndarray:
        """dt/ds of each linear piece (empty for a single knot)."""
        return np.diff(self.target_s) / np.diff(self.source_s)


@dataclass(frozen=True)
class AlignedDance:
    """A dance retimed onto music beats: features [T',263], the warp, matched (dance_s, music_s) pairs, info."""

    features: np.ndarray
    warp: TimeWarp
    matched: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _identity(duration: float) -> TimeWarp:
    """The map that changes nothing over [0, duration]."""
    return TimeWarp(np.array([0.0, duration]), np.array([0.0, duration]))


def _extend(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp through the knots, continued with slope 1 before the first and after the last knot."""
    out = np.interp(x, xp, fp)
    out = np.where(x < xp[0], fp[0] + (x - xp[0]), out)
    return np.where(x > xp[-1], fp[-1] + (x - xp[-1]), out)


def _check_features(features: Any) -> np.ndarray:
    """Finite float features [T >= 2, 263] as a numpy array (dtype kept)."""
    array = np.asarray(features)
    if array.ndim != 2 or array.shape[1] != FEATURE_DIM or array.shape[0] < 2 or array.dtype.kind != "f":
        raise DataError(f"got shape {array.shape}, dtype {array.dtype}", field="features",
                        expected=f"float HumanML3D features [T >= 2, {FEATURE_DIM}]")
    if not np.isfinite(array).all():
        raise DataError("contains NaN or inf", field="features", expected="finite features")
    return array


def _check_times(times: Any, name: str, *, min_count: int = 1) -> np.ndarray:
    """Finite, strictly increasing 1-D times in seconds as float64, or DataError naming the argument."""
    try:
        array = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"cannot read as numbers ({error})", field=name, expected="times in seconds") from error
    if array.ndim != 1 or array.size < min_count:
        raise DataError(f"got shape {array.shape}", field=name, expected=f"a 1-D list of at least {min_count} times")
    if not np.isfinite(array).all():
        raise DataError("contains NaN or inf", field=name, expected="finite times in seconds")
    if np.any(np.diff(array) <= 0):
        raise DataError("is not strictly increasing", field=name, expected="strictly increasing times in seconds")
    return array


def _check_positive(value: Any, name: str) -> float:
    """A finite positive float, or DataError naming the argument."""
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise DataError(f"got {value!r}", field=name, expected="a positive number") from error
    if not np.isfinite(number) or number <= 0:
        raise DataError(f"got {value!r}", field=name, expected="a positive finite number")
    return number


def _check_frames(frames: Any) -> int:
    """An output length: an integer >= 2."""
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 2:
        raise DataError(f"got {frames!r}", field="frames", expected="an integer number of output frames >= 2")
    return int(frames)


def _sample(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Rows of `values` [N, C] at fractional row positions `at` (clamped to [0, N-1]), by a cubic spline.

    Linear interpolation is a low-pass filter (half-way between frames it halves the highest frequencies) and
    would soften a dance's sharp hits (jerk -12 % measured); the not-a-knot spline passes through the frames.
    """
    last = values.shape[0] - 1  # 2 or 3 rows: the not-a-knot spline is the line or the parabola (as scipy's)
    return cubic_spline(np.arange(last + 1), values, np.clip(at, 0.0, last), axis=0)


def _gram_schmidt(rot6d: np.ndarray) -> np.ndarray:
    """Re-orthonormalise 6D rotations [..., 6] (columns R[:, 0] = [0:3], R[:, 1] = [3:6]) after blending."""
    first, second = rot6d[..., 0:3], rot6d[..., 3:6]
    first = first / np.maximum(np.linalg.norm(first, axis=-1, keepdims=True), 1e-12)
    second = second - np.sum(first * second, axis=-1, keepdims=True) * first
    second = second / np.maximum(np.linalg.norm(second, axis=-1, keepdims=True), 1e-12)
    return np.concatenate([first, second], axis=-1)


def _turn(x: np.ndarray, z: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn (x, z) as `features_to_joints` turns a facing-frame step into the world at heading `angle`.

    `angle` is the running sum of column 0, a half-angle (the data set's quirk): the turn is by 2 * angle.
    """
    cos, sin = np.cos(2.0 * angle), np.sin(2.0 * angle)
    return x * cos - z * sin, x * sin + z * cos


def time_warp(features: Any, source_times_s: Any, target_times_s: Any, *, fps: float = 20.0,
              frames: int | None = None) -> np.ndarray:
    """Features [T,263] resampled along the map source_times_s -> target_times_s (knots, seconds) -> [T',263].

    Output frame k is the dance at source time g^-1(k / fps); T' defaults to round(g(T / fps) * fps).
    Source times outside the dance hold its first or last pose (velocities 0). An identity map returns a copy.
    """
    data = _check_features(features)
    fps = _check_positive(fps, "fps")
    source = _check_times(source_times_s, "source_times_s")
    target = _check_times(target_times_s, "target_times_s")
    if source.size != target.size:
        raise DataError(f"{source.size} source times but {target.size} target times", field="target_times_s",
                        expected="one target time per source time")
    num = data.shape[0]
    if frames is None:
        frames = int(round(float(_extend(np.array([num / fps]), source, target)[0]) * fps))
    frames = _check_frames(frames)
    # Source position (in frames) of every output frame and of the end of the last one.
    at = _extend(np.arange(frames + 1) / fps, target, source) * fps
    snapped = np.round(at)
    at = np.clip(np.where(np.abs(at - snapped) < 1e-9, snapped, at), 0.0, float(num))
    if frames <= num and np.array_equal(at[:frames], np.arange(frames)):
        return data[:frames].copy()  # identity map: nothing to resample, whatever the contact values are
    here, after = at[:-1], at[1:]
    values = data.astype(np.float64)
    out = np.zeros((frames, FEATURE_DIM))
    for block in _POSE_COLUMNS:
        out[:, block] = _sample(values[:, block], here)
    rot = FEATURE_SLICES["rot6d"]
    blended = _sample(values[:, rot], here).reshape(frames, -1, 6)
    # Blending two rotations leaves the 6D off the rotation group; rows taken whole stay as they were.
    moved = np.abs(here - np.round(here)) > 0
    blended[moved] = _gram_schmidt(blended[moved])
    out[:, rot] = blended.reshape(frames, -1)
    contact = FEATURE_SLICES["foot_contact"]
    out[:, contact] = values[np.clip(np.round(here), 0, num - 1).astype(np.int64), contact] >= 0.5  # nearest
    # Velocity row j covers frame j -> j+1: running sums over [0, T] frames, differenced between mapped times,
    # give each output row the motion of its stretch of source time (scaled by the local speed factor).
    for block in _VELOCITY_COLUMNS:
        running = np.concatenate([np.zeros((1, block.stop - block.start)), np.cumsum(values[:, block], axis=0)])
        out[:, block] = _sample(running, after) - _sample(running, here)
    # The root's xz step is in the facing frame of the frame it leads to: integrate it in the world frame the
    # decoder uses (heading angle = running sum of column 0), warp there, and turn back at the new heading.
    angle = np.concatenate([[0.0], np.cumsum(values[:, 0])])
    step_x, step_z = _turn(values[:, 1], values[:, 2], angle[1:])
    world = np.stack([np.concatenate([[0.0], np.cumsum(step_x)]), np.concatenate([[0.0], np.cumsum(step_z)])], 1)
    delta = _sample(world, after) - _sample(world, here)
    new_angle = _sample(angle[:, None], after)[:, 0]
    out[:, 1], out[:, 2] = _turn(delta[:, 0], delta[:, 1], -new_angle)
    return out.astype(data.dtype)


def motion_beat_times(features: Any, *, fps: float = 20.0) -> np.ndarray:
    """The dance's motion beats in seconds, as the BAS finds them (SMPL-24 joints at 60 fps, kinetic minima)."""
    joints = features_to_joints(_check_features(features))
    return motion_beats(to_aist_convention(joints, fps)) / AIST_FPS


def beat_alignment_score(features: Any, music_beats_s: Any, *, fps: float = 20.0) -> float:
    """BAS of features against beat times, fed as the metric is defined (60 fps SMPL-24); NaN without beats."""
    joints60 = to_aist_convention(features_to_joints(_check_features(features)), fps)
    beats = np.asarray(music_beats_s, dtype=np.float64)
    try:
        return beat_alignment(joints60, beats, fps=AIST_FPS, unit="seconds").score
    except DataError:  # no music beat inside the dance, or a dance without a single kinetic minimum
        return float("nan")


def _snap_pairs(dance: np.ndarray, music: np.ndarray, low: float, high: float,
                window_s: float) -> np.ndarray:
    """Most (dance, music) beat pairs, both in order, whose consecutive slopes stay in [low, high] (DP)."""
    slack = max(high - 1.0, 1.0 - low)
    cand = [(i, j) for i in range(dance.size) for j in range(music.size)
            if abs(music[j] - dance[i]) <= window_s + slack * dance[i]]
    if not cand:
        return np.zeros((0, 2))
    pairs = np.array(cand, dtype=np.int64)
    ds, ms = dance[pairs[:, 0]], music[pairs[:, 1]]
    offset = ms - ds
    # score: matches minus a tiny distortion cost (first offset + each change of offset) for ties.
    score = 1.0 - _TIE * np.abs(offset) / window_s
    back, start = np.full(len(pairs), -1), 0
    for k in range(len(pairs)):
        while pairs[start, 0] < pairs[k, 0] - _LOOKBACK:
            start += 1
        prev = np.arange(start, k)
        prev = prev[(pairs[prev, 0] < pairs[k, 0]) & (pairs[prev, 1] < pairs[k, 1])]
        slope = (ms[k] - ms[prev]) / (ds[k] - ds[prev])
        ok = prev[(slope >= low - 1e-12) & (slope <= high + 1e-12)]
        if ok.size:
            gain = score[ok] + 1.0 - _TIE * np.abs(offset[k] - offset[ok]) / window_s
            best = int(np.argmax(gain))
            if gain[best] > score[k]:
                score[k], back[k] = gain[best], ok[best]
    chain, k = [], int(np.argmax(score))
    while k >= 0:
        chain.append(k)
        k = int(back[k])
    chain.reverse()
    return np.stack([ds[chain], ms[chain]], axis=1)


def _warp_through(pairs: np.ndarray, duration: float, low: float, high: float,
                  plateau_s: float = PLATEAU_S) -> TimeWarp:
    """The map through matched pairs, its ends aimed at (0, 0) and (D, D), every slope in [low, high].

    Around each matched dance beat the slope is held constant for +-plateau_s (at the mean of its neighbouring
    slopes): a speed change right at a kinetic minimum would tilt the smoothed speed and move the minimum
    off the music beat. Plateaus that would push a connecting slope out of bounds are halved, then re-solved.
    """
    if len(pairs) == 0:
        return _identity(duration)
    ds, ms = pairs[:, 0], pairs[:, 1]
    head = float(np.clip(ms[0] / ds[0], low, high)) if ds[0] > 0 else 1.0
    tail = float(np.clip((duration - ms[-1]) / (duration - ds[-1]), low, high)) if duration > ds[-1] else 1.0
    secants = np.concatenate([[head], np.diff(ms) / np.diff(ds), [tail]])
    held = 0.5 * (secants[:-1] + secants[1:])  # between its neighbours' slopes, so inside the bounds too
    gaps = np.diff(np.concatenate([[0.0], ds, [duration]]))
    width = np.minimum(plateau_s, 0.25 * np.minimum(gaps[:-1], gaps[1:]))
    for _ in range(40):
        inner = (np.diff(ms) - held[:-1] * width[:-1] - held[1:] * width[1:]) / (np.diff(ds) - width[:-1] - width[1:])
        bad = np.flatnonzero((inner < low - 1e-12) | (inner > high + 1e-12))
        if bad.size == 0:
            break
        width[bad] *= 0.5
        width[bad + 1] *= 0.5
    else:
        width[:] = 0.0  # plain piecewise-linear through the pairs: its slopes are the DP's, all in bounds
    source = np.concatenate([[0.0], np.stack([ds - width, ds, ds + width], 1).ravel(), [duration]])
    target = np.concatenate([[0.0], np.stack([ms - held * width, ms, ms + held * width], 1).ravel(), [0.0]])
    # The ends aim at (0, 0) and (D, D) from the outer plateau edges, slopes clipped.
    first, last = source[1], source[-2]
    target[0] = target[1] - (np.clip(target[1] / first, low, high) if first > 0 else 1.0) * first
    target[-1] = target[-2] + (np.clip((duration - target[-2]) / (duration - last), low, high)
                               if duration > last else 1.0) * (duration - last)
    keep = np.concatenate([[True], np.diff(source) > 1e-9])
    return TimeWarp(source[keep], target[keep])


def _tempo_warp(dance: np.ndarray, music: np.ndarray, duration: float, low: float,
                high: float) -> tuple[TimeWarp, np.ndarray, dict[str, float]]:
    """One global rate (the dance's beat period onto the song's, or half/double), the best phase, the hits."""
    dance_period, music_period = float(np.median(np.diff(dance))), float(np.median(np.diff(music)))
    rates = np.array([q * music_period / dance_period for q in (0.5, 1.0, 2.0)])
    rate = float(np.clip(rates[np.argmin(np.abs(np.log(rates)))], low, high))
    # Phase: the shift (within half a music beat) with the best BAS: each music beat's nearest retimed beat.
    shifts = np.arange(-music_period / 2, music_period / 2, 1.0 / AIST_FPS)
    heard = music[music < duration] if np.any(music < duration) else music
    moved = rate * dance[None, :] + shifts[:, None]
    gaps = np.min(np.abs(moved[:, None, :] - heard[None, :, None]), axis=2)
    phase = float(shifts[np.argmax(np.exp(-gaps**2 / (2 * BEAT_SIGMA_S**2)).sum(axis=1))])
    warp = TimeWarp(np.array([0.0, duration]), np.array([phase, phase + rate * duration]))
    retimed = warp(dance)
    near = np.abs(retimed[:, None] - music[None, :]).argmin(axis=1)
    hit = np.abs(retimed - music[near]) <= 2 * BEAT_SIGMA_S  # "matched": within 2 sigma of the score
    pairs = np.stack([dance[hit], music[near[hit]]], axis=1)
    return warp, pairs, {"dance_period_s": dance_period, "music_period_s": music_period, "rate": rate,
                         "phase_s": phase}


def align_to_beats(features: Any, music_beats_s: Any, *, max_speed_change: float = DEFAULT_MAX_SPEED_CHANGE,
                   window_s: float | None = None, fps: float = 20.0, method: Method = "snap",
                   frames: int | None = None) -> AlignedDance:
    """Retime a dance [T,263] so its motion beats fall on music beats (seconds); keeps T frames unless `frames`.

    snap: the most motion/music beat pairs matched in order (DP) with every slope of the map in
    [1 - max_speed_change, 1 + max_speed_change]; window_s bounds a pair's offset at the start (default half
    a music beat) and grows by max_speed_change per second of dance. tempo: one global rate and a phase.
    none: the dance unchanged.
    """
    data = _check_features(features)
    fps = _check_positive(fps, "fps")
    if method not in METHODS:
        raise DataError(f"got {method!r}", field="method", expected=f"one of {METHODS}")
    music = _check_times(music_beats_s, "music_beats_s", min_count=2 if method == "tempo" else 1)
    if music[0] < 0:
        raise DataError(f"first beat at {music[0]} s", field="music_beats_s", expected="non-negative beat times")
    change = _check_positive(max_speed_change, "max_speed_change")
    if change > 0.5:  # beyond half or 1.5x speed the retimed dance stops looking like itself
        raise DataError(f"got {max_speed_change!r}", field="max_speed_change", expected="a fraction in (0, 0.5]")
    period = float(np.median(np.diff(music))) if music.size > 1 else 1.0
    window = 0.5 * period if window_s is None else _check_positive(window_s, "window_s")
    frames = _check_frames(data.shape[0] if frames is None else frames)
    duration, low, high = data.shape[0] / fps, 1.0 - change, 1.0 + change
    dance = motion_beat_times(data, fps=fps)
    info: dict[str, Any] = {"method": method, "max_speed_change": change, "window_s": window,
                            "dance_beats": int(dance.size), "music_beats": int(music.size)}
    pairs, warp = np.zeros((0, 2)), _identity(duration)
    if method == "snap":
        # Beats within EDGE_S of either end are the smoothing's reflection, or would land where no minimum can be.
        usable = dance[(dance >= EDGE_S) & (dance <= duration - EDGE_S)]
        heard = music[(music >= EDGE_S) & (music <= frames / fps - EDGE_S)]
        pairs = _snap_pairs(usable, heard, low, high, window)
        warp = _warp_through(pairs, duration, low, high)
    elif method == "tempo" and dance.size >= 2:  # fewer dance beats: no period to retime
        warp, pairs, tempo = _tempo_warp(dance, music, duration, low, high)
        info.update(tempo)
    out = time_warp(data, warp.source_s, warp.target_s, fps=fps, frames=frames)
    slopes = warp.slopes
    info.update(matched=int(len(pairs)), slope_min=float(slopes.min()), slope_max=float(slopes.max()),
                start_shift_s=float(warp(0.0)), end_shift_s=float(warp(duration) - duration),
                bas_before=beat_alignment_score(data, music, fps=fps),
                bas_after=beat_alignment_score(out, music, fps=fps))
    return AlignedDance(features=out, warp=warp, matched=pairs, info=info)
