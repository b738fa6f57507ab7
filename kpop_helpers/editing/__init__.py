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
