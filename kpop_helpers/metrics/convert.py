"""Explicit conversions from our motion convention to the references' (see docs/metrics.md, "Conversions").

Ours: T2M-22 joints, y up, metres, 20 fps. Bailando/AIST++: SMPL-24, y up, 60 fps. EDGE (PFC): SMPL-24,
z up, 30 fps. Every step is deterministic so numbers are comparable run to run.
"""

from __future__ import annotations

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.metrics.kinetic import check_joints
from kpop_helpers.numeric import cubic_spline  # scipy's CubicSpline numbers without scipy's import cost

AIST_FPS = 60.0
EDGE_FPS = 30.0
# SMPL's wrist->hand joint offset is about 8-9 cm on the neutral body; 8 cm along the forearm direction.
HAND_LENGTH_M = 0.08
LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST = 18, 19, 20, 21
NUM_T2M, NUM_SMPL = 22, 24
# +90 degrees about x: (x, y, z) -> (x, -z, y), the rotation EDGE applies to AIST++ roots.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def t2m_to_smpl24(joints: np.ndarray, *, hand_length: float = HAND_LENGTH_M) -> np.ndarray:
    """[T, 22, 3] T2M joints -> [T, 24, 3] SMPL joints; hands (22, 23) = wrist + hand_length * unit(elbow->wrist).

    The first 22 SMPL joints are the T2M joints in the same order. A zero-length forearm leaves the hand
    on the wrist. The input dtype is kept (float inputs) and [T, 24, 3] input is returned unchanged.
    """
    arr = np.asarray(joints)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape[1] not in (NUM_T2M, NUM_SMPL):
        raise DataError(f"got shape {arr.shape}", field="joints", expected="[T, 22, 3] T2M (or [T, 24, 3] SMPL) joints")
    if arr.shape[1] == NUM_SMPL:
        return arr.copy()
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    hands = []
    for elbow, wrist in ((LEFT_ELBOW, LEFT_WRIST), (RIGHT_ELBOW, RIGHT_WRIST)):
        forearm = arr[:, wrist] - arr[:, elbow]
        length = np.linalg.norm(forearm, axis=-1, keepdims=True)
        direction = np.divide(forearm, length, out=np.zeros_like(forearm), where=length > 0)
        hands.append(arr[:, wrist] + hand_length * direction)
    return np.concatenate([arr, np.stack(hands, axis=1)], axis=1).astype(arr.dtype, copy=False)


def resampled_length(num_frames: int, src_fps: float, dst_fps: float) -> int:
    """Frames covering the same duration: floor((T - 1) * dst / src + 1e-6) + 1 (first frames coincide)."""
    return int(np.floor((num_frames - 1) * float(dst_fps) / float(src_fps) + 1e-6)) + 1


def resample(joints: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Resample [T, ...] from src_fps to dst_fps: output frame k is at time k / dst_fps.

    An integer down-sampling ratio keeps every n-th frame (EDGE's 60 -> 30 fps step); anything else is a
    not-a-knot cubic spline through the frames (C2, so velocities and accelerations stay smooth). No
    low-pass filter is applied before down-sampling. float64 out.
    """
    if src_fps <= 0 or dst_fps <= 0:
        raise DataError(f"got {src_fps} -> {dst_fps}", field="fps", expected="positive frame rates")
    arr = np.asarray(joints, dtype=np.float64)
    if arr.ndim < 1 or arr.shape[0] < 1 or not np.all(np.isfinite(arr)):
        raise DataError(f"got shape {arr.shape} (or non-finite values)", field="joints",
                        expected="finite frames [T, ...] with T >= 1")
    ratio = float(src_fps) / float(dst_fps)
    if abs(ratio - 1.0) < 1e-12 or arr.shape[0] == 1:
        return arr.copy()
    if ratio > 1.0 and abs(ratio - round(ratio)) < 1e-9:
        return arr[:: int(round(ratio))].copy()
    num_out = resampled_length(arr.shape[0], src_fps, dst_fps)
    src_times = np.arange(arr.shape[0]) / float(src_fps)
    dst_times = np.arange(num_out) / float(dst_fps)
    if arr.shape[0] < 3:
        # Too few frames for a cubic: linear interpolation.
        flat = arr.reshape(arr.shape[0], -1)
        out = np.stack([np.interp(dst_times, src_times, flat[:, c]) for c in range(flat.shape[1])], axis=1)
        return out.reshape((num_out,) + arr.shape[1:])
    return cubic_spline(src_times, arr, dst_times, axis=0)


def y_up_to_z_up(joints: np.ndarray) -> np.ndarray:
    """Rotate y-up coordinates +90 degrees about x: (x, y, z) -> (x, -z, y), EDGE's convention."""
    arr = np.asarray(joints)
    if arr.shape[-1] != 3:
        raise DataError(f"got shape {arr.shape}", field="joints", expected="[..., 3] coordinates")
    return np.stack([arr[..., 0], -arr[..., 2], arr[..., 1]], axis=-1)


def z_up_to_y_up(joints: np.ndarray) -> np.ndarray:
    """Inverse of `y_up_to_z_up`: (x, y, z) -> (x, z, -y)."""
    arr = np.asarray(joints)
    if arr.shape[-1] != 3:
        raise DataError(f"got shape {arr.shape}", field="joints", expected="[..., 3] coordinates")
    return np.stack([arr[..., 0], arr[..., 2], -arr[..., 1]], axis=-1)


def to_aist_convention(joints: np.ndarray, fps: float) -> np.ndarray:
    """Our [T, 22|24, 3] y-up joints at fps -> Bailando/AIST++: [T', 24, 3] float64, y up, 60 fps.

    Steps: t2m_to_smpl24 (hands 8 cm past the wrists), then `resample` to 60 fps. No zero-start (the
    feature pipeline does that) and no re-centring.
    """
    positions = check_joints(joints, min_frames=1)
    return resample(t2m_to_smpl24(positions), fps, AIST_FPS)


def to_edge_convention(joints: np.ndarray, fps: float) -> np.ndarray:
    """Our [T, 22|24, 3] y-up joints at fps -> EDGE: [T', 24, 3] float64, z up, 30 fps.

    Steps: t2m_to_smpl24, `resample` to 30 fps, then y_up_to_z_up.
    """
    positions = check_joints(joints, min_frames=1)
    return y_up_to_z_up(resample(t2m_to_smpl24(positions), fps, EDGE_FPS))
