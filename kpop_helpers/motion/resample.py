"""Resampling joint trajectories to another frame rate."""

from __future__ import annotations

import numpy as np


def resample_positions(positions: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Linearly interpolate positions [T, ...] from src_fps to dst_fps (keeps the first frame and dtype)."""
    positions = np.asarray(positions)
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"frame rates must be positive (got {src_fps} -> {dst_fps})")
    if abs(src_fps - dst_fps) < 1e-9 or positions.shape[0] < 2:
        return positions.copy()
    duration = (positions.shape[0] - 1) / src_fps
    n_out = int(np.floor(duration * dst_fps + 1e-6)) + 1
    t_out = np.arange(n_out) / dst_fps
    src_idx = t_out * src_fps
    lo = np.clip(np.floor(src_idx).astype(np.int64), 0, positions.shape[0] - 1)
    hi = np.clip(lo + 1, 0, positions.shape[0] - 1)
    w = (src_idx - lo).reshape((-1,) + (1,) * (positions.ndim - 1))
    out = positions[lo] * (1.0 - w) + positions[hi] * w
    return out.astype(positions.dtype, copy=False)
