"""A timeline of prompts: `[(start_s, end_s, prompt), ...]` for one dance whose parts follow their prompts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import FPS_HUMANML


@dataclass(frozen=True)
class TimelineEntry:
    """One part of the dance: from start_s to end_s (seconds) it follows `prompt`."""

    start_s: float
    end_s: float
    prompt: str


@dataclass(frozen=True)
class Timeline:
    """Ordered, non-overlapping entries; a time no entry covers follows the nearest entry."""

    entries: tuple[TimelineEntry, ...]

    @classmethod
    def parse(cls, value: Any, *, path: str | Path | None = None) -> Timeline:
        """A Timeline from entries (tuples or {"start", "end", "prompt"} dicts), a Timeline, or a JSON file."""
        if isinstance(value, Timeline):
            return value
        if isinstance(value, (str, Path)) and Path(value).suffix.lower() == ".json":
            path = Path(value)
            try:
                value = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"cannot read the timeline: {exc}", path=path, field="timeline",
                                expected="a JSON list of {start, end, prompt}") from exc
            value = value.get("timeline", value) if isinstance(value, dict) else value
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise DataError(f"got {type(value).__name__}", path=path, field="timeline",
                            expected="a non-empty list of (start_s, end_s, prompt)")
        entries = [_entry(item, i, path) for i, item in enumerate(value)]
        for i, (a, b) in enumerate(zip(entries, entries[1:], strict=False)):
            if b.start_s < a.start_s:
                raise DataError(f"starts at {b.start_s} s, before entry {i} ({a.start_s} s)", path=path,
                                record=i + 1, field="timeline", expected="entries ordered by start time")
            if b.start_s < a.end_s:
                raise DataError(f"starts at {b.start_s} s while entry {i} runs to {a.end_s} s", path=path,
                                record=i + 1, field="timeline", expected="entries that do not overlap")
        return cls(tuple(entries))

    @property
    def end_s(self) -> float:
        """Where the last entry ends: the dance's length when none is given."""
        return self.entries[-1].end_s

    @property
    def prompts(self) -> list[str]:
        """The entries' prompts, in order (repeats included)."""
        return [entry.prompt for entry in self.entries]

    def entry_at(self, frames: np.ndarray) -> np.ndarray:
        """Index of the entry each frame (20 fps, fractional allowed) follows: its own, or the nearest one."""
        seconds = np.asarray(frames, dtype=np.float64) / FPS_HUMANML
        starts = np.array([e.start_s for e in self.entries])
        ends = np.array([e.end_s for e in self.entries])
        # distance 0 inside an entry, else to its nearer end; ties go to the earlier entry
        distance = np.maximum(starts[None, :] - seconds[:, None], 0) + np.maximum(seconds[:, None] - ends[None, :], 0)
        return np.argmin(distance, axis=1)

    def boundaries(self) -> list[int]:
        """Dance frames where the prompt changes (between neighbouring entries with different prompts)."""
        out = []
        for a, b in zip(self.entries, self.entries[1:], strict=False):
            if a.prompt != b.prompt:
                out.append(round((a.end_s + b.start_s) / 2 * FPS_HUMANML))
        return out

    def labels(self) -> list[tuple[int, int, str]]:
        """(start_frame, end_frame, prompt) of every entry (for drawings)."""
        return [(round(e.start_s * FPS_HUMANML), round(e.end_s * FPS_HUMANML), e.prompt) for e in self.entries]


def _entry(item: Any, index: int, path: str | Path | None) -> TimelineEntry:
    if isinstance(item, dict):
        missing = [key for key in ("start", "end", "prompt") if key not in item]
        if missing:
            raise DataError(f"missing {missing}", path=path, record=index, field="timeline",
                            expected="{start, end, prompt}")
        start, end, prompt = item["start"], item["end"], item["prompt"]
    elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3:
        start, end, prompt = item
    else:
        raise DataError(f"got {item!r}", path=path, record=index, field="timeline",
                        expected="(start_s, end_s, prompt)")
    try:
        start, end = float(start), float(end)
    except (TypeError, ValueError) as exc:
        raise DataError(f"times {start!r}, {end!r}", path=path, record=index, field="timeline",
                        expected="numbers of seconds") from exc
    if not (np.isfinite(start) and np.isfinite(end) and 0 <= start < end):
        raise DataError(f"from {start} s to {end} s", path=path, record=index, field="timeline",
                        expected="0 <= start_s < end_s")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"prompt {prompt!r}", path=path, record=index, field="timeline",
                        expected="a non-empty text prompt")
    return TimelineEntry(start, end, prompt.strip())
