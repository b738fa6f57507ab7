"""The HumanML3D 263-d motion representation: joints -> features (`process_file`) and back (`recover_from_ric`).

Two encoder modes, both reproducing a reference implementation (see the humanml_features fixture README):

* ``"hml3d"`` (default): the HumanML3D repository's `process_file`, which built the released data set that the
  official MDM checkpoints were trained on. Its frame-0 heading is identity, so
  ``features_to_joints(joints_to_features(x))`` equals ``process_motion(x).global_positions[:-1]``.
* ``"mdm"``: the current MDM code (GuyTevet/motion-diffusion-model @ d4fd88c): a 1e-4 bias in every
  quaternion-between and the smoothed frame-0 heading kept, so decoding is rotated by that heading.

Both keep the reference's quirks (swapped hips in the IK facing, half-angle root angular velocity, next-frame
heading for the root velocity, ...) because the data set and the checkpoints were made with them.

The decoder is the same for both modes. `features_to_joints` takes numpy (float64 inside) or a torch tensor;
`features_to_joints_torch` is the pure-torch version for batches on an accelerator. This module never imports
torch at import time: the torch-free edge runtime uses the numpy decoder.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.motion import _quaternion as quat
from kpop_helpers.motion.skeleton import (
    FOOT_JOINTS,
    NUM_T2M_JOINTS,
    T2M_KINEMATIC_CHAIN,
    T2M_PARENTS,
    T2M_RAW_OFFSETS,
    T2M_TARGET_OFFSETS,
)
from kpop_helpers.numeric import gaussian_filter1d

if TYPE_CHECKING:  # pragma: no cover
    import torch

FEATURE_DIM = 263
MODES = ("hml3d", "mdm")
DEFAULT_FEET_THRESHOLD = 0.002  # squared foot displacement per frame, m² (HumanML3D's value)

# Column blocks of one feature row, in order.
FEATURE_SLICES: dict[str, slice] = {
    "root_rot_velocity": slice(0, 1),
    "root_linear_velocity": slice(1, 3),
    "root_y": slice(3, 4),
    "ric": slice(4, 4 + (NUM_T2M_JOINTS - 1) * 3),
    "rot6d": slice(67, 67 + (NUM_T2M_JOINTS - 1) * 6),
    "local_velocity": slice(193, 193 + NUM_T2M_JOINTS * 3),
    "foot_contact": slice(259, 263),
}

# Bones whose frame-0 source lengths set the retargeting scale: right thigh (2->5) and right shin (5->8).
_SCALE_BONES = (5, 8)
# Heading smoothing of the feature IK: scipy.ndimage.gaussian_filter1d(sigma=20, truncate=4, mode="nearest").
_HEADING_SIGMA = 20.0
_HEADING_TRUNCATE = 4.0
_UP = np.array([0.0, 1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])
_MIN_BONE_LENGTH = 1e-6  # metres; shorter bones have no direction to keep


@dataclass(frozen=True)
class ProcessedMotion:
    """Outputs of `process_motion`: features [T-1, 263], retargeted global positions [T, 22, 3], root velocity."""

    features: np.ndarray
    global_positions: np.ndarray
    l_velocity: np.ndarray
    retarget_scale: float


def _gaussian_smooth(x: np.ndarray, sigma: float = _HEADING_SIGMA, truncate: float = _HEADING_TRUNCATE) -> np.ndarray:
    """Gaussian filter along axis 0 with edge frames repeated, identical to scipy's gaussian_filter1d('nearest')."""
    return gaussian_filter1d(x, sigma, axis=0, mode="nearest", truncate=truncate)


def _forward_direction(frames: np.ndarray, hips: tuple[int, int], source: str | None, what: str) -> np.ndarray:
    """Unit horizontal forward y × across, across = (p[hips[0]] - p[hips[1]]) + (right - left shoulder)."""
    across = frames[..., hips[0], :] - frames[..., hips[1], :] + frames[..., 17, :] - frames[..., 16, :]
    across_norm = np.linalg.norm(across, axis=-1, keepdims=True)
    forward = np.cross(_UP, across / np.where(across_norm > 0, across_norm, 1.0))
    forward_norm = np.linalg.norm(forward, axis=-1)
    bad = (across_norm[..., 0] <= 1e-9) | (forward_norm <= 1e-6)
    if np.any(bad):
        frame = int(np.argwhere(np.atleast_1d(bad))[0][0])
        raise DataError(
            f"cannot determine the body's facing direction ({what}): the hip and shoulder lines are degenerate "
            f"or vertical at frame {frame}",
            path=source, field="positions", expected="hips and shoulders spread sideways",
        )
    return forward


