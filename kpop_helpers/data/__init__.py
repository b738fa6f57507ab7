"""Motion data: the clip type, loaders and savers (JSON, NPZ, BVH), validation and the sample set."""

from kpop_helpers.data.clip import DataError, MotionClip

__all__ = ["DataError", "MotionClip"]
