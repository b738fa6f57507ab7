"""Validation of motion data: every check raises DataError naming the file, record, field and expectation."""

from __future__ import annotations

import math
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.data.clip import MotionClip
from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import NUM_T2M_JOINTS

MIN_FRAMES = 10
# A human figure (any pose, any age) spans roughly 0.3 m to 3 m; outside that the unit is wrong.
BODY_SIZE_RANGE_M = (0.3, 3.0)
# Metres per file unit. "cmu" is the CMU mocap skeleton unit (2.54 / 0.45 / 100, as CMU documents).
UNIT_SCALES: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu": 0.0564444}
_UNIT_WORDS = {"cm": "centimetres", "mm": "millimetres", "inch": "inches", "cmu": "CMU skeleton units"}

PathLike = str | Path | None
Record = int | str | None


def unit_scale(unit: str | float, *, path: PathLike = None) -> float:
    """Metres per file unit for a unit name ('m', 'cm', 'mm', 'inch', 'cmu') or a positive number."""
    if isinstance(unit, Real) and not isinstance(unit, bool):
        if math.isfinite(float(unit)) and float(unit) > 0:
            return float(unit)
    elif isinstance(unit, str) and unit.lower() in UNIT_SCALES:
        return UNIT_SCALES[unit.lower()]
    raise DataError(f"unknown unit {unit!r}", path=path, field="unit",
                    expected=f"one of {sorted(UNIT_SCALES)} or a positive metres-per-unit number")


def positions_from_nested(value: Any, *, path: PathLike, record: Record, field: str = "motion") -> np.ndarray:
    """Nested lists [frames][joints][xyz] (parsed JSON) as a float array; ragged or non-numeric data raise."""
    if not isinstance(value, (list, tuple)):
        raise DataError(f"is a {type(value).__name__}", path=path, record=record, field=field,
                        expected="a list of frames, each a list of [x, y, z] joint positions")
    try:
        array = np.asarray(value)
    except ValueError:
        _raise_ragged(value, path=path, record=record, field=field)
        raise  # unreachable: _raise_ragged always raises
    if array.dtype.kind == "O" and array.ndim < 3:
        _raise_ragged(value, path=path, record=record, field=field)
    # numpy turns true/false mixed with numbers into 1/0 silently, so look for them explicitly.
    if array.dtype.kind not in "iuf" or (array.ndim == 3 and any(
            type(x) is bool for frame in value for joint in frame for x in joint)):
        _raise_non_numeric(value, path=path, record=record, field=field)
    return array.astype(np.float64, copy=False)


def _raise_ragged(value: list, *, path: PathLike, record: Record, field: str) -> None:
    """Find the first frame or joint whose length differs from the rest and raise a DataError about it."""
    first_count = None
    for f, frame in enumerate(value):
        if not isinstance(frame, (list, tuple)):
            raise DataError(f"frame {f} is a {type(frame).__name__}", path=path, record=record, field=field,
                            expected="each frame to be a list of [x, y, z] joint positions")
        if first_count is None:
            first_count = len(frame)
        elif len(frame) != first_count:
            raise DataError(f"ragged frames: frame {f} has {len(frame)} joints but frame 0 has {first_count}",
                            path=path, record=record, field=field, expected="the same joints in every frame")
        for j, joint in enumerate(frame):
            if not isinstance(joint, (list, tuple)) or len(joint) != 3:
                got = f"{len(joint)} values" if isinstance(joint, (list, tuple)) else repr(joint)
                raise DataError(f"frame {f}, joint {j} is {got}", path=path, record=record, field=field,
                                expected="[x, y, z]")
    raise DataError("has an irregular nested shape", path=path, record=record, field=field,
                    expected="[frames][joints][3] nested lists")


def _is_number(item: Any) -> bool:
    return not isinstance(item, bool) and isinstance(item, (Real, np.number))


def _raise_non_numeric(value: Any, *, path: PathLike, record: Record, field: str) -> None:
    """Point at the first value that is not a number (walks nested lists; arrays report their dtype)."""
    if isinstance(value, (list, tuple)):
        for f, frame in enumerate(value):
            for j, joint in enumerate(frame):
                for c, item in enumerate(joint):
                    if not _is_number(item):
                        raise DataError(f"non-numeric value {item!r} at frame {f}, joint {j}, coordinate "
                                        f"{'xyz'[c]}", path=path, record=record, field=field,
                                        expected="numbers (metres)")
    dtype = getattr(value, "dtype", type(value).__name__)
    raise DataError(f"has non-numeric data (dtype {dtype})", path=path, record=record, field=field,
                    expected="numbers (metres)")


