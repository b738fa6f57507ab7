"""What a load did: the LoadReport (files, clips, what was skipped and why, the rig maps chosen, the clips left
without a caption, the warnings) and the size check that warns when a figure is not person-sized."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.data.clip import MotionClip
from kpop_helpers.data.validate import UNIT_SCALES
from kpop_helpers.errors import DataError

# Highest joint above the lowest, 95th percentile of frames: a T2M person of 1.7 m measures about 1.55 m
# (the T2M head joint is at the base of the skull). Outside this range the unit is probably wrong.
STANDING_HEIGHT_RANGE_M = (1.0, 2.3)
_TYPICAL_STANDING_HEIGHT_M = 1.55
_MIN_PERSON_JOINTS = 15


class DataWarning(UserWarning):
    """Data that loads but is probably not what was meant (unit, captions); load_clips lists these in its report."""


@dataclass
class SkippedItem:
    """A file or record left out by on_error='skip', and why."""

    file: str
    record: int | None
    reason: str


@dataclass
class LoadReport:
    """What load_clips read: files, clip count, every skipped file or record, the BVH name map chosen per file,
    the clips left without a caption and the warnings raised while loading."""

    files: list[str] = field(default_factory=list)
    num_clips: int = 0
    skipped: list[SkippedItem] = field(default_factory=list)
    rigs: dict[str, str] = field(default_factory=dict)
    uncaptioned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A count line, one line per skipped item, then the rig maps, the uncaptioned clips and the warnings."""
        head = f"{self.num_clips} clips from {len(self.files)} files, {len(self.skipped)} skipped"
        rows = [f"  {s.file}" + ("" if s.record is None else f" record {s.record}") + f": {s.reason}"
                for s in self.skipped]
        if self.rigs:
            if len(self.rigs) <= 10:
                maps = [f"{Path(f).name}: {label}" for f, label in self.rigs.items()]
            else:
                maps = [f"{label}: {n} files (e.g. {Path(next(f for f, r in self.rigs.items() if r == label)).name})"
                        for label, n in Counter(self.rigs.values()).most_common()]
            rows.append("BVH rig maps: " + "; ".join(maps))
        if self.uncaptioned:
            rows.append(f"without a caption ({len(self.uncaptioned)} of {self.num_clips} clips): "
                        + ", ".join(self.uncaptioned))
        rows += [f"warning: {w}" for w in self.warnings]
        return "\n".join([head, *rows])

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: files, num_clips, skip (file, record, reason), rigs, uncaptioned, warnings."""
        return {"files": list(self.files), "num_clips": self.num_clips,
                "skip": [asdict(s) for s in self.skipped], "rigs": dict(self.rigs),
                "uncaptioned": list(self.uncaptioned), "warnings": list(self.warnings)}


def standing_height(positions: np.ndarray) -> float:
    """Highest joint above the lowest (y up), 95th percentile of frames: the figure's height when standing."""
    y = np.asarray(positions, dtype=np.float64)[..., 1]
    return float(np.percentile(y.max(axis=1) - y.min(axis=1), 95))


def size_warning(positions: np.ndarray, *, path: object, scale: float, unit: str | float,
                 record: int | None = None) -> str | None:
    """A message when a person's standing height (metres, after the unit) is outside 1.0-2.3 m, else None.

    scale: the metres per file unit that was used; the message names the unit= values that would fit."""
    positions = np.asarray(positions)
    if positions.ndim != 3 or positions.shape[1] < _MIN_PERSON_JOINTS or positions.shape[0] == 0:
        return None
    height = standing_height(positions)
    low, high = STANDING_HEIGHT_RANGE_M
    if low <= height <= high or height <= 0:
        return None
    fits = [f"unit='{name}' (gives {height * s / scale:.2f} m)" for name, s in UNIT_SCALES.items()
            if abs(s - scale) > 1e-12 * s and low <= height * s / scale <= high]
    number = float(f"{scale * _TYPICAL_STANDING_HEIGHT_M / height:.3g}")
    fits.append(f"unit={number:g} metres per file unit (gives {_TYPICAL_STANDING_HEIGHT_M:.2f} m)")
    where = f"{path}" + ("" if record is None else f" record {record}")
    return (f"{where}: standing height {height:.2f} m (highest joint above the lowest) is outside "
            f"{low:.1f}-{high:.1f} m with unit={unit!r} ({scale:g} m per file unit), so the unit is probably wrong; "
            f"pass {' or '.join(fits)}")


def warn_size(positions: np.ndarray, *, path: object, scale: float, unit: str | float,
              record: int | None = None) -> None:
    """Issue size_warning's message, if any, as a DataWarning."""
    message = size_warning(positions, path=path, scale=scale, unit=unit, record=record)
    if message:
        warnings.warn(message, DataWarning, stacklevel=3)


def no_records(path: Path | str, on_error: str, report: LoadReport | None, what: str) -> list[MotionClip]:
    """An empty file is an error ('raise') or a skipped file ('skip'), never zero clips without a word."""
    exc = DataError(f"no records ({what})", path=path, expected="at least one motion")
    if on_error == "raise":
        raise exc
    if report is not None:
        report.skipped.append(SkippedItem(str(path), None, str(exc)))
    return []


def warn_sizes(clips: Sequence[MotionClip], path: Path | str, scale: float, unit: str | float) -> None:
    """One DataWarning per file whose clips are not person-sized (the first such clip's message)."""
    messages = [m for i, c in enumerate(clips)
                if (m := size_warning(c.positions, path=path, scale=scale, unit=unit, record=i if len(clips) > 1
                                      else None))]
    if messages:
        more = f" ({len(messages)} of {len(clips)} clips)" if len(clips) > 1 else ""
        warnings.warn(messages[0] + more, DataWarning, stacklevel=3)
