"""Motion-quality measures on analytic motions whose answers are known in closed form."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kpop_helpers.data.clip import DataError
from kpop_helpers.motion.quality import (
    bone_length_drift,
    floor_penetration,
    foot_skating_ratio,
    jitter,
    quality_report,
)
from kpop_helpers.motion.skeleton import FOOT_JOINTS, T2M_PARENTS, T2M_TARGET_OFFSETS

FPS = 20.0


def standing_pose() -> np.ndarray:
    """The T2M target skeleton in its axis-aligned rest pose, lowest joint on y = 0: [22, 3]."""
    pos = np.zeros((22, 3))
    for j, p in enumerate(T2M_PARENTS):
        if p >= 0:
            pos[j] = pos[p] + T2M_TARGET_OFFSETS[j]
    pos[:, 1] -= pos[:, 1].min()
    return pos


def still(frames: int) -> np.ndarray:
    return np.repeat(standing_pose()[None], frames, axis=0)


def test_sliding_feet_give_the_share_of_sliding_steps():
    frames, moving = 41, 16
    joints = still(frames)
    # All foot joints (on the floor) slide along x at 1 m/s for the first `moving` steps, then stop.
    x = np.minimum(np.arange(frames), moving) * (1.0 / FPS)
    joints[:, list(FOOT_JOINTS), 0] += x[:, None]
    assert foot_skating_ratio(joints, FPS) == pytest.approx(moving / (frames - 1))


def test_sliding_speed_below_the_threshold_is_not_skating():
    joints = still(30)
    joints[:, list(FOOT_JOINTS), 2] += (np.arange(30) * 0.3 / FPS)[:, None]  # 0.3 m/s
    assert foot_skating_ratio(joints, FPS) == 0.0
    assert foot_skating_ratio(joints, FPS, speed_threshold=0.2) == pytest.approx(1.0)


def test_a_foot_in_the_air_does_not_skate():
    joints = still(30)
    lifted = [7, 10]  # left ankle and toe 10 cm above the other foot, sliding at 2 m/s
    joints[:, lifted, 1] += 0.10
    joints[:, lifted, 0] += (np.arange(30) * 2.0 / FPS)[:, None]
    assert foot_skating_ratio(joints, FPS) == 0.0
    # The same slide with the foot down counts on every step.
    joints[:, lifted, 1] -= 0.10
    assert foot_skating_ratio(joints, FPS) == pytest.approx(1.0)


def test_a_single_fast_step_is_filtered_by_the_window():
    joints = still(30)
    joints[15:, 10, 0] += 0.1  # one 2 m/s jump of the toe: the 5-step mean is 0.4 m/s < 0.5
    assert foot_skating_ratio(joints, FPS) == 0.0
    assert foot_skating_ratio(joints, FPS, window=1) == pytest.approx(1 / 29)


def test_the_floor_defaults_to_the_clip_and_can_be_given():
    joints = still(30)
    joints[..., 1] += 0.3  # the whole clip 30 cm up: relative to its own floor the feet touch it
    joints[:, list(FOOT_JOINTS), 0] += (np.arange(30) * 1.0 / FPS)[:, None]
    assert foot_skating_ratio(joints, FPS) == pytest.approx(1.0)
    assert foot_skating_ratio(joints, FPS, floor_height=0.0) == 0.0


def test_static_and_constant_velocity_motion_have_no_jitter():
    assert jitter(still(20), FPS) == 0.0
    moving = still(20) + (np.arange(20) / FPS * 1.5)[:, None, None]
    assert jitter(moving, FPS) == pytest.approx(0.0, abs=1e-6)


def test_cubic_motion_has_its_exact_jerk():
    t = np.arange(25) / FPS
    joints = still(25)
    joints[..., 0] += 0.7 * t[:, None] ** 3  # x = a t^3: jerk 6a, third differences are exact for cubics
    assert jitter(joints, FPS) == pytest.approx(6 * 0.7, rel=1e-6)


def test_a_stretched_bone_gives_its_relative_std():
    joints = still(40)
    bone = joints[0, 21] - joints[0, 19]  # right forearm; the wrist is a leaf, so nothing else moves
    joints[1::2, 21] += bone  # length alternates L, 2L: std 0.5 L over mean 1.5 L
    assert bone_length_drift(joints) == pytest.approx(1 / 3)
    assert bone_length_drift(still(40)) == 0.0


def test_floor_penetration_is_the_deepest_point():
    joints = still(10)
    assert floor_penetration(joints) == 0.0
    joints[4, 11, 1] = -0.03
    joints[6, 20, 1] = -0.01
    assert floor_penetration(joints) == pytest.approx(0.03)
    assert floor_penetration(joints, floor_height=-0.05) == 0.0


def test_quality_report_bundles_the_four_measures():
    joints = still(12)
    joints[..., 0] += (np.arange(12) / FPS)[:, None]  # the rigid body glides at 1 m/s: feet skate, no jerk
    report = quality_report(joints, FPS)
    assert report == {"foot_skating_ratio": pytest.approx(1.0), "bone_length_drift": pytest.approx(0.0, abs=1e-12),
                      "jitter": pytest.approx(0.0, abs=1e-6), "floor_penetration": 0.0}


@pytest.mark.parametrize("bad, field", [
    (np.zeros((10, 22)), "joints"),
    (np.full((10, 22, 3), np.nan), "joints"),
    (np.zeros((2, 22, 3)), "joints"),
])
def test_bad_input_raises_data_error_naming_the_field(bad, field):
    with pytest.raises(DataError, match=field):
        jitter(bad, FPS)


def test_bad_fps_and_foot_joints_raise_data_error():
    with pytest.raises(DataError, match="fps"):
        foot_skating_ratio(still(10), 0.0)
    with pytest.raises(DataError, match="foot_joints"):
        foot_skating_ratio(still(10), FPS, foot_joints=(30,))
    with pytest.raises(DataError, match="parents"):
        bone_length_drift(still(10), parents=(-1, 0))


def test_quality_does_not_import_torch():
    code = "import sys, kpop_helpers.motion.quality; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
