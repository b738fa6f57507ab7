"""NumPy quaternion helpers for the HumanML3D feature code: (w, x, y, z), Hamilton product, float64.

Private to `kpop_helpers.motion.features`. Every function broadcasts over leading dimensions.
"""

from __future__ import annotations

import numpy as np

IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])

# The current MDM code adds this to the z component in `qbetween` before normalising ("avoid zero
# division"); the HumanML3D code that built the released data set does not.
MDM_QBETWEEN_Z_BIAS = 1e-4


def qmul(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Hamilton product q ⊗ r of quaternions [..., 4]."""
    w1, x1, y1, z1 = np.moveaxis(q, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(r, -1, 0)
    return np.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        axis=-1,
    )


def qconj(q: np.ndarray) -> np.ndarray:
    """Conjugate (w, -x, -y, -z); the reference uses it as the inverse and so do we."""
    return q * np.array([1.0, -1.0, -1.0, -1.0], dtype=q.dtype)


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors v [..., 3] by quaternions q [..., 4] (scales by |q|² when q is not unit, like the reference)."""
    qvec = q[..., 1:]
    uv = np.cross(qvec, v)
    uuv = np.cross(qvec, uv)
    return v + 2.0 * (q[..., :1] * uv + uuv)


def normalize(v: np.ndarray) -> np.ndarray:
    """v / |v| along the last axis (no epsilon: callers check for degenerate input first)."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _half_turn(a: np.ndarray) -> np.ndarray:
    """A 180° rotation about an axis perpendicular to a [..., 3], preferring the vertical axis."""
    a_unit = normalize(a)
    best = np.zeros_like(a)
    best_norm = np.zeros(a.shape[:-1])
    # y first so that "facing exactly -z" turns about the vertical, as a heading rotation should.
    for axis_index in (1, 0, 2):
        e = np.zeros(3)
        e[axis_index] = 1.0
        perp = e - np.sum(a_unit * e, axis=-1, keepdims=True) * a_unit
        n = np.linalg.norm(perp, axis=-1)
        take = (best_norm < 0.5) & (n > best_norm)
        best = np.where(take[..., None], perp, best)
        best_norm = np.where(take, n, best_norm)
    axis = normalize(best)
    return np.concatenate([np.zeros(a.shape[:-1] + (1,)), axis], axis=-1)


def qbetween(a: np.ndarray, b: np.ndarray, *, z_bias: float = 0.0) -> np.ndarray:
    """Unit quaternion of the minimal rotation taking direction a to direction b ([..., 3] each).

    z_bias=MDM_QBETWEEN_Z_BIAS reproduces the current MDM code. Without it, exactly opposite
    directions (where the reference divides by zero) get a 180° turn about a perpendicular axis.
    """
    a, b = np.broadcast_arrays(a, b)
    cross = np.cross(a, b)
    w = np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1)) + np.sum(a * b, axis=-1)
    q = np.concatenate([w[..., None], cross], axis=-1)
    if z_bias:
        q[..., 3] += z_bias
        return normalize(q)
    norm = np.linalg.norm(q, axis=-1)
    degenerate = norm <= 1e-12 * np.maximum(np.abs(w), 1.0)
    if np.any(degenerate):
        q = np.where(degenerate[..., None], _half_turn(a), q)
        norm = np.linalg.norm(q, axis=-1)
    return q / norm[..., None]


def quat_to_cont6d(q: np.ndarray) -> np.ndarray:
    """6D rotation [..., 6]: the first two columns (R00, R10, R20, R01, R11, R21) of q's rotation matrix."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    s = 2.0 / np.sum(q * q, axis=-1)
    return np.stack(
        [
            1.0 - s * (y * y + z * z),
            s * (x * y + z * w),
            s * (x * z - y * w),
            s * (x * y - z * w),
            1.0 - s * (x * x + z * z),
            s * (y * z + x * w),
        ],
        axis=-1,
    )
