"""AIST++/Bailando kinetic features (72-d): per-joint kinetic energies and energy expenditure.

Matches `extract_kinetic_features` of lisiyao21/Bailando `utils/features/kinetic.py` (= google/aistplusplus_api)
in `mode="compat"`, quirks included; `mode="corrected"` fixes them (see docs/metrics.md, quirks K1-K3).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from kpop_helpers.errors import DataError

Mode = Literal["compat", "corrected"]
MODES: tuple[str, ...] = ("compat", "corrected")

REFERENCE_FPS = 60.0
SLIDING_WINDOW = 2
KINETIC_DIM_PER_JOINT = 3


def check_mode(mode: str) -> None:
    """Raise DataError unless mode is "compat" or "corrected"."""
    if mode not in MODES:
        raise DataError(f"unknown metrics mode {mode!r}", field="mode", expected="'compat' or 'corrected'")


def check_joints(joints: np.ndarray, *, name: str = "joints", min_frames: int = 2,
                 num_joints: int | None = None) -> np.ndarray:
    """Validate a [T, J, 3] finite joint array and return it as float64."""
    arr = np.asarray(joints)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise DataError(f"got shape {arr.shape}", field=name, expected="joint positions [T, J, 3]")
    if num_joints is not None and arr.shape[1] != num_joints:
        raise DataError(f"got {arr.shape[1]} joints", field=name,
                        expected=f"{num_joints} joints (convert with kpop_helpers.metrics.convert)")
    if arr.shape[0] < min_frames:
        raise DataError(f"got {arr.shape[0]} frames", field=name, expected=f"at least {min_frames} frames")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"got dtype {arr.dtype}", field=name, expected="a numeric array")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise DataError("contains NaN or inf", field=name, expected="finite joint positions")
    return arr


def check_reference_fps(fps: float, mode: str, what: str) -> None:
    """In compat mode the reference hard-codes 60 fps: refuse other rates instead of silently mis-scaling."""
    if mode == "compat" and abs(float(fps) - REFERENCE_FPS) > 1e-9:
        raise DataError(
            f"compat-mode {what} assume {REFERENCE_FPS:g} fps but fps={fps:g}", field="fps",
            expected="60 fps joints (use kpop_helpers.metrics.convert.to_aist_convention) or mode='corrected'")


def _window_sum(values: np.ndarray, valid_lo: int, valid_hi: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum values[k] over k = i-2..i+2 clipped to [valid_lo, valid_hi], for i = 1..T-1.

    `values` is indexed by frame k (rows outside [valid_lo, valid_hi] are ignored). Summation runs
    j = -2..2 in the reference's order. Returns (sums [T-1, ...], counts [T-1]).
    """
    idx = np.arange(1, num_frames)
    sums = np.zeros((num_frames - 1,) + values.shape[1:], dtype=np.float64)
    counts = np.zeros(num_frames - 1, dtype=np.int64)
    for offset in range(-SLIDING_WINDOW, SLIDING_WINDOW + 1):
        k = idx + offset
        ok = (k >= valid_lo) & (k <= valid_hi)
        sums[ok] += values[k[ok]]
        counts += ok
    return sums, counts


def kinetic_energies(joints: np.ndarray, frame_time: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean squared window-averaged speed per joint: (horizontal [J], vertical [J]), y up, in m^2/s^2."""
    num_frames = joints.shape[0]
    # d_k = P_k - P_{k-1} for k = 1..T-1, stored at row k (row 0 unused).
    steps = np.zeros_like(joints)
    steps[1:] = joints[1:] - joints[:-1]
    sums, counts = _window_sum(steps, 1, num_frames - 1, num_frames)
    mean_vel = sums / (counts[:, None, None] * frame_time)
    horizontal = np.linalg.norm(mean_vel[..., [0, 2]], axis=-1) ** 2
    vertical = np.abs(mean_vel[..., 1]) ** 2
    return horizontal.sum(axis=0) / (num_frames - 1.0), vertical.sum(axis=0) / (num_frames - 1.0)


def energy_expenditure(joints: np.ndarray, frame_time: float, mode: str = "compat") -> np.ndarray:
    """Mean norm of the window-averaged acceleration per joint [J] (compat keeps quirk K1)."""
    num_frames = joints.shape[0]
    accel = np.zeros_like(joints)
    prev, cur, nxt = joints[:-2], joints[1:-1], joints[2:]
    v2 = (nxt - cur) / frame_time
    if mode == "compat":
        # K1: the reference writes `P_k - P_{k-1} / dt` (operator precedence), kept for the published numbers.
        v1 = cur - prev / frame_time
    else:
        v1 = (cur - prev) / frame_time
    accel[1:-1] = (v2 - v1) / frame_time
    sums, counts = _window_sum(accel, 1, num_frames - 2, num_frames)
    return np.linalg.norm(sums / counts[:, None, None], axis=-1).sum(axis=0) / (num_frames - 1.0)


def extract_kinetic_features(joints: np.ndarray, *, mode: Mode = "compat", fps: float = REFERENCE_FPS) -> np.ndarray:
    """72-d (3 per joint) kinetic features of joints [T, J, 3] (y up, metres) as float32.

    Layout per joint j: [3j] horizontal KE, [3j+1] vertical KE, [3j+2] energy expenditure. compat uses
    the reference's fixed 1/60 s frame time (fps must be 60) and its K1 acceleration; corrected uses 1/fps
    and a true second difference. No zero-start here: see `suite.bailando_features` for the pipeline.
    """
    check_mode(mode)
    check_reference_fps(fps, mode, "kinetic features")
    positions = check_joints(joints, min_frames=3)
    frame_time = 1.0 / REFERENCE_FPS if mode == "compat" else 1.0 / float(fps)
    horizontal, vertical = kinetic_energies(positions, frame_time)
    expenditure = energy_expenditure(positions, frame_time, mode)
    return np.stack([horizontal, vertical, expenditure], axis=1).reshape(-1).astype(np.float32)
