"""A song's sections as a timeline of prompts: one prompt per section, from a mapping, a list or a style.

With no prompts given, every section gets the style prompt with an intensity word picked from the
section's loudness relative to the song's other sections (quietest quarter "gentle", then "smooth",
"energetic", "powerful"), so a chorus that is louder than its verse is danced bigger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kpop_helpers.editing.timeline import Timeline
from kpop_helpers.errors import DataError

DEFAULT_STYLE = "k-pop dance with sharp hits on the beat"
INTENSITY_WORDS = ("a gentle", "a smooth", "an energetic", "a powerful")


def intensity_words(loudness_db: Sequence[float]) -> list[str]:
    """An intensity word per section by its loudness rank among the song's sections (quartiles)."""
    levels = np.asarray(loudness_db, dtype=np.float64)
    if levels.size == 0:
        return []
    if np.ptp(levels) < 1.0:  # sections within 1 dB: one level, the middle word
        return [INTENSITY_WORDS[2]] * levels.size
    ranks = levels.argsort().argsort() / max(1, levels.size - 1)  # 0 = quietest, 1 = loudest
    return [INTENSITY_WORDS[min(len(INTENSITY_WORDS) - 1, int(r * len(INTENSITY_WORDS)))] for r in ranks]


def song_timeline(analysis: Any, prompts: Mapping[str, str] | Sequence[str] | str | None = None, *,
                  style: str = DEFAULT_STYLE, seconds: float | None = None) -> Timeline:
    """Timeline over the song (0 to its end, or `seconds`): each section follows its prompt.

    prompts: {"A": ..., "B": ...} by section label (labels not in it get the style prompt), a list with one
    prompt per section, one prompt for the whole song, or None (the style with an intensity word each).
    """
    sections = list(analysis.sections)
    end = float(analysis.duration_s if seconds is None else seconds)
    if not sections:
        sections_spans = [(0.0, end, "A", 0.0)]
    else:
        sections_spans = [(float(s.start_s), float(s.end_s), str(s.label), float(s.loudness_db)) for s in sections]
    words = intensity_words([level for *_, level in sections_spans])
    styled = [f"{word} {style}" for word in words]
    if prompts is None:
        chosen = styled
    elif isinstance(prompts, str):
        chosen = [prompts] * len(sections_spans)
    elif isinstance(prompts, Mapping):
        unknown = sorted(set(prompts) - {label for _, _, label, _ in sections_spans})
        if unknown:
            raise DataError(f"labels {unknown} are not sections of this song", field="prompts",
                            expected=f"labels among {sorted({label for _, _, label, _ in sections_spans})}")
        chosen = [prompts.get(label, styled[i]) for i, (_, _, label, _) in enumerate(sections_spans)]
    else:
        chosen = list(prompts)
        if len(chosen) != len(sections_spans):
            raise DataError(f"{len(chosen)} prompts for {len(sections_spans)} sections", field="prompts",
                            expected="one prompt per section (or a {label: prompt} mapping)")
    entries = []
    for i, (start, stop, _, _) in enumerate(sections_spans):
        start = 0.0 if i == 0 else start  # the intro before the first downbeat dances with the first section
        stop = end if i == len(sections_spans) - 1 else min(stop, end)
        if start < stop:
            entries.append((start, stop, chosen[i]))
    return Timeline.parse(entries)
