"""Edit and extend: what to keep (keyframes, body parts, a clip to continue), timelines and dances of any length.

The user's side of the sampling core's constraints and windows, shared by `generate` and `EdgeGenerator`
(numpy only, no torch).
"""

from kpop_helpers.editing.constraints import BODY_PARTS, DanceConstraint, body_parts, continuation, keyframes
from kpop_helpers.editing.placement import place_on
from kpop_helpers.editing.plan import (DEFAULT_BLEND, DEFAULT_MAX_WINDOWS, DEFAULT_OVERLAP, DancePlan,
                                      plan_dance)
from kpop_helpers.editing.timeline import Timeline, TimelineEntry

__all__ = [
    "BODY_PARTS", "DEFAULT_BLEND", "DEFAULT_MAX_WINDOWS", "DEFAULT_OVERLAP", "DanceConstraint", "DancePlan", "Timeline", "TimelineEntry",
    "body_parts", "continuation", "keyframes", "place_on", "plan_dance",
]
# Beat alignment needs the metrics: loaded on first use, so the edge runtime's import stays light.
_BEATS = ("AlignedDance", "TimeWarp", "align_to_beats", "beat_alignment_score", "motion_beat_times", "time_warp")
__all__ += list(_BEATS)


def __getattr__(name: str):
    """The beat-alignment names, imported from `editing.beats` when first asked for."""
    if name in _BEATS:
        from kpop_helpers.editing import beats

        return getattr(beats, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
