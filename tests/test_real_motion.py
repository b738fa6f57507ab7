"""Every real mocap BVH listed in ../shared/data/real_motion/manifest.json loads and matches its recorded facts.

Facts come from the manifest (an independent parser's results): frame counts, frame rates, rig
hierarchy, head height above the floor and foot height. Each file is read once per module.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache

import numpy as np
import pytest

from conftest import SHARED, real_motion_dir
from kpop_helpers.data import MotionClip, parse_bvh, read_bvh
from kpop_helpers.data.bvh import BvhData
from kpop_helpers.data.validate import UNIT_SCALES, body_size
from kpop_helpers.motion.skeleton import T2M_JOINT_NAMES

J = {name: i for i, name in enumerate(T2M_JOINT_NAMES)}
HEAD_WORDS, FOOT_WORDS = ("head", "eye"), ("foot", "toe", "ankle")


def _entries() -> list[dict]:
    manifest = SHARED / "data" / "real_motion" / "manifest.json"
    return json.loads(manifest.read_text())["files"] if manifest.is_file() else []


def _entry_id(entry: dict | None) -> str:
    return entry["path"] if entry else "absent"


def _start_frame(entry: dict) -> int:
    """Converters' first frames (T-pose, transition) are not motion when the manifest says so."""
    return 1 if "drop" in entry.get("first_frame", "") else 0


@lru_cache(maxsize=None)
def _load(rel_path: str) -> tuple[BvhData, MotionClip, MotionClip]:
    entry = next(e for e in _entries() if e["path"] == rel_path)
    path = real_motion_dir() / rel_path
    common = dict(unit=entry["length_unit_to_m"], source_fps=entry["fps_true"])
    raw = read_bvh(path, keep_all_joints=True, target_fps=None, **common)
    t2m = read_bvh(path, target_fps=20.0, start_frame=_start_frame(entry), **common)
    return parse_bvh(path), raw, t2m


def _setup(entry: dict | None) -> tuple[dict, BvhData, MotionClip, MotionClip]:
    real_motion_dir()  # skips with a reason when ../shared is absent
    if entry is None:
        pytest.skip("manifest.json lists no files")
    return (entry, *_load(entry["path"]))


def _points(clip: MotionClip, words: tuple[str, ...]) -> np.ndarray:
    names = [i for i, n in enumerate(clip.joint_names) if any(w in n.lower() for w in words)]
    assert names, f"no joint named like {words} in {clip.joint_names}"
    return clip.positions[:, names].astype(np.float64)


PARAMS = pytest.mark.parametrize("entry", _entries() or [None], ids=_entry_id)


@PARAMS
def test_file_and_header_match_manifest(entry):
    entry, data, raw, _ = _setup(entry)
    path = real_motion_dir() / entry["path"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert data.values.shape[0] == entry["frames"]
    assert data.frame_time == pytest.approx(entry["frame_time_header"])
    rig = json.loads((real_motion_dir() / "manifest.json").read_text())["rigs"][entry["rig"]]
    skel = data.skeleton
    assert skel.names == rig["joints"] and len(skel.end_sites) == rig["n_end_sites"]
    assert [skel.names[p] if p >= 0 else None for p in skel.parents] == rig["parents"]
    assert [" ".join(c) for c in skel.channels] == rig["channels"] and skel.num_channels == rig["n_channels"]
    # The true frame rate overrides the header (the salsa files say 120 fps but are 60 fps).
    assert raw.fps == entry["fps_true"] and raw.num_frames == entry["frames"]
    assert raw.duration == pytest.approx(entry["duration_s"], abs=0.01)


@PARAMS
def test_heights_match_independent_forward_kinematics(entry):
    entry, _, raw, _ = _setup(entry)
    start = _start_frame(entry)
    head = _points(raw, HEAD_WORDS)[start:, :, 1].max(axis=1)
    lowest_foot = _points(raw, FOOT_WORDS)[start:, :, 1].min(axis=1)
    head_above_floor = float(np.percentile(head - lowest_foot, 95))
    assert head_above_floor == pytest.approx(entry["check"]["head_above_floor_p95_m"], abs=0.01)
    assert float(np.median(lowest_foot)) == pytest.approx(entry["check"]["foot_floor_height_m"], abs=0.01)
    assert 1.4 <= head_above_floor <= 1.95  # a plausible adult, metres
    assert -0.05 <= float(np.median(lowest_foot)) <= 0.15  # feet near the floor (y = 0)


@PARAMS
def test_t2m_mapping_is_an_upright_person(entry):
    entry, _, _, t2m = _setup(entry)
    start = _start_frame(entry)
    expected_frames = int(np.floor((entry["frames"] - 1 - start) / entry["fps_true"] * 20.0 + 1e-6)) + 1
    assert t2m.positions.shape == (expected_frames, 22, 3) and t2m.fps == 20.0
    assert t2m.joint_names == T2M_JOINT_NAMES
    assert t2m.duration == pytest.approx(entry["duration_s"], abs=0.1)
    y = t2m.positions[..., 1]
    ankles = np.maximum(y[:, J["left_ankle"]], y[:, J["right_ankle"]])
    assert np.mean(y[:, J["pelvis"]] > ankles) > 0.99  # y is up
    assert np.mean(y[:, J["head"]] > y[:, J["pelvis"]]) > 0.99
    assert np.mean(y[:, J["neck"]] > y[:, J["spine3"]]) > 0.99
    # Left is the performer's left: toes point along cross(left_hip - right_hip, up).
    forward = np.cross(t2m.positions[:, J["left_hip"]] - t2m.positions[:, J["right_hip"]], [0.0, 1.0, 0.0])
    for side in ("left", "right"):
        toes = t2m.positions[:, J[f"{side}_foot"]] - t2m.positions[:, J[f"{side}_ankle"]]
        assert np.mean((toes * forward).sum(-1) > 0) > 0.9, side
    legs = np.linalg.norm(t2m.positions[:, J["left_knee"]] - t2m.positions[:, J["left_hip"]], axis=-1)
    assert 0.3 < np.median(legs) < 0.55 and legs.std() < 1e-3  # a rigid thigh at life scale


@PARAMS
def test_auto_unit_is_close_to_the_true_scale(entry):
    entry, _, _, t2m = _setup(entry)
    auto = read_bvh(real_motion_dir() / entry["path"], target_fps=5.0, source_fps=entry["fps_true"],
                    start_frame=_start_frame(entry))
    ratio = body_size(auto.positions) / body_size(t2m.positions)
    # The salsa files are stored at ~0.755 of life size in metres; 'auto' reads them as metres.
    assert 0.7 < ratio < 1.3
    assert any(abs(ratio - s / entry["length_unit_to_m"]) < 0.01 for s in UNIT_SCALES.values())
