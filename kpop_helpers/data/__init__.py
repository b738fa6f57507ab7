"""Motion data: the clip type, loaders and savers (JSON, NPZ, BVH), validation and the sample set."""

from kpop_helpers.data.bvh import BvhData, BvhSkeleton, parse_bvh, read_bvh, write_bvh
from kpop_helpers.data.clip import DataError, MotionClip
from kpop_helpers.data.io import LoadReport, SkippedItem, load_clips, load_json, load_npz, save_json, save_npz
from kpop_helpers.data.rigs import RIGS, Lerp, RigMap
from kpop_helpers.data.validate import MIN_FRAMES, validate_clip

__all__ = [
    "MIN_FRAMES",
    "RIGS",
    "BvhData",
    "BvhSkeleton",
    "DataError",
    "Lerp",
    "LoadReport",
    "MotionClip",
    "RigMap",
    "SkippedItem",
    "load_clips",
    "load_json",
    "load_npz",
    "parse_bvh",
    "read_bvh",
    "save_json",
    "save_npz",
    "validate_clip",
    "write_bvh",
]
