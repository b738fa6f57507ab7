"""The one clip type every loader returns (the error every loader raises, DataError, lives in kpop_helpers.errors)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kpop_helpers.errors import DataError  # re-exported: its historical home

__all__ = ["DataError", "MotionClip"]


@dataclass
class MotionClip:
    """Joint positions [frames, joints, 3] float32 (y up, metres) with captions and a style label."""

    positions: np.ndarray
    fps: float
    texts: list[str] = field(default_factory=list)
    style: str | None = None
    source: str | None = None
    joint_names: tuple[str, ...] | None = None
    rig: str | None = None  # the BVH name map used ('cmu', 'inferred (interpolated: spine2)'), None otherwise

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.positions.shape[1])

    @property
    def duration(self) -> float:
        return self.num_frames / float(self.fps)

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""
