"""Conventions (T2M-22 @ 20 fps y-up -> SMPL-24 @ 60 fps / z-up @ 30 fps), fidelity and the dance-quality suite."""

from __future__ import annotations

import numpy as np
import pytest

from kpop_helpers.data import DataError
from kpop_helpers.metrics import (
    HAND_LENGTH_M,
    dance_quality,
    fidelity,
    resample,
    t2m_to_smpl24,
    to_aist_convention,
    to_edge_convention,
    y_up_to_z_up,
    z_up_to_y_up,
)
from kpop_helpers.motion.skeleton import T2M_PARENTS, T2M_TARGET_OFFSETS


def rest_pose() -> np.ndarray:
    """T2M rest pose [22, 3] from the HumanML3D target offsets, lowest joint on the floor y = 0."""
    pose = np.zeros((22, 3))
    for joint, parent in enumerate(T2M_PARENTS):
        if parent >= 0:
            pose[joint] = pose[parent] + T2M_TARGET_OFFSETS[joint]
    pose[:, 1] -= pose[:, 1].min()
    return pose


def synthetic_dance(seed: int, frames: int = 60, fps: float = 20.0) -> np.ndarray:
    """A smooth random dance [frames, 22, 3]: per-joint sways, a bounce and some travel."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None] / fps
    freq = rng.uniform(0.5, 2.0, size=(1, 22, 3))
    amp = rng.uniform(0.02, 0.12, size=(1, 22, 3)) * np.array([1.0, 0.4, 1.0])
    phase = rng.uniform(0, 2 * np.pi, size=(1, 22, 3))
    bounce = 0.03 * np.sin(2 * np.pi * rng.uniform(1.0, 2.0) * t) * np.array([0.0, 1.0, 0.0])
    travel = t * np.array([rng.uniform(-0.3, 0.3), 0.0, rng.uniform(-0.3, 0.3)])
    return rest_pose()[None] + amp * np.sin(2 * np.pi * freq * t + phase) + bounce + travel


def test_t2m_to_smpl24_hands():
    joints = synthetic_dance(0, frames=10)
    smpl = t2m_to_smpl24(joints)
    assert smpl.shape == (10, 24, 3)
    np.testing.assert_array_equal(smpl[:, :22], joints)
    for hand, wrist, elbow in ((22, 20, 18), (23, 21, 19)):
        offset = smpl[:, hand] - smpl[:, wrist]
        np.testing.assert_allclose(np.linalg.norm(offset, axis=-1), HAND_LENGTH_M, rtol=1e-12)
        forearm = joints[:, wrist] - joints[:, elbow]
        cos = np.sum(offset * forearm, axis=-1) / (np.linalg.norm(offset, axis=-1) * np.linalg.norm(forearm, axis=-1))
        np.testing.assert_allclose(cos, 1.0, atol=1e-12)
    collapsed = joints.copy()
    collapsed[:, 18] = collapsed[:, 20]
    np.testing.assert_array_equal(t2m_to_smpl24(collapsed)[:, 22], collapsed[:, 20])
    assert t2m_to_smpl24(smpl).shape == (10, 24, 3)
    with pytest.raises(DataError, match="22, 3"):
        t2m_to_smpl24(joints[:, :21])


def dominant_frequency(signal: np.ndarray, fps: float) -> float:
    spectrum = np.abs(np.fft.rfft(signal - signal.mean(), n=1 << 14))
    return float(np.fft.rfftfreq(1 << 14, d=1.0 / fps)[np.argmax(spectrum)])


@pytest.mark.parametrize("src_fps, dst_fps", [(20.0, 60.0), (20.0, 30.0), (60.0, 30.0), (30.0, 20.0)])
def test_resample_keeps_sinusoid(src_fps, dst_fps):
    freq = 1.5
    t_src = np.arange(int(6 * src_fps) + 1) / src_fps
    wave = np.stack([np.sin(2 * np.pi * freq * t_src), np.cos(2 * np.pi * freq * t_src), t_src], axis=-1)[:, None]
    out = resample(wave, src_fps, dst_fps)
    assert out.shape == (int(6 * dst_fps) + 1, 1, 3)
    t_dst = np.arange(out.shape[0]) / dst_fps
    assert dominant_frequency(out[:, 0, 0], dst_fps) == pytest.approx(freq, abs=0.01)
    # a cubic spline through 20+ samples per period stays within a few mm of the true curve
    np.testing.assert_allclose(out[:, 0, 0], np.sin(2 * np.pi * freq * t_dst), atol=5e-3)
    np.testing.assert_allclose(out[:, 0, 2], t_dst, atol=1e-9)  # linear motion is reproduced exactly
    if dst_fps % src_fps == 0:  # the source frames are kept where the time grids coincide
        np.testing.assert_allclose(out[:: int(dst_fps // src_fps), 0], wave[:, 0], atol=1e-12)


def test_resample_integer_downsampling_is_exact():
    joints = np.random.default_rng(0).normal(size=(121, 24, 3))
    np.testing.assert_array_equal(resample(joints, 60.0, 30.0), joints[::2])
    np.testing.assert_array_equal(resample(joints, 60.0, 60.0), joints)
    with pytest.raises(DataError, match="positive"):
        resample(joints, 0.0, 30.0)


def test_axis_mapping():
    np.testing.assert_array_equal(y_up_to_z_up(np.array([0.0, 1.0, 0.0])), [0.0, 0.0, 1.0])  # up stays up
    np.testing.assert_array_equal(y_up_to_z_up(np.array([0.0, 0.0, 1.0])), [0.0, -1.0, 0.0])
    np.testing.assert_array_equal(y_up_to_z_up(np.array([1.0, 0.0, 0.0])), [1.0, 0.0, 0.0])
    basis = y_up_to_z_up(np.eye(3))
    assert np.linalg.det(basis) == pytest.approx(1.0)  # a rotation, not a mirror
    points = np.random.default_rng(0).normal(size=(5, 24, 3))
    np.testing.assert_array_equal(z_up_to_y_up(y_up_to_z_up(points)), points)


def test_full_conventions():
    joints = synthetic_dance(1, frames=41)
    aist = to_aist_convention(joints, 20.0)
    assert aist.shape == (121, 24, 3) and aist.dtype == np.float64
    np.testing.assert_allclose(aist[::3, :22], joints, atol=1e-12)
    edge = to_edge_convention(joints, 20.0)
    assert edge.shape == (61, 24, 3)
    np.testing.assert_allclose(edge[::3, :22, 2], joints[::2, :, 1], atol=1e-12)  # height becomes z
    np.testing.assert_allclose(edge[::3, :22, 1], -joints[::2, :, 2], atol=1e-12)


def test_fidelity():
    batch = np.stack([synthetic_dance(s) for s in range(3)]).astype(np.float32)
    assert fidelity(batch, batch.copy()) == {"mpjpe_mm": 0.0, "rel_rms": 0.0}
    shifted = batch + np.array([0.01, 0.0, 0.0], dtype=np.float32)
    result = fidelity(batch, shifted)
    assert result["mpjpe_mm"] == pytest.approx(10.0, rel=1e-4)
    assert 0.0 < result["rel_rms"] < 0.1
    assert fidelity(batch[0], shifted[0])["mpjpe_mm"] == pytest.approx(10.0, rel=1e-4)
    with pytest.raises(DataError, match="variant_joints"):
        fidelity(batch, batch[:, :-1])


@pytest.fixture(scope="module")
def reference_set() -> list[np.ndarray]:
    return [synthetic_dance(seed) for seed in range(6)]


def test_dance_quality_copies_vs_noisy(reference_set):
    exact = dance_quality([r.copy() for r in reference_set], reference_set, fps=20.0, progress=False)
    rng = np.random.default_rng(42)
    noisy_set = [r + rng.normal(scale=0.02, size=r.shape) for r in reference_set]
    noisy = dance_quality(noisy_set, reference_set, fps=20.0, progress=False)
    keys = {"fid_k", "fid_g", "div_k", "div_g", "pfc", "foot_skating", "jitter", "bone_drift"}
    assert keys <= exact.keys() and keys <= noisy.keys()
    for result in (exact, noisy):
        assert all(np.isfinite(result[k]) for k in keys)
    assert abs(exact["fid_k"]) < 1e-3 and abs(exact["fid_g"]) < 1e-3
    assert noisy["fid_k"] > 1.0 + exact["fid_k"]
    assert exact["div_k"] == pytest.approx(exact["div_k_gt"], rel=1e-5)
    assert exact["pfc"] == pytest.approx(exact["pfc_gt"], rel=1e-6)  # the real set's own PFC
    assert noisy["pfc_gt"] == exact["pfc_gt"] and noisy["pfc"] != noisy["pfc_gt"]
    assert noisy["jitter"] > exact["jitter"]
    corrected = dance_quality(noisy_set, reference_set, fps=20.0, mode="corrected", progress=False)
    assert corrected["fid_k"] > 0 and corrected["fid_k"] != noisy["fid_k"]


def test_dance_quality_small_sets_and_beats(reference_set):
    with pytest.raises(DataError, match="at least 2"):
        dance_quality(reference_set[:1], reference_set, progress=False)
    small = dance_quality(reference_set[:1], reference_set[:1], allow_small=True, progress=False,
                         music_beat_times=[np.arange(0.25, 3.0, 0.5)])
    assert small["fid_k"] is None and small["div_g"] is None
    assert np.isfinite(small["pfc"]) and 0.0 <= small["bas"] <= 1.0