def _inverse_kinematics(positions: np.ndarray, *, smooth: bool, mode: str, source: str | None) -> np.ndarray:
    """Swing-only local joint quaternions [T, 22, 4] (root = heading) as HumanML3D's `inverse_kinematics_np`."""
    z_bias = quat.MDM_QBETWEEN_Z_BIAS if mode == "mdm" else 0.0
    # Quirk kept on purpose: the hips are swapped here (left - right), unlike the initial facing.
    forward = _forward_direction(positions, (1, 2), source, "heading")
    if smooth:
        forward = _gaussian_smooth(forward)
    forward = quat.normalize(forward)
    root = quat.qbetween(forward, _FORWARD, z_bias=z_bias)
    if mode == "hml3d":
        root[0] = quat.IDENTITY  # the released data set was built with an identity frame-0 heading
    rotations = np.zeros(positions.shape[:-1] + (4,))
    rotations[:, 0] = root
    for chain in T2M_KINEMATIC_CHAIN:
        # Every chain, the arms included, starts from the root heading, not from its first joint's rotation.
        accumulated = root
        for parent, child in zip(chain[:-1], chain[1:]):
            direction = quat.normalize(positions[:, child] - positions[:, parent])
            world = quat.qbetween(T2M_RAW_OFFSETS[child].astype(np.float64), direction, z_bias=z_bias)
            local = quat.qmul(quat.qconj(accumulated), world)
            accumulated = quat.qmul(accumulated, local)
            rotations[:, child] = local
    return rotations


