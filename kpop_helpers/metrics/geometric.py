"""AIST++/Bailando geometric ("manual") features (32-d): fractions of frames passing boolean pose tests.

Matches `extract_manual_features` of lisiyao21/Bailando `utils/features/manual_new.py` (= google/aistplusplus_api
`manual.py`) in `mode="compat"`; `mode="corrected"` fixes quirks G1-G3 (see docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpop_helpers.metrics.kinetic import REFERENCE_FPS, Mode, check_joints, check_mode, check_reference_fps

# Bailando/AIST++ names of the SMPL-24 joints, in SMPL order.
BAILANDO_JOINT_NAMES: tuple[str, ...] = (
    "root", "lhip", "rhip", "belly", "lknee", "rknee", "spine", "lankle", "rankle", "chest", "ltoes", "rtoes",
    "neck", "linshoulder", "rinshoulder", "head", "lshoulder", "rshoulder", "lelbow", "relbow", "lwrist",
    "rwrist", "lhand", "rhand",
)
_JOINT = {name: i for i, name in enumerate(BAILANDO_JOINT_NAMES)}

# G1: the reference measures its length units on fixed template points, not on the dancer.
_TEMPLATE_LSHOULDER = np.array([1.99113488e-01, 2.36807942e-01, -1.80702247e-02])
_TEMPLATE_LELBOW = np.array([4.54445392e-01, 2.21158922e-01, -4.10167128e-02])
_TEMPLATE_RSHOULDER = np.array([-1.91692337e-01, 2.36928746e-01, -1.23055102e-02])
_TEMPLATE_LHIP = np.array([5.64076714e-02, -3.23069185e-01, 1.09197125e-02])
_TEMPLATE_RHIP = np.array([-6.24834076e-02, -3.31302464e-01, 1.50412619e-02])
TEMPLATE_HUMERUS = float(np.linalg.norm(_TEMPLATE_LSHOULDER - _TEMPLATE_LELBOW))
TEMPLATE_SHOULDER_WIDTH = float(np.linalg.norm(_TEMPLATE_LSHOULDER - _TEMPLATE_RSHOULDER))
TEMPLATE_HIP_WIDTH = float(np.linalg.norm(_TEMPLATE_LHIP - _TEMPLATE_RHIP))

# G2: velocity tests divide by 1/120 s although the data is 60 fps.
COMPAT_TIME_PER_FRAME = 1.0 / 120.0

# The 32 tests in output order: (primitive, joint names, threshold as (unit, factor) or angle range).
FEATURE_SPECS: tuple[tuple[str, tuple[str, ...], tuple], ...] = (
    ("nmove", ("neck", "rhip", "lhip", "rwrist"), ("hl", 1.8)),
    ("nmove", ("neck", "lhip", "rhip", "lwrist"), ("hl", 1.8)),
    ("nplane", ("chest", "neck", "neck", "rwrist"), ("hl", 0.2)),
    ("nplane", ("chest", "neck", "neck", "lwrist"), ("hl", 0.2)),
    ("move", ("belly", "chest", "chest", "rwrist"), ("hl", 1.8)),
    ("move", ("belly", "chest", "chest", "lwrist"), ("hl", 1.8)),
    ("angle", ("relbow", "rshoulder", "relbow", "rwrist"), (0, 110)),
    ("angle", ("lelbow", "lshoulder", "lelbow", "lwrist"), (0, 110)),
    ("nplane", ("lshoulder", "rshoulder", "lwrist", "rwrist"), ("sw", 2.5)),
    ("move", ("lwrist", "rwrist", "rwrist", "lwrist"), ("hl", 1.4)),
    ("move", ("rwrist", "root", "lwrist", "root"), ("hl", 1.4)),
    ("move", ("lwrist", "root", "rwrist", "root"), ("hl", 1.4)),
    ("fast", ("rwrist",), ("hl", 2.5)),
    ("fast", ("lwrist",), ("hl", 2.5)),
    ("plane", ("root", "lhip", "ltoes", "rankle"), ("hl", 0.38)),
    ("plane", ("root", "rhip", "rtoes", "lankle"), ("hl", 0.38)),
    ("nplane", ("zero", "y_unit", "y_min", "rankle"), ("hl", 1.2)),
    ("nplane", ("zero", "y_unit", "y_min", "lankle"), ("hl", 1.2)),
    ("nplane", ("lhip", "rhip", "lankle", "rankle"), ("hw", 2.1)),
    ("angle", ("rknee", "rhip", "rknee", "rankle"), (0, 110)),
    ("angle", ("lknee", "lhip", "lknee", "lankle"), (0, 110)),
    ("fast", ("rankle",), ("hl", 2.5)),
    ("fast", ("lankle",), ("hl", 2.5)),
    ("angle", ("neck", "root", "rshoulder", "relbow"), (25, 180)),
    ("angle", ("neck", "root", "lshoulder", "lelbow"), (25, 180)),
    ("angle", ("neck", "root", "rhip", "rknee"), (50, 180)),
    ("angle", ("neck", "root", "lhip", "lknee"), (50, 180)),
    ("plane", ("rankle", "neck", "lankle", "root"), ("hl", 0.5)),
    ("angle", ("neck", "root", "zero", "y_unit"), (70, 110)),
    ("nplane", ("zero", "minus_y_unit", "y_min", "rwrist"), ("hl", -1.2)),
    ("nplane", ("zero", "minus_y_unit", "y_min", "lwrist"), ("hl", -1.2)),
    ("fast", ("root",), ("hl", 2.3)),
)
GEOMETRIC_DIM = len(FEATURE_SPECS)


@dataclass(frozen=True)
class BodyUnits:
    """Length units of the threshold table: humerus length, shoulder width, hip width (metres)."""

    hl: float = TEMPLATE_HUMERUS
    sw: float = TEMPLATE_SHOULDER_WIDTH
    hw: float = TEMPLATE_HIP_WIDTH


def measure_body_units(joints: np.ndarray) -> BodyUnits:
    """Corrected G1: mean left/right shoulder->elbow length, shoulder and hip widths measured on the motion."""
    def mean_dist(a: str, b: str) -> float:
        return float(np.mean(np.linalg.norm(joints[:, _JOINT[a]] - joints[:, _JOINT[b]], axis=-1)))

    humerus = 0.5 * (mean_dist("lshoulder", "lelbow") + mean_dist("rshoulder", "relbow"))
    return BodyUnits(hl=humerus, sw=mean_dist("lshoulder", "rshoulder"), hw=mean_dist("lhip", "rhip"))


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1)


class _Frames:
    """Positions of named joints and special points at frames 1..T-1 (`cur`) and 0..T-2 (`prev`)."""

    def __init__(self, joints: np.ndarray):
        self.cur_all = joints[1:]
        self.prev_all = joints[:-1]
        n = self.cur_all.shape[0]
        y_min = np.zeros((n, 3))
        y_min[:, 1] = self.cur_all[:, :, 1].min(axis=1)  # G4: the lowest joint of the frame is the "floor"
        self.special = {
            "zero": np.zeros((n, 3)),
            "y_unit": np.tile([0.0, 1.0, 0.0], (n, 1)),
            "minus_y_unit": np.tile([0.0, -1.0, 0.0], (n, 1)),
            "y_min": y_min,
        }

    def cur(self, name: str) -> np.ndarray:
        return self.special[name] if name in self.special else self.cur_all[:, _JOINT[name]]

    def prev(self, name: str) -> np.ndarray:
        return self.prev_all[:, _JOINT[name]]


def _evaluate(kind: str, names: tuple[str, ...], threshold, fr: _Frames, time_per_frame: float,
              mode: str) -> np.ndarray:
    """Boolean per frame [T-1] for one primitive test (formulas of the reference's utils.py)."""
    if kind == "plane":
        a, b, c, p = (fr.cur(n) for n in names)
        normal = np.cross(c - a, b - a)
        return _dot(normal, p - a) / np.linalg.norm(normal, axis=-1) > threshold
    if kind == "nplane":
        n1, n2, a, p = (fr.cur(n) for n in names)
        normal = n2 - n1
        return _dot(normal, p - a) / np.linalg.norm(normal, axis=-1) > threshold
    if kind == "angle":
        j1, j2, k1, k2 = (fr.cur(n) for n in names)
        u, v = j2 - j1, k2 - k1
        with np.errstate(invalid="ignore", divide="ignore"):
            # G4: the cosine is not clipped; NaN compares false like in the reference.
            angle = np.degrees(np.arccos(_dot(u, v) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))))
        lo, hi = threshold
        return (angle > lo) & (angle < hi)
    if kind == "move":
        j1, j2, j3, j4 = names
        # G3: the reference moves j3 relative to j1 and ignores j4; corrected moves j4 relative to j3.
        moving, anchor = (j3, j1) if mode == "compat" else (j4, j3)
        velocity = (fr.cur(moving) - fr.cur(anchor)) - (fr.prev(moving) - fr.prev(anchor))
        direction = fr.cur(j2) - fr.cur(j1)
        along = _dot(velocity, direction) / np.linalg.norm(direction, axis=-1)
        return along / time_per_frame > threshold
    if kind == "nmove":
        j1, j2, j3, j4 = names
        velocity = (fr.cur(j4) - fr.cur(j1)) - (fr.prev(j4) - fr.prev(j1))
        direction = np.cross(fr.cur(j3) - fr.cur(j1), fr.cur(j2) - fr.cur(j1))
        along = _dot(velocity, direction) / np.linalg.norm(direction, axis=-1)
        return along / time_per_frame > threshold
    if kind == "fast":
        (j,) = names
        return np.linalg.norm(fr.cur(j) - fr.prev(j), axis=-1) / time_per_frame > threshold
    raise AssertionError(f"unknown primitive {kind}")


