"""MotionStats: official HumanML3D Mean/Std, block-averaged std, normalisation and atomic save/load."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import fixtures_dir
from kpop_helpers.data import DataError
from kpop_helpers.motion.features import FEATURE_SLICES
from kpop_helpers.motion.stats import MotionStats, compute_stats

# Block boundaries exactly as HumanML3D's cal_mean_variance writes them for joints_num = 22.
J = 22
NOTEBOOK_BLOCKS = [(0, 1), (1, 3), (3, 4), (4, 4 + (J - 1) * 3), (4 + (J - 1) * 3, 4 + (J - 1) * 9),
                   (4 + (J - 1) * 9, 4 + (J - 1) * 9 + J * 3), (4 + (J - 1) * 9 + J * 3, 263)]


def _official_folder():
    folder = fixtures_dir() / "humanml_stats"
    if not (folder / "Mean.npy").is_file() or not (folder / "Std.npy").is_file():
        pytest.skip(f"official HumanML3D Mean.npy/Std.npy not found in {folder}")
    return folder


def _structured_features(clips: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Random [T, 263] clips whose columns have different spreads, with 0/1 contacts."""
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.01, 2.0, size=263)
    out = []
    for index in range(clips):
        clip = rng.normal(rng.normal(size=263), scales, size=(30 + 7 * index, 263))
        clip[:, 259:] = rng.random((len(clip), 4)) < 0.7
        out.append(clip.astype(np.float32))
    return out


def test_feature_slices_match_the_notebook_blocks() -> None:
    assert [(s.start, s.stop) for s in FEATURE_SLICES.values()] == NOTEBOOK_BLOCKS


@pytest.mark.reference
def test_official_stats_load_and_have_block_structure() -> None:
    folder = _official_folder()
    stats = MotionStats.load(folder)
    assert stats.dim == 263 and stats.mean.dtype == np.float32 and stats.std.dtype == np.float32
    np.testing.assert_array_equal(stats.mean, np.load(folder / "Mean.npy", allow_pickle=False))
    np.testing.assert_array_equal(stats.std, np.load(folder / "Std.npy", allow_pickle=False))
    for start, stop in NOTEBOOK_BLOCKS:  # the published std is constant within each block
        assert np.unique(stats.std[start:stop]).size == 1, (start, stop)
    by_files = MotionStats.load((folder / "Mean.npy", folder / "Std.npy"))
    np.testing.assert_array_equal(by_files.std, stats.std)


@pytest.mark.reference
def test_official_stats_round_trip_numpy_and_torch() -> None:
    stats = MotionStats.load(_official_folder())
    features = np.random.default_rng(1).normal(size=(2, 40, 263)).astype(np.float32)
    normalized = stats.normalize(features)
    np.testing.assert_allclose(normalized, (features - stats.mean) / stats.std, rtol=1e-6)
    np.testing.assert_allclose(stats.denormalize(normalized), features, atol=1e-5)
    torch = pytest.importorskip("torch")
    model_layout = torch.from_numpy(features).permute(0, 2, 1).unsqueeze(2)  # MDM's [B, 263, 1, T]
    normalized_torch = stats.normalize(model_layout, axis=1)
    assert isinstance(normalized_torch, torch.Tensor) and normalized_torch.dtype == torch.float32
    np.testing.assert_allclose(normalized_torch.squeeze(2).permute(0, 2, 1).numpy(), normalized, rtol=1e-6, atol=1e-6)
    restored = stats.denormalize(normalized_torch.double(), axis=1)
    assert restored.dtype == torch.float64
    np.testing.assert_allclose(restored.numpy(), model_layout.numpy(), atol=1e-5)


def test_compute_stats_the_humanml3d_way() -> None:
    clips = _structured_features()
    stats = compute_stats(clips)
    data = np.concatenate(clips).astype(np.float64)
    np.testing.assert_allclose(stats.mean, data.mean(axis=0), rtol=1e-6, atol=1e-7)
    per_dim = data.std(axis=0)
    for start, stop in NOTEBOOK_BLOCKS:
        block = stats.std[start:stop]
        assert np.unique(block).size == 1, (start, stop)
        np.testing.assert_allclose(block[0], per_dim[start:stop].mean(), rtol=1e-6)
    assert stats.mean.dtype == np.float32 and stats.std.dtype == np.float32


def test_compute_stats_nan_and_zero_spread() -> None:
    clips = _structured_features(3)
    broken = clips[1].copy()
    broken[4, 100] = np.nan
    with pytest.raises(DataError, match="record 1"):
        compute_stats([clips[0], broken, clips[2]])
    skipped = compute_stats([clips[0], broken, clips[2]], on_nan="skip")
    np.testing.assert_array_equal(skipped.std, compute_stats([clips[0], clips[2]]).std)
    constant_contacts = [clip.copy() for clip in clips]
    for clip in constant_contacts:
        clip[:, 259:] = 1.0
    with pytest.raises(DataError, match="foot_contact"):
        compute_stats(constant_contacts)
    floored = compute_stats(constant_contacts, std_floor=0.01)
    np.testing.assert_array_equal(floored.std[259:], np.float32(0.01))
    with pytest.raises(DataError, match="record 0"):
        compute_stats([np.zeros((5, 262), np.float32)])
    with pytest.raises(DataError):
        compute_stats([])


def test_save_load_round_trip_is_plain_npy(tmp_path) -> None:
    stats = compute_stats(_structured_features(2, seed=3))
    stats.save(tmp_path / "stats")
    assert sorted(p.name for p in (tmp_path / "stats").iterdir()) == ["Mean.npy", "Std.npy"]  # no temp files left
    raw = np.load(tmp_path / "stats" / "Std.npy", allow_pickle=False)
    assert raw.dtype == np.float32 and raw.shape == (263,)
    loaded = MotionStats.load(tmp_path / "stats")
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.std, stats.std)


def test_load_rejects_bad_files(tmp_path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        MotionStats.load(tmp_path / "missing")
    np.save(tmp_path / "Mean.npy", np.zeros(263, np.float32))
    with pytest.raises(DataError, match="Std.npy"):
        MotionStats.load(tmp_path)
    np.save(tmp_path / "Std.npy", np.ones(251, np.float32))
    with pytest.raises(DataError, match=r"\(263,\)"):
        MotionStats.load(tmp_path)
    np.save(tmp_path / "Std.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="plain .npy"):
        MotionStats.load(tmp_path)
    zero_std = np.ones(263, np.float32)
    zero_std[7] = 0.0
    np.save(tmp_path / "Std.npy", zero_std)
    with pytest.raises(DataError, match="std is <= 0 at dimensions \\[7\\]"):
        MotionStats.load(tmp_path)


def test_normalize_checks_the_feature_axis() -> None:
    stats = MotionStats(mean=np.zeros(263), std=np.full(263, 2.0))
    with pytest.raises(DataError, match="axis"):
        stats.normalize(np.zeros((4, 263, 1, 10), np.float32))  # MDM layout needs axis=1
    out = stats.normalize(np.ones((4, 263, 1, 10), np.float32), axis=1)
    assert out.dtype == np.float32 and np.all(out == 0.5)
    with pytest.raises(DataError, match="mean/std"):
        MotionStats(mean=np.zeros(263), std=np.ones(262))
