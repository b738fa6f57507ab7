"""The one clip type every loader returns, and the error every loader raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DataError(ValueError):
    """Bad input data: the message names the file, the record and the field, and what was expected."""

    def __init__(self, message: str, *, path: str | Path | None = None, record: int | str | None = None,
                 field: str | None = None, expected: str | None = None):
        parts = []
        if path is not None:
            parts.append(f"{path}")
        if record is not None:
            parts.append(f"record {record}")
        if field is not None:
            parts.append(f"field '{field}'")
        where = ": ".join([", ".join(parts)]) if parts else ""
        text = f"{where}: {message}" if where else message
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)
        self.path = None if path is None else str(path)
        self.record = record
        self.field = field
        self.expected = expected


@dataclass
class MotionClip:
    """Joint positions [frames, joints, 3] float32 (y up, metres) with captions and a style label."""

    positions: np.ndarray
    fps: float
    texts: list[str] = field(default_factory=list)
    style: str | None = None
    source: str | None = None
    joint_names: tuple[str, ...] | None = None

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
