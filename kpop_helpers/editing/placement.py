"""Put a generated dance where the user's clip was: one rigid motion (yaw + shift) per run of kept frames."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def place_on(joints: np.ndarray, anchors: Sequence[Any]) -> np.ndarray:
    """joints [T,22,3] turned about y and moved so that each run of known frames lands on the user's clip.

    HumanML3D features know the pose and the root's motion, not where the dancer stands, so the recovered
    dance starts at the origin. Each run of consecutive known frames gets the rigid motion (yaw + shift)
    that puts its known joints on the user's (least squares); frames between two runs move from one to
    the next linearly (the generated part absorbs the drift), frames outside follow the nearest run.
    """
    known = np.zeros(joints.shape[:2], dtype=bool)
    target = np.zeros(joints.shape, dtype=np.float64)
    for item in anchors:
        rows = min(item.end, joints.shape[0]) - item.start
        span = slice(item.start, item.start + rows)
        target[span] = np.where(item.joint_mask[:rows, :, None], item.joints[:rows], target[span])
        known[span] |= item.joint_mask[:rows]
    frames = np.flatnonzero(known.any(axis=1))
    if frames.size == 0:
        return joints
    runs = np.split(frames, np.flatnonzero(np.diff(frames) > 1) + 1)
    fits = [_rigid_fit(joints[run][known[run]], target[run][known[run]]) for run in runs]
    anchor_frames, angles, shifts = [], [], []
    for run, (angle, shift) in zip(runs, fits, strict=True):
        anchor_frames += [run[0], run[-1]]
        angles += [angle, angle]
        shifts += [shift, shift]
    every = np.arange(joints.shape[0])
    angle = np.interp(every, anchor_frames, np.unwrap(angles))
    shift = np.stack([np.interp(every, anchor_frames, np.array(shifts)[:, k]) for k in range(3)], axis=1)
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    x, y, z = (joints[..., k].astype(np.float64) for k in range(3))
    placed = np.stack([c * x + s * z, y, -s * x + c * z], axis=-1) + shift[:, None, :]
    return placed.astype(np.float32)


def _rigid_fit(generated: np.ndarray, given: np.ndarray) -> tuple[float, np.ndarray]:
    """(yaw angle, shift [3]) minimising |R(yaw) p + shift - q|^2 over point pairs (2-D Kabsch in x/z)."""
    p, q = generated.astype(np.float64), given.astype(np.float64)
    pc, qc = p - p.mean(axis=0), q - q.mean(axis=0)
    angle = float(np.arctan2(np.sum(pc[:, 2] * qc[:, 0] - pc[:, 0] * qc[:, 2]),
                             np.sum(pc[:, 0] * qc[:, 0] + pc[:, 2] * qc[:, 2])))
    c, s = np.cos(angle), np.sin(angle)
    rotated = np.stack([c * p[:, 0] + s * p[:, 2], p[:, 1], -s * p[:, 0] + c * p[:, 2]], axis=1)
    return angle, q.mean(axis=0) - rotated.mean(axis=0)