def _forward_kinematics(rotations: np.ndarray, root_positions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Joint positions [T, 22, 3] from local rotations and fixed bone offsets (HumanML3D `forward_kinematics_np`)."""
    joints = np.zeros(rotations.shape[:-1] + (3,))
    joints[:, 0] = root_positions
    for chain in T2M_KINEMATIC_CHAIN:
        accumulated = rotations[:, 0]
        for parent, child in zip(chain[:-1], chain[1:]):
            accumulated = quat.qmul(accumulated, rotations[:, child])
            joints[:, child] = quat.qrot(accumulated, np.broadcast_to(offsets[child], joints[:, child].shape))
            joints[:, child] += joints[:, parent]
    return joints


def _check_positions(positions: Any, source: str | None) -> np.ndarray:
    """Validated float64 copy of joint positions [T >= 2, 22, 3] with no zero-length bones."""
    try:
        array = np.asarray(positions)
    except Exception as error:  # noqa: BLE001 - anything unconvertible is bad input
        raise DataError(f"cannot read joint positions as an array ({error})", path=source, field="positions") from error
    expected = f"an array of shape [T >= 2, {NUM_T2M_JOINTS}, 3] (T2M joints, y up, metres)"
    if array.dtype.kind not in "fiu" or array.ndim != 3 or array.shape[1:] != (NUM_T2M_JOINTS, 3) or len(array) < 2:
        raise DataError(f"got shape {array.shape}, dtype {array.dtype}", path=source, field="positions",
                        expected=expected)
    array = array.astype(np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        frame, joint = (int(i) for i in np.argwhere(~finite.all(axis=-1))[0])
        raise DataError(f"non-finite value (NaN or inf) at frame {frame}, joint {joint}", path=source,
                        field="positions", expected="finite joint positions")
    parents = np.array([max(p, 0) for p in T2M_PARENTS])
    lengths = np.linalg.norm(array[:, 1:] - array[:, parents[1:]], axis=-1)
    if lengths.min() < _MIN_BONE_LENGTH:
        frame, bone = (int(i) for i in np.unravel_index(np.argmin(lengths), lengths.shape))
        raise DataError(f"bone {parents[bone + 1]}->{bone + 1} has length {lengths[frame, bone]:.3g} m at frame {frame}",
                        path=source, field="positions", expected=f"every bone longer than {_MIN_BONE_LENGTH} m")
    return array


def _check_target_offsets(tgt_offsets: Any, source: str | None) -> np.ndarray:
    """Validated float64 target offsets [22, 3]: each bone a positive length along its raw T2M direction."""
    offsets = np.asarray(T2M_TARGET_OFFSETS if tgt_offsets is None else tgt_offsets)
    if offsets.shape != (NUM_T2M_JOINTS, 3) or offsets.dtype.kind not in "fiu" or not np.isfinite(offsets).all():
        raise DataError(f"got shape {offsets.shape}, dtype {offsets.dtype}", path=source, field="tgt_offsets",
                        expected=f"finite [{NUM_T2M_JOINTS}, 3] bone offsets")
    offsets = offsets.astype(np.float64)
    raw = T2M_RAW_OFFSETS.astype(np.float64)
    lengths = np.sum(offsets * raw, axis=-1)
    off_axis = np.linalg.norm(offsets - lengths[:, None] * raw, axis=-1)
    bad = (lengths[1:] <= 0) | (off_axis[1:] > 1e-6 * np.maximum(np.abs(lengths[1:]), 1.0))
    if np.any(bad):
        joint = int(np.argmax(bad)) + 1
        raise DataError(f"row {joint} is {offsets[joint].tolist()}", path=source, field="tgt_offsets",
                        expected=f"a positive length along the raw T2M direction {T2M_RAW_OFFSETS[joint].tolist()}")
    return offsets


def _retarget(positions: np.ndarray, offsets: np.ndarray, mode: str, source: str | None) -> tuple[np.ndarray, float]:
    """HumanML3D `uniform_skeleton`: keep the source bone directions, use the target lengths, scale the root path."""
    source_legs = sum(float(np.linalg.norm(positions[0, j] - positions[0, T2M_PARENTS[j]])) for j in _SCALE_BONES)
    target_legs = sum(float(np.linalg.norm(offsets[j])) for j in _SCALE_BONES)
    scale = target_legs / source_legs
    rotations = _inverse_kinematics(positions, smooth=False, mode=mode, source=source)
    return _forward_kinematics(rotations, positions[:, 0] * scale, offsets), scale


def process_motion(
    positions: np.ndarray,
    *,
    mode: str = "hml3d",
    feet_thre: float = DEFAULT_FEET_THRESHOLD,
    tgt_offsets: np.ndarray | None = None,
    source: str | None = None,
) -> ProcessedMotion:
    """Run `process_file` on joints [T, 22, 3]: features, retargeted global positions and root velocity."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not np.isfinite(feet_thre) or feet_thre <= 0:
        raise ValueError(f"feet_thre must be a positive squared displacement in m², got {feet_thre!r}")
    positions = _check_positions(positions, source)
    offsets = _check_target_offsets(tgt_offsets, source)
    z_bias = quat.MDM_QBETWEEN_Z_BIAS if mode == "mdm" else 0.0

    joints, scale = _retarget(positions, offsets, mode, source)
    joints[..., 1] -= joints[..., 1].min()  # floor: lowest point over all joints and frames
    joints -= joints[0, 0] * np.array([1.0, 0.0, 1.0])  # centre frame 0's root on the vertical axis
    # Initial facing from frame 0 alone, with the hips in the correct order (unlike the IK).
    facing0 = quat.normalize(_forward_direction(joints[0], (2, 1), source, "frame 0"))
    joints = quat.qrot(quat.qbetween(facing0, _FORWARD, z_bias=z_bias), joints)

    foot_steps = joints[1:, list(FOOT_JOINTS)] - joints[:-1, list(FOOT_JOINTS)]
    contacts = (np.sum(foot_steps**2, axis=-1) < feet_thre).astype(np.float64)  # left ankle/foot, right ankle/foot

    rotations = _inverse_kinematics(joints, smooth=True, mode=mode, source=source)
    heading = rotations[:, 0]
    rot6d = quat.quat_to_cont6d(rotations[:, 1:]).reshape(len(joints), -1)
    # Quirk kept: the root velocity uses the *next* frame's heading, the joint velocities the current one.
    root_velocity = quat.qrot(heading[1:], joints[1:, 0] - joints[:-1, 0])
    l_velocity = root_velocity[:, [0, 2]]
    heading_step = quat.qmul(heading[1:], quat.qconj(heading[:-1]))
    root_rot_velocity = np.arcsin(np.clip(heading_step[:, 2], -1.0, 1.0))  # a half-angle, as in the data set

    local = joints - joints[:, :1] * np.array([1.0, 0.0, 1.0])
    local = quat.qrot(heading[:, None], local)
    ric = local[:, 1:].reshape(len(joints), -1)
    local_velocity = quat.qrot(heading[:-1, None], joints[1:] - joints[:-1]).reshape(len(joints) - 1, -1)

    features = np.concatenate(
        [root_rot_velocity[:, None], l_velocity, local[:-1, 0, 1:2], ric[:-1], rot6d[:-1], local_velocity, contacts],
        axis=-1,
    )
    if not np.isfinite(features).all():
        raise DataError("the conversion produced non-finite features (degenerate pose)", path=source,
                        field="positions", expected="a non-degenerate T2M pose sequence")
    return ProcessedMotion(
        features=features.astype(np.float32),
        global_positions=joints.astype(np.float32),
        l_velocity=l_velocity.astype(np.float32),
        retarget_scale=scale,
    )


def joints_to_features(
    positions: np.ndarray,
    *,
    mode: str = "hml3d",
    feet_thre: float = DEFAULT_FEET_THRESHOLD,
    tgt_offsets: np.ndarray | None = None,
    source: str | None = None,
) -> np.ndarray:
    """HumanML3D 263-d features [T-1, 263] float32 of T2M joints [T, 22, 3] (y up, metres, 20 fps)."""
    return process_motion(positions, mode=mode, feet_thre=feet_thre, tgt_offsets=tgt_offsets, source=source).features


def _is_torch_tensor(value: Any) -> bool:
    """True for a torch.Tensor, without importing torch when the caller never did."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(value, torch_module.Tensor)


def _check_feature_shape(shape: tuple[int, ...], source: str | None) -> None:
    """Raise DataError unless shape is [..., T >= 1, 263]."""
    if len(shape) < 2 or shape[-1] != FEATURE_DIM or shape[-2] < 1:
        raise DataError(f"got shape {tuple(shape)}", path=source, field="features",
                        expected=f"[..., T >= 1, {FEATURE_DIM}] HumanML3D features")


def features_to_joints(features: Any, *, source: str | None = None) -> Any:
    """Joint positions [..., T, 22, 3] from features [..., T, 263] (`recover_from_ric`); numpy or torch in and out."""
    if _is_torch_tensor(features):
        return features_to_joints_torch(features, source=source)
    array = np.asarray(features)
    _check_feature_shape(array.shape, source)
    if array.dtype.kind != "f":
        raise DataError(f"got dtype {array.dtype}", path=source, field="features", expected="floating-point features")
    if not np.isfinite(array[..., :67]).all():
        raise DataError("non-finite value (NaN or inf) in the root or ric columns", path=source, field="features",
                        expected="finite features")
    data = array.astype(np.float64)
    # Heading angle a_t = sum of the previous rows' half-angle velocities; conj(Q_t) turns by -2 a_t about y.
    angle = np.concatenate([np.zeros(data.shape[:-2] + (1,)), np.cumsum(data[..., :-1, 0], axis=-1)], axis=-1)
    inverse_heading = np.stack([np.cos(angle), np.zeros_like(angle), -np.sin(angle), np.zeros_like(angle)], axis=-1)
    step = np.zeros(data.shape[:-1] + (3,))
    step[..., 1:, 0] = data[..., :-1, 1]
    step[..., 1:, 2] = data[..., :-1, 2]
    root = np.cumsum(quat.qrot(inverse_heading, step), axis=-2)
    root[..., 1] = data[..., 3]
    ric = data[..., 4:67].reshape(data.shape[:-1] + (NUM_T2M_JOINTS - 1, 3))
    body = quat.qrot(inverse_heading[..., None, :], ric) + (root * np.array([1.0, 0.0, 1.0]))[..., None, :]
    return np.concatenate([root[..., None, :], body], axis=-2).astype(array.dtype)


def features_to_joints_torch(features: "torch.Tensor", *, source: str | None = None) -> "torch.Tensor":
    """Torch `recover_from_ric`: [..., T, 263] -> [..., T, 22, 3] on the input's device and dtype, differentiable.

    Computes in float64 (float32 on MPS, which has no float64) because the root path is a cumulative sum.
    Unlike the numpy path it does not check for NaN, which would synchronise the device.
    """
    import torch

    _check_feature_shape(tuple(features.shape), source)
    if not features.is_floating_point():
        raise DataError(f"got dtype {features.dtype}", path=source, field="features",
                        expected="floating-point features")
    compute = torch.float32 if features.device.type == "mps" else torch.float64
    data = features.to(compute)
    zeros = torch.zeros_like(data[..., :1, 0])
    angle = torch.cat([zeros, torch.cumsum(data[..., :-1, 0], dim=-1)], dim=-1)
    cos, sin = torch.cos(2.0 * angle), torch.sin(2.0 * angle)

    def turn(x: torch.Tensor, z: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Rotation by -2a about y (conj of (cos a, 0, sin a, 0)) in closed form.
        return x * c - z * s, x * s + z * c

    step_x = torch.cat([zeros, data[..., :-1, 1]], dim=-1)
    step_z = torch.cat([zeros, data[..., :-1, 2]], dim=-1)
    root_dx, root_dz = turn(step_x, step_z, cos, sin)
    root_x, root_z = torch.cumsum(root_dx, dim=-1), torch.cumsum(root_dz, dim=-1)
    root = torch.stack([root_x, data[..., 3], root_z], dim=-1)
    ric = data[..., 4:67].reshape(data.shape[:-1] + (NUM_T2M_JOINTS - 1, 3))
    body_x, body_z = turn(ric[..., 0], ric[..., 2], cos[..., None], sin[..., None])
    body = torch.stack([body_x + root_x[..., None], ric[..., 1], body_z + root_z[..., None]], dim=-1)
    return torch.cat([root[..., None, :], body], dim=-2).to(features.dtype)
