"""Motion data: the clip type, loaders and savers (JSON, NPZ, BVH), validation and the sample set.

Only the clip type is imported eagerly; the loaders load on first use, so the torch-free edge runtime
(which needs DataError) stays light.
"""

from importlib import import_module

from kpop_helpers.data.clip import DataError, MotionClip

_LAZY = {
    "BvhData": "bvh", "BvhSkeleton": "bvh", "parse_bvh": "bvh", "read_bvh": "bvh", "write_bvh": "bvh",
    "LoadReport": "io", "SkippedItem": "io", "load_clips": "io", "load_json": "io", "load_npz": "io",
    "save_json": "io", "save_npz": "io", "RIGS": "rigs", "Lerp": "rigs", "RigMap": "rigs",
    "MIN_FRAMES": "validate", "validate_clip": "validate", "DataWarning": "report",
    "infer_joint_map": "rig_names", "label_bone": "rig_names", "read_sidecar": "captions", "read_index": "captions",
    "generate_sample_clips": "sample", "build_sample_dataset": "sample",
}

__all__ = sorted(["DataError", "MotionClip", *_LAZY])


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"kpop_helpers.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'kpop_helpers.data' has no attribute {name!r}")
