"""Putting a dance on the beat: the feature time warp, beat matching, its bounds and its bad inputs."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from kpop_helpers.data.sample import generate_sample_clips
from kpop_helpers.editing import align_to_beats, beat_alignment_score, motion_beat_times, time_warp
from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_SLICES, features_to_joints, joints_to_features
from tests.conftest import REPO_ROOT

FPS = 20.0
PERIOD = 0.5  # the constructed dance's accents: 120 BPM


@pytest.fixture(scope="module")
def dance() -> np.ndarray:
    """Features of a plausible dance (the synthetic sample set's first clip: it travels and turns)."""
    return joints_to_features(generate_sample_clips(1, seed=0)[0].positions)


def bounce(seconds: float = 8.0, first: float = 0.25, period: float = PERIOD) -> np.ndarray:
    """Features of a dance whose only accents are stops at first + k * period: a bounce while drifting forward."""
    pose = generate_sample_clips(1, seed=0)[0].positions[0].astype(np.float64)
    t = np.arange(int(seconds * FPS) + 1) / FPS
    joints = np.repeat(pose[None], len(t), axis=0)
    joints[..., 1] += (0.06 * (1.0 - np.cos(np.pi * (t - first) / period)))[:, None]  # speed |sin|: 0 at accents
    joints[..., 2] += (0.2 * t)[:, None]
    return joints_to_features(joints)


def circle(seconds: float = 8.0) -> np.ndarray:
    """Features of a dance that walks a 1 m circle while turning 1.5 rad/s (the heading matters) and bobbing."""
    pose = generate_sample_clips(1, seed=0)[0].positions[0].astype(np.float64)
    pose = pose - pose[0] * np.array([1.0, 0.0, 1.0])
    t = np.arange(int(seconds * FPS) + 1) / FPS
    a = 1.5 * t
    turn = np.stack([np.stack([np.cos(a), 0 * a, np.sin(a)], -1), np.stack([0 * a, 1 + 0 * a, 0 * a], -1),
                     np.stack([-np.sin(a), 0 * a, np.cos(a)], -1)], 1)  # [T, 3, 3] about y
    centre = np.stack([np.sin(a), 0.05 * np.sin(8 * t), np.cos(a)], -1)
    return joints_to_features(np.einsum("tij,kj->tki", turn, pose) + centre[:, None])


def at_times(joints: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Joints [T,22,3] at fractional frames, by the cubic spline `time_warp` interpolates poses with."""
    return CubicSpline(np.arange(len(joints)), joints.astype(np.float64), axis=0)(np.clip(frames, 0, len(joints) - 1))


def test_identity_warp_returns_the_features(dance):
    d = len(dance) / FPS
    assert np.array_equal(time_warp(dance, [0.0, d], [0.0, d]), dance)
    knots = np.linspace(0.0, d, 7)
    assert np.array_equal(time_warp(dance, knots, knots), dance)


def test_uniform_slow_down_gives_more_frames_and_the_same_path(dance):
    d = len(dance) / FPS
    slow = time_warp(dance, [0.0, d], [0.0, 1.1 * d])
    assert len(slow) == round(1.1 * len(dance))
    before, after = features_to_joints(dance), features_to_joints(slow)
    expected = at_times(before, np.arange(len(slow)) / 1.1)
    keep = np.arange(len(slow)) / 1.1 <= len(dance) - 1
    assert np.abs(after[keep, 0][:, [0, 2]] - expected[keep, 0][:, [0, 2]]).max() < 1e-4  # root xz path, m
    assert np.abs(after[keep] - expected[keep]).max() < 0.005  # every joint, m
    # Per-frame velocities shrink with the speed; poses and contacts keep their values.
    speed = lambda f: np.abs(f[:, FEATURE_SLICES["local_velocity"]]).sum()  # noqa: E731
    assert speed(slow) / speed(dance) == pytest.approx(1.0, abs=0.02)  # 10 % more frames, each 10 % shorter
    assert set(np.unique(slow[:, FEATURE_SLICES["foot_contact"]])) <= {0.0, 1.0}


@pytest.mark.parametrize("turning", [False, True])
def test_smooth_warp_follows_the_original_path(dance, turning):
    dance = circle() if turning else dance
    d = len(dance) / FPS
    source = np.linspace(0.0, d, 12)
    target = source + 0.15 * np.sin(2 * np.pi * source / d)
    warped = time_warp(dance, source, target)
    assert len(warped) == len(dance)
    mapped = np.interp(np.arange(len(warped)) / FPS, target, source) * FPS
    expected = at_times(features_to_joints(dance), mapped)
    after = features_to_joints(warped)
    keep = mapped <= len(dance) - 1
    # The root's path is warped exactly (the decoder's own integration); the body within a few mm.
    assert np.abs(after[keep, 0][:, [0, 2]] - expected[keep, 0][:, [0, 2]]).max() < 1e-4
    assert np.abs(after[keep] - expected[keep]).max() < 0.005
    rot = warped[:, FEATURE_SLICES["rot6d"]].reshape(len(warped), -1, 6)
    assert np.allclose(np.linalg.norm(rot[..., :3], axis=-1), 1.0, atol=1e-5)  # blends re-orthonormalised
    assert np.allclose(np.sum(rot[..., :3] * rot[..., 3:], axis=-1), 0.0, atol=1e-5)


@pytest.mark.parametrize("change", [0.1, 0.15, 0.25])
@pytest.mark.parametrize("bpm", [80, 137])
def test_the_map_is_monotone_and_its_slopes_stay_in_bounds(dance, change, bpm):
    beats = np.arange(0.17, 12.0, 60.0 / bpm)
    aligned = align_to_beats(dance, beats, max_speed_change=change)
    warp = aligned.warp
    assert np.all(np.diff(warp.source_s) > 0) and np.all(np.diff(warp.target_s) > 0)
    assert np.all(warp.slopes >= 1 - change - 1e-9) and np.all(warp.slopes <= 1 + change + 1e-9)
    assert aligned.features.shape == dance.shape
    pairs = aligned.matched
    assert np.all(np.diff(pairs[:, 0]) > 0) and np.all(np.diff(pairs[:, 1]) > 0)
    assert np.allclose(warp(pairs[:, 0]), pairs[:, 1], atol=1e-9)  # the map goes through every matched pair


def test_accents_move_onto_an_offset_beat_grid():
    features = bounce()
    accents = motion_beat_times(features)
    assert np.abs(accents[1:-1] - np.round((accents[1:-1] - 0.25) / PERIOD) * PERIOD - 0.25).max() < 1.5 / 60
    music = np.arange(0.25 + 0.12, 8.0, PERIOD)  # 120 ms late: 7 frames at 60 fps
    aligned = align_to_beats(features, music)
    assert aligned.info["bas_before"] < 0.3
    assert aligned.info["bas_after"] > 0.8
    assert aligned.info["bas_after"] == pytest.approx(beat_alignment_score(aligned.features, music))
    assert len(aligned.matched) >= len(music) - 2


@pytest.mark.parametrize("method", ["snap", "tempo"])
def test_a_slower_song_is_followed(method):
    features = bounce(period=PERIOD)
    music = np.arange(0.3, 8.0, 1.1 * PERIOD)  # 10 % slower than the dance, a different phase
    aligned = align_to_beats(features, music, method=method)
    assert aligned.info["bas_after"] > aligned.info["bas_before"] + 0.3
    assert aligned.info["bas_after"] > 0.7


def test_method_none_keeps_the_dance(dance):
    aligned = align_to_beats(dance, np.arange(0.3, 8.0, 0.5), method="none")
    assert np.array_equal(aligned.features, dance)
    assert aligned.info["bas_after"] == aligned.info["bas_before"]


def test_frames_sets_the_output_length(dance):
    aligned = align_to_beats(dance, np.arange(0.3, 8.0, 0.5), frames=len(dance) + 20)
    assert aligned.features.shape == (len(dance) + 20, 263)


@pytest.mark.parametrize("beats, field", [
    ([0.5, 0.4, 1.0], "music_beats_s"),
    ([0.5, 0.5, 1.0], "music_beats_s"),
    ([0.5, np.nan, 1.0], "music_beats_s"),
    ([-0.5, 0.5], "music_beats_s"),
    ([[0.5, 1.0]], "music_beats_s"),
])
def test_bad_beats_raise(dance, beats, field):
    with pytest.raises(DataError, match=field):
        align_to_beats(dance, beats)


@pytest.mark.parametrize("change", [0.0, -0.1, 0.51, float("nan"), "fast"])
def test_bad_speed_change_raises(dance, change):
    with pytest.raises(DataError, match="max_speed_change"):
        align_to_beats(dance, [0.5, 1.0], max_speed_change=change)


def test_bad_features_and_arguments_raise(dance):
    nan = dance.copy()
    nan[3, 10] = np.nan
    for bad in (dance[:, :262], dance[:1], nan, dance.astype(np.int64)):
        with pytest.raises(DataError, match="features"):
            align_to_beats(bad, [0.5, 1.0])
        with pytest.raises(DataError, match="features"):
            time_warp(bad, [0.0, 1.0], [0.0, 1.0])
    with pytest.raises(DataError, match="method"):
        align_to_beats(dance, [0.5, 1.0], method="swing")
    with pytest.raises(DataError, match="window_s"):
        align_to_beats(dance, [0.5, 1.0], window_s=0.0)
    with pytest.raises(DataError, match="target_times_s"):
        time_warp(dance, [0.0, 1.0], [0.0, 1.0, 2.0])
    with pytest.raises(DataError, match="source_times_s"):
        time_warp(dance, [0.0, 1.0, 1.0], [0.0, 1.0, 2.0])
    with pytest.raises(DataError, match="target_times_s"):
        time_warp(dance, [0.0, 1.0], [1.0, 0.5])
    with pytest.raises(DataError, match="frames"):
        time_warp(dance, [0.0, 1.0], [0.0, 1.0], frames=1)


def test_the_study_runs_in_smoke_mode(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_beats", REPO_ROOT / "benchmarks" / "bench_beats.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--smoke", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "beat_alignment.json").read_text())
    rows = {(r["method"], r["max_speed_change"]): r for r in result["settings"]}
    assert rows[("none", None)]["bas_after"] == rows[("none", None)]["bas_before"]
    assert rows[("snap", 0.15)]["bas_after"] > rows[("snap", 0.15)]["bas_before"]
    assert "## Recommendation" in (tmp_path / "beat_alignment.md").read_text()