def validate_positions(array: np.ndarray, *, path: PathLike, record: Record, field: str = "motion",
                       expected_joints: int | None = NUM_T2M_JOINTS, min_frames: int = MIN_FRAMES) -> np.ndarray:
    """Check rank, joints, frame count and finiteness of positions [frames, joints, 3]; return float32."""
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        _raise_non_numeric(array, path=path, record=record, field=field)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise DataError(f"has shape {tuple(array.shape)} (rank {array.ndim})", path=path, record=record,
                        field=field, expected="[frames, joints, 3] with x, y, z last")
    frames, joints = array.shape[:2]
    if expected_joints is not None and joints != expected_joints:
        raise DataError(f"has {joints} joints", path=path, record=record, field=field,
                        expected=f"{expected_joints} joints in T2M order (kpop_helpers.motion.skeleton."
                                 f"T2M_JOINT_NAMES); map other skeletons first, e.g. read_bvh(..., joint_map=...)")
    if frames < min_frames:
        raise DataError(f"has {frames} frames", path=path, record=record, field=field,
                        expected=f"at least {min_frames} frames (pass min_frames= to accept shorter clips)")
    out = array.astype(np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        f, j, c = (int(v) for v in np.argwhere(~finite)[0])
        raise DataError(f"frame {f}, joint {j}, coordinate {'xyz'[c]} is {array[f, j, c]}", path=path,
                        record=record, field=field, expected="finite numbers (no NaN or inf)")
    return out


def body_size(positions: np.ndarray) -> float:
    """Median over frames of the largest axis extent of the joints: the figure's size in any pose."""
    positions = np.asarray(positions, dtype=np.float64)
    extent = positions.max(axis=1) - positions.min(axis=1)
    return float(np.median(extent.max(axis=-1)))


def check_body_scale(positions: np.ndarray, *, path: PathLike, record: Record, field: str = "motion") -> None:
    """Reject positions whose body size is not human in metres, suggesting the unit they are probably in."""
    size = body_size(positions)
    low, high = BODY_SIZE_RANGE_M
    if low <= size <= high:
        return
    if size > high:
        fits = [f"{_UNIT_WORDS[name]} (unit='{name}' gives {size * scale:.2f} m)"
                for name, scale in UNIT_SCALES.items() if name != "m" and low <= size * scale <= high]
        hint = (f"the values look like {' or '.join(fits)} given as metres" if fits
                else "no common unit makes this human-sized")
    else:
        hint = ("the values are too small for metres (scaled twice, or a tiny figure?)" if size > 0
                else "all joints coincide")
    raise DataError(f"absurd scale: body size {size:.3g} m; {hint}. Pass unit='cm', 'mm', 'inch', 'cmu' or a "
                    f"metres-per-unit number to the loader (unit=...)", path=path, record=record, field=field,
                    expected=f"a body size between {low} and {high} m")


def validate_text(value: Any, *, path: PathLike, record: Record, field: str = "text") -> str:
    """One caption: a non-empty string."""
    if not isinstance(value, str):
        raise DataError(f"is a {type(value).__name__} ({value!r})", path=path, record=record, field=field,
                        expected="a non-empty string caption")
    if not value.strip():
        raise DataError("is empty", path=path, record=record, field=field, expected="a non-empty string caption")
    return value


def validate_texts(value: Any, *, path: PathLike, record: Record, field: str = "texts") -> list[str]:
    """A list of captions, each a non-empty string."""
    if not isinstance(value, (list, tuple)):
        raise DataError(f"is a {type(value).__name__}", path=path, record=record, field=field,
                        expected="a list of non-empty string captions")
    return [validate_text(t, path=path, record=record, field=f"{field}[{i}]") for i, t in enumerate(value)]


def validate_style(value: Any, *, path: PathLike, record: Record, field: str = "style") -> str | None:
    """A style label: a string, or None/'' for no style."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DataError(f"unknown style type {type(value).__name__} ({value!r})", path=path, record=record,
                        field=field, expected="a string such as 'hiphop', or null")
    return value


def validate_fps(value: Any, *, path: PathLike, record: Record, field: str = "fps") -> float:
    """Frames per second: a finite positive number."""
    if isinstance(value, bool) or not isinstance(value, (Real, np.number)) or not math.isfinite(float(value)) \
            or float(value) <= 0:
        raise DataError(f"is {value!r}", path=path, record=record, field=field,
                        expected="a positive number of frames per second")
    return float(value)


def validate_clip(clip: MotionClip, *, path: PathLike = None, record: Record = None,
                  expected_joints: int | None = NUM_T2M_JOINTS, min_frames: int = MIN_FRAMES,
                  check_scale: bool = True, positions_field: str = "motion") -> MotionClip:
    """Check every field of a clip; return it with float32 positions (raises DataError on the first problem)."""
    path = clip.source if path is None else path
    positions = validate_positions(clip.positions, path=path, record=record, field=positions_field,
                                   expected_joints=expected_joints, min_frames=min_frames)
    if check_scale:
        check_body_scale(positions, path=path, record=record, field=positions_field)
    fps = validate_fps(clip.fps, path=path, record=record)
    texts = validate_texts(list(clip.texts), path=path, record=record)
    style = validate_style(clip.style, path=path, record=record)
    names = clip.joint_names
    if names is not None and len(names) != positions.shape[1]:
        raise DataError(f"has {len(names)} names for {positions.shape[1]} joints", path=path, record=record,
                        field="joint_names", expected="one name per joint")
    return MotionClip(positions=positions, fps=fps, texts=texts, style=style,
                      source=None if path is None else str(path), joint_names=names, rig=clip.rig)
