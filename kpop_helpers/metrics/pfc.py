"""EDGE's Physical Foot Contact score (Stanford-TML/EDGE `eval/eval_pfc.py` `calc_physical_score`).

Per motion: mean over t of (slowest left-foot joint speed) x (slowest right-foot joint speed) x (root
acceleration / its maximum), with z up, 30 fps, feet = SMPL joints 7, 10, 8, 11; PFC = 10000 x the mean.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.metrics.kinetic import Mode, check_joints, check_mode

EDGE_FPS = 30.0
UP_AXIS = 2  # z up, as EDGE's SMPL forward kinematics produces
ROOT_JOINT = 0
FOOT_JOINTS = (7, 10, 8, 11)  # left ankle, left foot, right ankle, right foot
PFC_SCALE = 10000.0


@dataclass(frozen=True)
class FootContact:
    """One motion's PFC terms: raw score, normalised root acceleration [S-2], min foot speeds [S-2, 2], scale."""

    score: float
    root_acc_norm: np.ndarray
    foot_min_speed: np.ndarray
    scaling: float


def foot_contact_terms(joints: np.ndarray, *, mode: Mode = "compat", fps: float = EDGE_FPS) -> FootContact:
    """PFC terms of one motion [S, J>=12, 3], z up, metres, 30 fps (EDGE convention).

    A root that never accelerates divides 0 by 0 in the reference (P2): compat keeps the NaN (with a
    warning), corrected defines the score as 0. Only 30 fps is accepted: speeds are per frame (P1).
    """
    check_mode(mode)
    if abs(float(fps) - EDGE_FPS) > 1e-9:
        raise DataError(f"PFC assumes {EDGE_FPS:g} fps but fps={fps:g}", field="fps",
                        expected="30 fps z-up joints (use kpop_helpers.metrics.convert.to_edge_convention)")
    positions = check_joints(joints, min_frames=3)
    if positions.shape[1] <= max(FOOT_JOINTS):
        raise DataError(f"got {positions.shape[1]} joints", field="joints",
                        expected="SMPL-24 (or T2M-22) joint order with feet at 7, 10, 8, 11")
    dt = 1.0 / EDGE_FPS
    root = positions[:, ROOT_JOINT, :]
    root_v = (root[1:] - root[:-1]) / dt
    root_a = (root_v[1:] - root_v[:-1]) / dt
    root_a[:, UP_AXIS] = np.maximum(root_a[:, UP_AXIS], 0)  # only upward root acceleration counts
    root_a = np.linalg.norm(root_a, axis=-1)
    scaling = float(root_a.max())
    if scaling == 0.0 and mode == "corrected":
        root_a = np.zeros_like(root_a)
    else:
        if scaling == 0.0:
            warnings.warn("PFC: the root never accelerates; the reference divides 0 by 0 (NaN)",
                          RuntimeWarning, stacklevel=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            root_a = root_a / scaling
    flat = [axis for axis in range(3) if axis != UP_AXIS]
    feet = positions[:, list(FOOT_JOINTS)][..., flat]
    foot_v = np.linalg.norm(feet[2:] - feet[1:-1], axis=-1)  # metres per frame, frame t+1 -> t+2
    foot_mins = np.stack([np.minimum(foot_v[:, 0], foot_v[:, 1]), np.minimum(foot_v[:, 2], foot_v[:, 3])], axis=1)
    score = float(np.mean(foot_mins[:, 0] * foot_mins[:, 1] * root_a))
    return FootContact(score=score, root_acc_norm=root_a, foot_min_speed=foot_mins, scaling=scaling)


def physical_foot_contact(motions: Sequence[np.ndarray], *, mode: Mode = "compat", fps: float = EDGE_FPS) -> float:
    """PFC = 10000 x mean per-motion score over motions [S, 24, 3] (z up, 30 fps); lower is better."""
    if len(motions) == 0:
        raise DataError("no motions given", field="motions", expected="at least one motion")
    scores = [foot_contact_terms(m, mode=mode, fps=fps).score for m in motions]
    return float(np.mean(scores) * PFC_SCALE)
