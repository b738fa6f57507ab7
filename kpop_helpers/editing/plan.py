"""One plan for a dance, shared by `generate` (PyTorch) and `EdgeGenerator` (numpy + ONNX Runtime).

`plan_dance` turns what the user asked for (prompts or a timeline, a length, constraints) into what the
sampling core needs: the number of frames, the windows of a long dance, one text row per window, and the
known values in the model's normalised space. `DancePlan.finish` recovers joints once for the whole dance
(so the root path is continuous across windows) and puts the dance where the user's clip was.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kpop_helpers.editing.constraints import DanceConstraint
from kpop_helpers.editing.placement import place_on
from kpop_helpers.editing.timeline import Timeline
from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_DIM, features_to_joints
from kpop_helpers.motion.skeleton import FPS_HUMANML
from kpop_helpers.sampling import Constraint, WindowPlan

# Frames (2 s) shared by neighbouring windows, averaged: benchmarks/results/editing.md measured every overlap and
# blend; "mean" at 40 has a seam jerk ratio within 6 % of the lowest (taper at 20) and the smallest root and facing
# steps at seams (1.9x the 99th percentile elsewhere, against 4.5x and 21x for taper at 20) and seam foot skating
# equal to elsewhere.
DEFAULT_OVERLAP = 40
DEFAULT_BLEND = "mean"
# Windows per model call in a long dance: the result is the same for any value; measured on 3600 frames (int8,
# 2 threads) one window per call is as fast as four (24.9 s vs 24.5 s) and peaks at 221 MiB instead of 300.
DEFAULT_MAX_WINDOWS = 1
MAX_SECONDS = 600.0


@dataclass
class DancePlan:
    """Frames, windows, text rows and known values of one generation (B dances of `frames` frames)."""

    frames: int
    prompts: list[str]  # the distinct prompts to encode
    rows: np.ndarray  # [B, W] index into `prompts` for every window of every dance
    windows: WindowPlan | None  # None: the dance fits the model in one piece
    constraints: tuple[DanceConstraint, ...] = ()
    timeline: Timeline | None = None
    _known: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)

    @property
    def batch(self) -> int:
        """Number of dances."""
        return int(self.rows.shape[0])

    def text_rows(self, embeddings: Any) -> Any:
        """One embedding row per window ([B*W, D], dance-major) from the prompts' embeddings [P, D]."""
        index = self.rows.reshape(-1)
        return embeddings[index] if self.windows is not None else embeddings[self.rows[:, 0]]

    def known(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mask, features) [frames, 263] of all constraints together (de-normalised), or None."""
        if not self.constraints:
            return None
        if self._known is None:
            mask = np.zeros((self.frames, FEATURE_DIM), dtype=bool)
            values = np.zeros((self.frames, FEATURE_DIM), dtype=np.float32)
            for i, item in enumerate(self.constraints):
                rows = min(item.end, self.frames) - item.start  # frames past the dance are never known ones
                span, given, known = slice(item.start, item.start + rows), item.features[:rows], item.mask[:rows]
                both = mask[span] & known
                if both.any() and not np.allclose(values[span][both], given[both], atol=1e-5):
                    raise DataError(f"constraint {i} gives other values for frames another constraint keeps",
                                    field="constraints", expected="constraints that agree where they overlap")
                values[span] = np.where(known, given, values[span])
                mask[span] |= known
            self._known = (mask, values)
        return self._known

    def core_constraint(self, mean: np.ndarray, std: np.ndarray) -> Constraint | None:
        """The known values in the model's normalised space, for the sampling core ([frames, 263] layout)."""
        known = self.known()
        if known is None:
            return None
        mask, values = known
        normalised = ((values - mean) / std).astype(np.float32)
        return Constraint(mask, np.where(mask, normalised, 0.0).astype(np.float32))

    def known_frames(self) -> np.ndarray:
        """Bool [frames]: frames with at least one known feature."""
        known = self.known()
        return np.zeros(self.frames, dtype=bool) if known is None else known[0].any(axis=1)

    def seams(self) -> list[tuple[int, int]]:
        """Frame spans shared by neighbouring windows (empty for a dance of one window)."""
        return [] if self.windows is None else self.windows.seams()

    def finish(self, features: np.ndarray) -> np.ndarray:
        """Joints [B,T,22,3] of de-normalised features [B,T,263], recovered once and placed on the user's clip."""
        joints = np.asarray(features_to_joints(np.asarray(features, dtype=np.float32)), dtype=np.float32)
        anchors = [c for c in self.constraints if c.joints is not None and c.joint_mask is not None]
        if anchors:
            joints = np.stack([place_on(dance, anchors) for dance in joints])
        return joints


