"""What a choreographer keeps: keyframes and spans, body parts, a clip to continue, as feature-space constraints.

Known motion comes in as joints (a loader's `MotionClip`, or an array [T,22,3] at 20 fps unless `fps=`)
or as de-normalised HumanML3D features [T,263]. Joints are converted with the project's features (the
`hml3d` encoder training uses), so T joint frames give T-1 feature frames: feature frame i holds the
pose of joint frame i and the root's motion to frame i+1, and the clip's last frame is not kept.

The feature columns of a body part follow MDM's lower-body mask (`sampling.hml_lower_body_mask`): the
joints' position, rotation and velocity columns; the 4 root columns (rotation velocity, xz velocity,
height) and the 4 foot-contact columns are kept exactly when the pelvis is kept. So "lower" keeps the
path through the room and the footwork, and "upper" regenerates the root and the feet together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from kpop_helpers.editing.placement import place_on
from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_DIM, features_to_joints, joints_to_features
from kpop_helpers.motion.resample import resample_positions
from kpop_helpers.motion.skeleton import FPS_HUMANML, NUM_T2M_JOINTS, T2M_JOINT_NAMES
from kpop_helpers.sampling import LOWER_BODY_JOINTS, hml_lower_body_mask

BODY_PARTS: dict[str, tuple[str, ...]] = {
    "lower": LOWER_BODY_JOINTS,
    "upper": tuple(name for name in T2M_JOINT_NAMES if name not in LOWER_BODY_JOINTS),
}


@dataclass(frozen=True)
class DanceConstraint:
    """Known features [F,263] (de-normalised) with their mask, placed at dance frame `start`.

    joints: the user's joints [F,22,3] for those frames when the motion came as joints (used to put the
    generated dance where the user's clip was, and to measure how closely it is kept); None for features.
    min_frames: the shortest dance this constraint asks for (a continuation asks for more than it knows).
    """

    features: np.ndarray
    mask: np.ndarray
    start: int
    kind: str
    joints: np.ndarray | None = None
    joint_mask: np.ndarray | None = None  # bool [F,22]: which of `joints` are known
    min_frames: int = 0

    @property
    def end(self) -> int:
        """One past the last dance frame this constraint covers."""
        return self.start + int(self.features.shape[0])

    def described_joints(self) -> np.ndarray | None:
        """The kept motion as its features describe it (the clip retargeted to the model's skeleton), placed on
        the user's joints: what a generated dance keeps at the known frames. None without the user's joints."""
        if self.joints is None or self.joint_mask is None:
            return None
        return place_on(features_to_joints(self.features), [dataclasses.replace(self, start=0)])

    @property
    def last_known(self) -> int:
        """One past the last dance frame with a known feature (the dance must be at least this long)."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        return self.start + (int(rows[-1]) + 1 if rows.size else 0)


def _motion_features(motion: Any, fps: float | None, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(features [F,263], joints [F,22,3] or None) of a MotionClip, joints array or features array."""
    source = getattr(motion, "source", None) or what
    if hasattr(motion, "positions"):  # a MotionClip
        fps = float(motion.fps) if fps is None else fps
        motion = motion.positions
    array = np.asarray(motion.detach().cpu().numpy() if hasattr(motion, "detach") else motion, dtype=np.float32)
    if array.ndim == 2 and array.shape[1] == FEATURE_DIM:
        if not np.isfinite(array).all():
            raise DataError(f"non-finite feature at frame {int(np.argwhere(~np.isfinite(array))[0][0])}",
                            record=source, field=what, expected="finite HumanML3D features")
        return array, None
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[1] not in (NUM_T2M_JOINTS, 24):
        raise DataError(f"got shape {tuple(array.shape)}", record=source, field=what,
                        expected=f"joints [T, {NUM_T2M_JOINTS}, 3] (T2M order; SMPL's 24 also work), "
                                 f"or features [T, {FEATURE_DIM}]")
    if not np.isfinite(array).all():
        raise DataError(f"non-finite joint position at frame {int(np.argwhere(~np.isfinite(array))[0][0])}",
                        record=source, field=what, expected="finite joint positions")
    joints = array[:, :NUM_T2M_JOINTS]
    if fps is not None and abs(float(fps) - FPS_HUMANML) > 1e-6:
        joints = resample_positions(joints, float(fps), FPS_HUMANML)
    if joints.shape[0] < 2:
        raise DataError(f"{joints.shape[0]} frame(s) at 20 fps", record=source, field=what,
                        expected="at least 2 frames (features are differences between frames)")
    return joints_to_features(joints, source=source).astype(np.float32), joints[:-1]


def _frame_rows(count: int, frames: Any, seconds: Any, what: str) -> np.ndarray:
    """Bool [count]: the motion's frames named by `frames` (ints, slices, a bool mask) or `seconds` spans."""
    if frames is not None and seconds is not None:
        raise DataError("both frames and seconds given", field=what, expected="one of them")
    rows = np.zeros(count, dtype=bool)
    if frames is None and seconds is None:
        rows[:] = True
        return rows
    if seconds is not None:
        spans = [seconds] if np.ndim(seconds) == 1 and len(seconds) == 2 else list(seconds)
        for span in spans:
            if len(span) != 2 or not 0 <= float(span[0]) < float(span[1]):
                raise DataError(f"span {span}", field=f"{what}.seconds", expected="(start_s, end_s), 0 <= start < end")
            lo, hi = round(float(span[0]) * FPS_HUMANML), round(float(span[1]) * FPS_HUMANML)
            # spans are in the clip's own time: its last joint frame (count) has no feature frame of its own
            if hi > count + 1 or lo >= count:
                raise DataError(f"span {tuple(span)} s reaches frame {hi} of a clip of {count + 1} frames",
                                field=f"{what}.seconds", expected=f"spans within {(count + 1) / FPS_HUMANML:.2f} s")
            rows[lo:min(hi, count)] = True
        return rows
    items = frames if isinstance(frames, Iterable) and not isinstance(frames, slice) else [frames]
    array = np.asarray(frames) if not isinstance(frames, slice) else None
    if array is not None and array.dtype == np.bool_:
        if array.shape != (count,):
            raise DataError(f"bool mask of shape {array.shape}", field=f"{what}.frames", expected=f"shape ({count},)")
        return array.copy()
    for item in items:
        if isinstance(item, slice):
            rows[item] = True
            continue
        index = int(item)
        if not 0 <= index < count:
            raise DataError(f"frame {index}", field=f"{what}.frames", expected=f"0 <= frame < {count}")
        rows[index] = True
    return rows


def keyframes(motion: Any, frames: Any = None, *, seconds: Any = None, at: int = 0,
              fps: float | None = None) -> DanceConstraint:
    """Keep frames of `motion` (all, ints/slices/bool mask, or (start_s, end_s) spans); motion frame 0 at dance frame `at`."""
    features, joints = _motion_features(motion, fps, "keyframes")
    rows = _frame_rows(features.shape[0], frames, seconds, "keyframes")
    if not rows.any():
        raise DataError("no frame selected", field="keyframes", expected="at least one known frame")
    mask = np.repeat(rows[:, None], FEATURE_DIM, axis=1)
    joint_mask = None if joints is None else np.repeat(rows[:, None], NUM_T2M_JOINTS, axis=1)
    return DanceConstraint(features, mask, _start(at), "keyframes", joints, joint_mask,
                           min_frames=_start(at) + features.shape[0])


def body_parts(motion: Any, keep: str | Sequence[str] = "lower", *, at: int = 0,
               fps: float | None = None) -> DanceConstraint:
    """Keep the joints of `keep` ("lower", "upper" or T2M joint names) over the whole motion, regenerate the rest."""
    names = BODY_PARTS.get(keep) if isinstance(keep, str) else tuple(keep)
    if names is None:
        raise DataError(f"body part {keep!r}", field="keep",
                        expected=f"one of {sorted(BODY_PARTS)} or a list of names from {list(T2M_JOINT_NAMES)}")
    columns = hml_lower_body_mask(names)  # DataError naming unknown joints
    features, joints = _motion_features(motion, fps, "body_parts")
    mask = np.repeat(columns[None, :], features.shape[0], axis=0)
    chosen = np.array([name in names for name in T2M_JOINT_NAMES])
    joint_mask = None if joints is None else np.repeat(chosen[None, :], joints.shape[0], axis=0)
    return DanceConstraint(features, mask, _start(at), f"body_parts:{keep if isinstance(keep, str) else 'joints'}",
                           joints, joint_mask, min_frames=_start(at) + features.shape[0])


def continuation(motion: Any, seconds: float, *, fps: float | None = None) -> DanceConstraint:
    """Keep all of `motion` as the dance's start and ask for `seconds` more."""
    if not float(seconds) > 0:
        raise DataError(f"seconds={seconds}", field="continuation.seconds", expected="a positive duration")
    known = keyframes(motion, fps=fps)
    extra = round(float(seconds) * FPS_HUMANML)
    return DanceConstraint(known.features, known.mask, 0, "continuation", known.joints, known.joint_mask,
                           min_frames=known.end + extra)


def _start(at: int) -> int:
    if int(at) != at or at < 0:
        raise DataError(f"at={at}", field="at", expected="a dance frame >= 0")
    return int(at)