def geometric_feature_frames(joints: np.ndarray, *, mode: Mode = "compat", fps: float = REFERENCE_FPS,
                             units: BodyUnits | None = None) -> np.ndarray:
    """Per-frame booleans [T-1, 32] of the 32 tests (frames 1..T-1) for SMPL-24 joints [T, 24, 3], y up."""
    check_mode(mode)
    check_reference_fps(fps, mode, "geometric features")
    positions = check_joints(joints, min_frames=2, num_joints=len(BAILANDO_JOINT_NAMES))
    if units is None:
        units = BodyUnits() if mode == "compat" else measure_body_units(positions)
    time_per_frame = COMPAT_TIME_PER_FRAME if mode == "compat" else 1.0 / float(fps)
    frames = _Frames(positions)
    columns = []
    for kind, names, spec in FEATURE_SPECS:
        threshold = spec if kind == "angle" else getattr(units, spec[0]) * spec[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            columns.append(_evaluate(kind, names, threshold, frames, time_per_frame, mode))
    return np.stack(columns, axis=1)


def extract_geometric_features(joints: np.ndarray, *, mode: Mode = "compat", fps: float = REFERENCE_FPS,
                               units: BodyUnits | None = None) -> np.ndarray:
    """32-d geometric features (fraction of frames 1..T-1 where each test holds), float32.

    compat: template length units (G1), tau = 1/120 s (G2), `move` ignores its 4th joint (G3); fps must be 60.
    corrected: units measured on the motion (or `units`), tau = 1/fps, `move` = 4th joint relative to the 3rd.
    """
    booleans = geometric_feature_frames(joints, mode=mode, fps=fps, units=units)
    # The reference averages a float32 array of booleans; same here for bit-identical fractions.
    return booleans.astype(np.float32).mean(axis=0)