def plan_dance(prompts: Sequence[str] | str | None = None, *, max_frames: int, timeline: Any = None,
               frames: int | None = None, seconds: float | None = None,
               constraints: DanceConstraint | Sequence[DanceConstraint] | None = None,
               default_frames: int | None = None, overlap: int | None = None, blend: str | None = None) -> DancePlan:
    """The plan of one call of `generate`/`EdgeGenerator.generate`: checks every argument, DataError otherwise."""
    items = _constraints(constraints)
    parsed = Timeline.parse(timeline) if timeline is not None else None
    if parsed is not None and prompts is not None:
        raise DataError("both prompts and a timeline given", field="timeline",
                        expected="prompts, or a timeline whose entries carry the prompts")
    if parsed is None:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts or [])
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise DataError(f"prompts {prompts!r}", field="prompts", expected="a non-empty list of strings")
    total = _frame_count(frames, seconds, parsed, items, default_frames)
    for i, item in enumerate(items):
        if item.last_known > total:
            raise DataError(f"constraint {i} ({item.kind}) keeps frames up to {item.last_known - 1} of a dance "
                            f"of {total} frames ({total / FPS_HUMANML:.2f} s)", field="constraints",
                            expected="constraints within the dance (give more seconds, or a shorter clip)")
    window = min(int(max_frames), total)
    overlap = min(DEFAULT_OVERLAP, window // 4) if overlap is None else int(overlap)  # short models: a quarter
    windows = None
    if total > window:
        windows = WindowPlan.cover(total, window, min(overlap, window - 1), blend or DEFAULT_BLEND)
    count = 1 if windows is None else windows.count
    if parsed is None:
        rows = np.repeat(np.arange(len(prompts))[:, None], count, axis=1)
        return DancePlan(total, list(prompts), rows, windows, items, None)
    centres = windows.centres() if windows is not None else np.array([(total - 1) / 2])
    entry = parsed.entry_at(centres)
    distinct = list(dict.fromkeys(parsed.prompts))
    rows = np.array([[distinct.index(parsed.entries[e].prompt) for e in entry]])
    unused = [p for p in distinct if distinct.index(p) not in set(rows[0].tolist())]
    if unused:
        warnings.warn(f"timeline prompts {unused} are shorter than any window's middle and are not followed; "
                      f"make their entries longer than {window / FPS_HUMANML / 2:.1f} s", stacklevel=3)
    return DancePlan(total, distinct, rows, windows, items, parsed)


def _constraints(value: Any) -> tuple[DanceConstraint, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, DanceConstraint) else tuple(value)
    for i, item in enumerate(items):
        if not isinstance(item, DanceConstraint):
            raise DataError(f"item {i} is a {type(item).__name__}", field="constraints",
                            expected="DanceConstraint(s) from kpop_helpers.editing (keyframes, body_parts, "
                                     "continuation)")
    return items


def _frame_count(frames: int | None, seconds: float | None, timeline: Timeline | None,
                 constraints: tuple[DanceConstraint, ...], default_frames: int | None) -> int:
    if frames is not None and seconds is not None:
        raise DataError(f"frames={frames} and seconds={seconds}", field="seconds", expected="one of them")
    if seconds is not None:
        if not 0 < float(seconds) <= MAX_SECONDS:
            raise DataError(f"seconds={seconds}", field="seconds", expected=f"0 < seconds <= {MAX_SECONDS:g}")
        frames = round(float(seconds) * FPS_HUMANML)
    elif frames is None and timeline is not None:
        frames = round(timeline.end_s * FPS_HUMANML)
    elif frames is None and constraints:
        frames = max(c.min_frames for c in constraints)
    elif frames is None:
        frames = default_frames
    if frames is None or int(frames) != frames or not 1 <= int(frames) <= MAX_SECONDS * FPS_HUMANML:
        raise DataError(f"frames={frames}", field="frames",
                        expected=f"1 <= frames <= {int(MAX_SECONDS * FPS_HUMANML)} (20 fps)")
    return int(frames)
