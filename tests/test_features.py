"""HumanML3D 263-d features: golden cases from the reference code, plus invariants on synthetic motion."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from conftest import fixture_cases, fixture_family
from kpop_helpers.data import DataError
from kpop_helpers.motion.features import (
    FEATURE_DIM,
    FEATURE_SLICES,
    _gaussian_smooth,
    features_to_joints,
    features_to_joints_torch,
    joints_to_features,
    process_motion,
)
from kpop_helpers.motion.skeleton import T2M_KINEMATIC_CHAIN, T2M_PARENTS, T2M_RAW_OFFSETS, T2M_TARGET_OFFSETS, bone_lengths

FAMILY = "humanml_features"
# Which reference arrays each encoder mode must reproduce.
MODE_ARRAYS = {"mdm": ("features", "global_positions"), "hml3d": ("features_hml3d", "global_positions_hml3d")}


def _case_id(case: dict | None) -> str:
    return "no-cases" if case is None else case["name"]


def _load_case(case: dict | None) -> tuple[dict, dict, dict[str, np.ndarray]]:
    folder, spec = fixture_family(FAMILY)
    if case is None:
        pytest.skip(f"{folder / 'cases.json'} lists no cases")
    with np.load(folder / case["file"], allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return spec["tolerance"], case, arrays


def _assert_features_close(ours: np.ndarray, ref: np.ndarray, tol: dict, label: str) -> None:
    """Compare feature arrays block by block: 6D and contact columns have their own tolerances."""
    assert ours.shape == ref.shape and ours.dtype == np.float32, (ours.shape, ours.dtype, ref.shape)
    error = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    rot_lo, rot_hi = tol["rot6d_columns"]
    con_lo, con_hi = tol["contact_columns"]
    other = np.ones(ref.shape[-1], dtype=bool)
    other[rot_lo:rot_hi] = other[con_lo:con_hi] = False
    checks = [("other", error[:, other], tol["max_abs"]), ("rot6d", error[:, rot_lo:rot_hi], tol["rot6d_max_abs"]),
              ("contacts", error[:, con_lo:con_hi], tol["contact_max_abs"])]
    for block, block_error, limit in checks:
        worst = float(block_error.max()) if block_error.size else 0.0
        print(f"{label} {block}: max abs error {worst:.3g} (tolerance {limit})")
        assert worst <= limit, f"{label} {block}: {worst} > {limit}"


@pytest.mark.reference
@pytest.mark.parametrize("mode", sorted(MODE_ARRAYS))
@pytest.mark.parametrize("case", fixture_cases(FAMILY) or [None], ids=_case_id)
def test_encoder_matches_reference(case: dict | None, mode: str) -> None:
    tol, case, arrays = _load_case(case)
    if case["kind"] == "recover_only":
        pytest.skip("recover_only case: no encoder arrays (the decoder test covers it)")
    assert case["kind"] == "process_file", f"unknown case kind {case['kind']!r}"
    features_key, positions_key = MODE_ARRAYS[mode]
    result = process_motion(arrays["positions"], mode=mode, feet_thre=float(arrays["feet_thre"]),
                            tgt_offsets=arrays["tgt_offsets"], source=case["file"])
    _assert_features_close(result.features, arrays[features_key], tol[features_key], f"{case['name']} {mode}")
    position_error = np.abs(result.global_positions - arrays[positions_key]).max()
    print(f"{case['name']} {mode} {positions_key}: max abs error {position_error:.3g}")
    assert result.global_positions.shape == arrays[positions_key].shape
    assert position_error <= tol[positions_key]["max_abs"]
    if mode == "mdm":
        velocity_error = np.abs(result.l_velocity - arrays["l_velocity"]).max()
        print(f"{case['name']} l_velocity: max abs error {velocity_error:.3g}")
        assert velocity_error <= tol["l_velocity"]["max_abs"]
    if "retarget_scale" in case:  # stored rounded to 6 decimals
        assert abs(result.retarget_scale - case["retarget_scale"]) <= 1e-6 * max(1.0, abs(case["retarget_scale"]))
    # joints_to_features is the same conversion, returning the features only.
    same = joints_to_features(arrays["positions"], mode=mode, feet_thre=float(arrays["feet_thre"]),
                              tgt_offsets=arrays["tgt_offsets"])
    np.testing.assert_array_equal(same, result.features)


@pytest.mark.reference
@pytest.mark.parametrize("case", fixture_cases(FAMILY) or [None], ids=_case_id)
def test_decoder_matches_reference(case: dict | None) -> None:
    tol, case, arrays = _load_case(case)
    assert case["kind"] in ("process_file", "recover_only"), f"unknown case kind {case['kind']!r}"
    recovered = features_to_joints(arrays["features"])  # the STORED features, not ours
    assert recovered.shape == arrays["recovered"].shape and recovered.dtype == np.float32
    error = np.abs(recovered - arrays["recovered"]).max()
    print(f"{case['name']} recovered: max abs error {error:.3g}")
    assert error <= tol["recovered"]["max_abs"]
    torch = pytest.importorskip("torch")
    recovered_torch = features_to_joints_torch(torch.from_numpy(arrays["features"]))
    assert recovered_torch.dtype == torch.float32
    assert np.abs(recovered_torch.numpy() - arrays["recovered"]).max() <= tol["recovered"]["max_abs"]


def _synthetic_dance(frames: int = 96, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """A smooth, turning, bouncing T2M motion [frames, 22, 3] built by forward kinematics (float32)."""
    rng = np.random.default_rng(seed)
    lengths = np.linalg.norm(T2M_TARGET_OFFSETS, axis=-1) * scale * rng.uniform(0.94, 1.06, size=22)
    offsets = T2M_RAW_OFFSETS * lengths[:, None]
    t = np.arange(frames, dtype=np.float64)
    amplitude = rng.uniform(0.05, 0.35, size=(22, 3))
    frequency = rng.uniform(0.05, 0.25, size=(22, 3))
    phase = rng.uniform(0, 2 * np.pi, size=(22, 3))
    swing = amplitude[None] * np.sin(frequency[None] * t[:, None, None] + phase[None])  # [T, 22, 3] rotvecs
    heading = 0.7 + 1.4 * np.sin(t / 40.0)
    swing[:, 0] = np.stack([0.05 * np.sin(t / 7), heading, 0.04 * np.cos(t / 9)], axis=-1)
    positions = np.zeros((frames, 22, 3))
    positions[:, 0] = np.stack([0.4 + 0.6 * np.sin(t / 25), 1.3 + 0.04 * np.sin(t / 3), -0.2 + 0.01 * t], -1) * scale
    world = [None] * 22
    world[0] = Rotation.from_rotvec(swing[:, 0])
    for chain in T2M_KINEMATIC_CHAIN:
        for parent, child in zip(chain[:-1], chain[1:]):
            world[child] = world[parent] * Rotation.from_rotvec(swing[:, child])
            positions[:, child] = positions[:, parent] + world[child].apply(offsets[child])
    return positions.astype(np.float32)


def _rotate_about_y(points: np.ndarray, angle: float) -> np.ndarray:
    return Rotation.from_rotvec([0.0, angle, 0.0]).apply(points.reshape(-1, 3)).reshape(points.shape)


def test_layout_covers_every_column() -> None:
    covered = np.concatenate([np.arange(FEATURE_DIM)[s] for s in FEATURE_SLICES.values()])
    np.testing.assert_array_equal(covered, np.arange(FEATURE_DIM))


def test_hml3d_round_trip_recovers_global_positions() -> None:
    result = process_motion(_synthetic_dance(96, seed=1))
    assert result.features.shape == (95, FEATURE_DIM) and result.features.dtype == np.float32
    recovered = features_to_joints(result.features)
    error = np.abs(recovered - result.global_positions[:-1]).max()
    print(f"hml3d round trip: max abs error {error:.3g}")
    assert error < 2e-6


def test_mdm_round_trip_is_a_rotation_about_vertical() -> None:
    result = process_motion(_synthetic_dance(96, seed=2), mode="mdm")
    recovered = features_to_joints(result.features).astype(np.float64)
    target = result.global_positions[:-1].astype(np.float64)
    np.testing.assert_allclose(recovered[..., 1], target[..., 1], atol=1e-3)  # the 1e-4 bias tilts slightly
    # Best 2-D rotation (Procrustes) of the horizontal coordinates; MDM keeps the frame-0 heading r_0.
    a, b = target[..., [0, 2]].reshape(-1, 2), recovered[..., [0, 2]].reshape(-1, 2)
    u, _, vt = np.linalg.svd(a.T @ b)
    residual = np.abs(a @ (u @ vt) - b).max()
    print(f"mdm round trip: {np.abs(recovered - target).max():.3g} before, {residual:.3g} after the best y rotation")
    assert residual < 1e-3  # only the 1e-4 qbetween bias remains
    assert np.abs(recovered - target).max() > 10 * residual  # a real rotation, unlike the hml3d mode


def test_recovered_bones_have_target_lengths() -> None:
    for offsets in (T2M_TARGET_OFFSETS, T2M_TARGET_OFFSETS * 1.2):
        result = process_motion(_synthetic_dance(60, seed=3, scale=0.8), tgt_offsets=offsets)
        recovered = features_to_joints(result.features)
        expected = np.linalg.norm(offsets, axis=-1)[1:]
        assert np.abs(bone_lengths(recovered)[:, 1:] - expected).max() < 1e-5
        assert np.abs(bone_lengths(result.global_positions)[:, 1:] - expected).max() < 1e-5


def test_bone_exactly_opposite_its_rest_direction_stays_finite() -> None:
    positions = _synthetic_dance(30, seed=13)
    forearm = np.linalg.norm(positions[0, 20] - positions[0, 18])
    positions[:, 20] = positions[:, 18] + np.array([0.0, forearm, 0.0], dtype=np.float32)  # rest points down
    for mode in ("hml3d", "mdm"):
        result = process_motion(positions, mode=mode)
        assert np.isfinite(result.features).all()
        recovered = features_to_joints(result.features)
        assert np.abs(bone_lengths(recovered)[:, 20] - np.linalg.norm(T2M_TARGET_OFFSETS[20])).max() < 1e-5
    wrist_up = result.global_positions[:, 20] - result.global_positions[:, 18]
    np.testing.assert_allclose(wrist_up[:, 1], np.linalg.norm(T2M_TARGET_OFFSETS[20]), atol=1e-3)


def test_global_positions_are_floored_centred_and_face_forward() -> None:
    positions = process_motion(_synthetic_dance(50, seed=4)).global_positions
    assert abs(positions[..., 1].min()) < 1e-6
    np.testing.assert_allclose(positions[0, 0, [0, 2]], 0.0, atol=1e-6)
    across = positions[0, 2] - positions[0, 1] + positions[0, 17] - positions[0, 16]
    forward = np.cross([0.0, 1.0, 0.0], across)
    assert abs(forward[0]) < 1e-5 and forward[2] > 0


def test_hml3d_features_ignore_placement_and_body_scale() -> None:
    positions = _synthetic_dance(80, seed=5)
    reference = joints_to_features(positions)
    moved = _rotate_about_y(positions.astype(np.float64), 2.1) * 1.37 + np.array([3.0, -0.4, -1.5])
    features = joints_to_features(moved.astype(np.float32))
    np.testing.assert_array_equal(features[:, 259:], reference[:, 259:])
    assert np.abs(features - reference).max() < 1e-4


def test_feature_blocks_are_consistent() -> None:
    result = process_motion(_synthetic_dance(70, seed=6), feet_thre=0.0005)
    features = result.features
    np.testing.assert_array_equal(features[:, 1:3], result.l_velocity)
    rot6d = features[:, 67:193].reshape(len(features), 21, 2, 3).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(rot6d, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.sum(rot6d[:, :, 0] * rot6d[:, :, 1], axis=-1), 0.0, atol=1e-5)
    steps = result.global_positions[1:, [7, 10, 8, 11]] - result.global_positions[:-1, [7, 10, 8, 11]]
    squared = np.sum(steps.astype(np.float64) ** 2, axis=-1)
    clear = np.abs(squared - 0.0005) > 1e-7  # away from the threshold, float32 rounding cannot flip a flag
    np.testing.assert_array_equal(features[:, 259:][clear], (squared < 0.0005)[clear].astype(np.float32))
    assert 0 < features[:, 259:].mean() < 1
    speeds = np.linalg.norm(features[:, 193:259].reshape(-1, 22, 3), axis=-1)
    np.testing.assert_allclose(speeds, np.linalg.norm(result.global_positions[1:] - result.global_positions[:-1], axis=-1),
                               atol=1e-5)


def test_heading_smoothing_matches_scipy() -> None:
    signal = np.random.default_rng(7).normal(size=(130, 3))
    expected = gaussian_filter1d(signal, sigma=20, axis=0, mode="nearest")
    np.testing.assert_allclose(_gaussian_smooth(signal), expected, atol=1e-12)


def test_decoder_batches_and_keeps_dtype() -> None:
    clips = np.stack([joints_to_features(_synthetic_dance(40, seed=s)) for s in (8, 9)])
    batched = features_to_joints(clips)
    assert batched.shape == (2, 39, 22, 3) and batched.dtype == np.float32
    for index in range(2):
        np.testing.assert_array_equal(batched[index], features_to_joints(clips[index]))
    assert features_to_joints(clips.astype(np.float64)).dtype == np.float64


def test_torch_decoder_matches_numpy_and_is_differentiable() -> None:
    torch = pytest.importorskip("torch")
    features = np.random.default_rng(10).normal(0, 0.3, size=(3, 25, FEATURE_DIM)).astype(np.float32)
    tensor = torch.from_numpy(features).requires_grad_(True)
    joints = features_to_joints(tensor)
    assert isinstance(joints, torch.Tensor) and joints.dtype == torch.float32 and joints.shape == (3, 25, 22, 3)
    np.testing.assert_allclose(joints.detach().numpy(), features_to_joints(features), atol=1e-6)
    joints.square().sum().backward()
    assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad[..., :67].abs().sum() > 0
    assert features_to_joints_torch(tensor.detach().double()).dtype == torch.float64


def test_modules_do_not_import_torch() -> None:
    code = ("import sys, kpop_helpers.motion.features, kpop_helpers.motion.stats; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_conversion_is_fast() -> None:
    positions = _synthetic_dance(196, seed=11)
    best = min(_timed(joints_to_features, positions) for _ in range(5))
    print(f"joints_to_features on 196 frames: {best * 1000:.1f} ms")
    assert best < 0.05


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 21, 3)), np.zeros((10, 22)), np.zeros((1, 22, 3)), np.full((4, 22, 3), "x"), np.zeros((0, 22, 3))],
    ids=["21-joints", "2-d", "one-frame", "strings", "empty"],
)
def test_bad_joint_shapes_raise_data_error(bad: np.ndarray) -> None:
    with pytest.raises(DataError, match="positions"):
        joints_to_features(bad, source="clip_007.npz")


def test_non_finite_and_degenerate_joints_raise_data_error() -> None:
    positions = _synthetic_dance(20, seed=12)
    for value in (np.nan, np.inf):
        broken = positions.copy()
        broken[5, 3, 1] = value
        with pytest.raises(DataError, match="frame 5, joint 3"):
            joints_to_features(broken, source="clip.npz")
    collapsed = positions.copy()
    collapsed[7, 4] = collapsed[7, T2M_PARENTS[4]]
    with pytest.raises(DataError, match="bone 1->4 .* frame 7"):
        joints_to_features(collapsed)
    with pytest.raises(DataError, match="tgt_offsets"):
        joints_to_features(positions, tgt_offsets=np.ones((22, 3)))
    with pytest.raises(ValueError, match="mode"):
        joints_to_features(positions, mode="t2m")


def test_bad_features_raise_data_error() -> None:
    for bad in (np.zeros((10, 262), np.float32), np.zeros(263, np.float32), np.zeros((0, 263), np.float32),
                np.zeros((4, 263), np.int64)):
        with pytest.raises(DataError, match="features"):
            features_to_joints(bad)
    broken = np.zeros((4, 263), np.float32)
    broken[2, 10] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        features_to_joints(broken)
