"""Dance metrics vs the AIST++/Bailando/EDGE reference fixtures, plus the corrected mode on analytic motions."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings

import numpy as np
import pytest

from conftest import fixture_cases, fixture_family
from kpop_helpers.data import DataError
from kpop_helpers.metrics import (
    BodyUnits,
    average_pairwise_distance,
    bailando_features,
    beat_align,
    beat_align_score,
    beat_alignment,
    calc_fid,
    extract_geometric_features,
    extract_kinetic_features,
    foot_contact_terms,
    frechet_distance,
    music_beats_from_audio,
    normalize_features,
    physical_foot_contact,
)

FAMILY = "dance_metrics"


def assert_close(actual, expected, tol: dict, what: str) -> float:
    """Element-wise |a - e| <= atol + rtol |e| (or exact); returns the max abs error for the report."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if tol.get("exact"):
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return 0.0
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"], err_msg=what)
    return float(np.max(np.abs(actual.astype(np.float64) - expected))) if actual.size else 0.0


def check_features(case: dict, data, tol: dict) -> None:
    zero_start = case.get("zero_start", True)
    for motion in case["motions"]:
        key = motion["key"]
        joints = data[f"{key}_joints"]
        assert joints.shape[0] == motion["frames"]
        is_prediction = key.split("_")[0] == "pred"
        if zero_start:
            kinetic, geometric = bailando_features(joints, is_prediction=is_prediction,
                                                   max_frames=case.get("max_frames", 1200), fps=case["fps"])
        else:
            kinetic = extract_kinetic_features(joints, fps=case["fps"])
            geometric = extract_geometric_features(joints, fps=case["fps"])
        assert kinetic.dtype == np.float32 and geometric.dtype == np.float32
        assert_close(kinetic, data[f"{key}_kinetic"], tol["features.kinetic"], f"{key}_kinetic")
        assert_close(geometric, data[f"{key}_geometric"], tol["features.geometric"], f"{key}_geometric")
        if f"{key}_kinetic_raw" in data:
            raw = extract_kinetic_features(joints, fps=case["fps"])
            assert_close(raw, data[f"{key}_kinetic_raw"], tol["features.kinetic"], f"{key}_kinetic_raw")


def check_fid_div(case: dict, data, tol: dict, cases: list[dict], folder) -> None:
    normed = {}
    for feat, short in (("kinetic", "k"), ("geometric", "g")):
        gt_norm, pred_norm, mean, std = normalize_features(data[f"gt_{feat}"], data[f"pred_{feat}"])
        assert_close(mean, data[f"gt_{feat}_mean"], tol["fid_div.mean_std"], f"gt_{feat}_mean")
        assert_close(std, data[f"gt_{feat}_std"], tol["fid_div.mean_std"], f"gt_{feat}_std")
        assert_close(gt_norm, data[f"gt_{feat}_norm"], tol["fid_div.norm"], f"gt_{feat}_norm")
        assert_close(pred_norm, data[f"pred_{feat}_norm"], tol["fid_div.norm"], f"pred_{feat}_norm")
        result = frechet_distance(pred_norm, gt_norm)
        assert_close(result.fid, data[f"fid_{short}"], tol["fid_div.fid"], f"fid_{short}")
        assert_close(result.trace_sqrt, data[f"fid_{short}_trace_sqrt"], tol["fid_div.fid"], f"fid_{short}_trace_sqrt")
        assert_close(average_pairwise_distance(pred_norm), data[f"div_{short}"], tol["fid_div.div"], f"div_{short}")
        assert_close(average_pairwise_distance(gt_norm), data[f"div_{short}_gt"], tol["fid_div.div"],
                     f"div_{short}_gt")
        normed[feat] = (gt_norm, pred_norm)
    # The inputs are the features case's outputs stacked in key order: check the chain end to end.
    source = next((c for c in cases if c["name"] == case.get("features_case")), None)
    if source is not None:
        feats = np.load(folder / source["file"], allow_pickle=False)
        for set_name in ("gt", "pred"):
            keys = [m["key"] for m in source["motions"] if m["key"].split("_")[0] == set_name]
            assert len(keys) == case.get(f"n_{set_name}", len(keys))
            for feat in ("kinetic", "geometric"):
                stacked = np.stack([feats[f"{k}_{feat}"] for k in keys])
                np.testing.assert_array_equal(stacked, data[f"{set_name}_{feat}"])


def check_bas(case: dict, data, tol: dict) -> None:
    scores = []
    for motion in case["motions"]:
        name = motion["name"]
        result = beat_alignment(data[f"{name}_joints"], data[f"{name}_music_beats"], fps=case["fps"])
        assert_close(result.music_beats, data[f"{name}_music_beats_used"], tol["bas.beats"], f"{name}_music_beats_used")
        assert_close(result.motion_beats, data[f"{name}_motion_beats"], tol["bas.beats"], f"{name}_motion_beats")
        assert_close(result.kinetic_velocity, data[f"{name}_kinetic_vel"], tol["bas.values"], f"{name}_kinetic_vel")
        assert_close(result.score, data[f"{name}_bas"], tol["bas.values"], f"{name}_bas")
        scores.append(result.score)
    assert_close(np.array(scores), data["bas"], tol["bas.values"], "bas")
    mean = beat_align_score([data[f"{m['name']}_joints"] for m in case["motions"]],
                            [data[f"{m['name']}_music_beats"] for m in case["motions"]], fps=case["fps"])
    assert_close(mean, data["bas_mean"], tol["bas.values"], "bas_mean")


def check_pfc(case: dict, data, tol: dict) -> None:
    scores, motions = [], []
    for motion in case["motions"]:
        name = motion["name"]
        terms = foot_contact_terms(data[f"{name}_joints"], fps=case["fps"])
        assert_close(terms.root_acc_norm, data[f"{name}_root_acc_norm"], tol["pfc.values"], f"{name}_root_acc_norm")
        assert_close(terms.foot_min_speed, data[f"{name}_foot_min_speed"], tol["pfc.values"], f"{name}_foot_min_speed")
        assert_close(terms.scaling, data[f"{name}_scaling"], tol["pfc.values"], f"{name}_scaling")
        assert_close(terms.score, data[f"{name}_score"], tol["pfc.values"], f"{name}_score")
        scores.append(terms.score)
        motions.append(data[f"{name}_joints"])
    assert_close(np.array(scores), data["scores"], tol["pfc.values"], "scores")
    assert_close(physical_foot_contact(motions, fps=case["fps"]), data["pfc"], tol["pfc.values"], "pfc")


@pytest.mark.reference
@pytest.mark.parametrize("case", fixture_cases(FAMILY) or [None],
                         ids=lambda c: f"{c['kind']}-{c['name']}" if c else "no-cases")
def test_reference_case(case):
    folder, spec = fixture_family(FAMILY)
    if case is None:
        pytest.skip(f"{folder}/cases.json lists no cases")
    data = np.load(folder / case["file"], allow_pickle=False)
    tol = spec["tolerance"]
    kind = case["kind"]
    if kind == "features":
        check_features(case, data, tol)
    elif kind == "fid_div":
        check_fid_div(case, data, tol, spec["cases"], folder)
    elif kind == "bas":
        check_bas(case, data, tol)
    elif kind == "pfc":
        check_pfc(case, data, tol)
    else:
        pytest.fail(f"case {case['name']}: unknown kind {kind!r}")


@pytest.mark.reference
@pytest.mark.parametrize("case", [c for c in fixture_cases(FAMILY) if c["kind"] == "features"] or [None],
                         ids=lambda c: c["name"] if c else "no-cases")
def test_corrected_mode_differs_on_fixture(case):
    folder, _ = fixture_family(FAMILY)
    if case is None:
        pytest.skip("no features case")
    data = np.load(folder / case["file"], allow_pickle=False)
    for motion in case["motions"]:
        joints = data[f"{motion['key']}_joints"]
        compat_k = extract_kinetic_features(joints)
        fixed_k = extract_kinetic_features(joints, mode="corrected", fps=60.0)
        # K1 only touches the energy-expenditure columns; the kinetic energies agree.
        np.testing.assert_allclose(fixed_k[0::3], compat_k[0::3], rtol=1e-6)
        np.testing.assert_allclose(fixed_k[1::3], compat_k[1::3], rtol=1e-6)
        assert np.all(np.abs(fixed_k[2::3] - compat_k[2::3]) > 1e-3 * np.abs(compat_k[2::3]))
        # corrected energy expenditure is translation invariant, compat's is not.
        shifted = joints + np.array([3.0, 0.0, -2.0])
        np.testing.assert_allclose(extract_kinetic_features(shifted, mode="corrected")[2::3], fixed_k[2::3], rtol=1e-6)
        assert not np.allclose(extract_kinetic_features(shifted)[2::3], compat_k[2::3], rtol=1e-3)
        compat_g = extract_geometric_features(joints)
        fixed_g = extract_geometric_features(joints, mode="corrected", fps=60.0)
        assert compat_g[4] == compat_g[5]  # G3: both read the chest, not the wrists
        assert not np.array_equal(compat_g, fixed_g)


def moving_body(fps: float, seconds: float, velocity, accel=(0.0, 0.0, 0.0), seed: int = 0) -> np.ndarray:
    """A rigid random 24-joint body translating as p0 + v t + a t^2 / 2."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(scale=0.3, size=(24, 3)) + np.array([0.0, 1.0, 0.0])
    t = np.arange(int(round(seconds * fps)) + 1)[:, None, None] / fps
    return pose[None] + t * np.asarray(velocity) + 0.5 * t**2 * np.asarray(accel)


@pytest.mark.parametrize("fps", [20.0, 30.0, 60.0])
def test_corrected_kinetic_constant_velocity(fps):
    v = np.array([0.3, 0.1, -0.2])
    feats = extract_kinetic_features(moving_body(fps, 2.0, v), mode="corrected", fps=fps).reshape(24, 3)
    np.testing.assert_allclose(feats[:, 0], v[0] ** 2 + v[2] ** 2, rtol=1e-5)  # horizontal KE = |v_xz|^2
    np.testing.assert_allclose(feats[:, 1], v[1] ** 2, rtol=1e-5)
    np.testing.assert_allclose(feats[:, 2], 0.0, atol=1e-6)  # no acceleration


def test_corrected_kinetic_constant_acceleration():
    a = np.array([0.0, -9.81, 2.0])
    feats = extract_kinetic_features(moving_body(60.0, 1.0, (0.5, 0.0, 0.0), a), mode="corrected").reshape(24, 3)
    np.testing.assert_allclose(feats[:, 2], np.linalg.norm(a), rtol=1e-5)
    compat = extract_kinetic_features(moving_body(60.0, 1.0, (0.5, 0.0, 0.0), a)).reshape(24, 3)
    assert np.all(compat[:, 2] > 10 * np.linalg.norm(a))  # K1: ~3600 x position, not an acceleration


def test_compat_refuses_other_frame_rates():
    joints = moving_body(20.0, 1.0, (0.1, 0.0, 0.0))
    for func in (extract_kinetic_features, extract_geometric_features):
        with pytest.raises(DataError, match="fps"):
            func(joints, fps=20.0)
    with pytest.raises(DataError, match="mode"):
        extract_kinetic_features(joints, mode="fixed")
    with pytest.raises(DataError, match="24 joints"):
        extract_geometric_features(joints[:, :22])


def test_geometric_tau_quirk_on_translating_body():
    # Root speed 0.4 m/s: above compat's 2.3 hl / 2 = 0.295 m/s (G2 doubles speeds), below 2.3 hl = 0.59.
    joints = moving_body(60.0, 1.0, (0.4, 0.0, 0.0))
    template = BodyUnits()
    assert extract_geometric_features(joints)[31] == 1.0
    assert extract_geometric_features(joints, mode="corrected", units=template)[31] == 0.0
    static = moving_body(60.0, 1.0, (0.0, 0.0, 0.0))
    for mode in ("compat", "corrected"):
        feats = extract_geometric_features(static, mode=mode)
        # every velocity test (nmove 0-1, move 4-5 and 9-11, fast 12-13, 21-22, 31) is false at rest
        assert np.all(feats[[0, 1, 4, 5, 9, 10, 11, 12, 13, 21, 22, 31]] == 0.0)


def test_fid_and_diversity_analytic():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(200, 6))
    shift = np.array([1.0, -2.0, 0.0, 0.5, 0.0, 0.0])
    for mode in ("compat", "corrected"):
        assert abs(calc_fid(gt, gt, mode=mode)) < 1e-6
        # equal covariances: FID is the squared mean distance
        assert calc_fid(gt + shift, gt, mode=mode) == pytest.approx(shift @ shift, rel=1e-5)
        triangle = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
        assert average_pairwise_distance(triangle, mode=mode) == pytest.approx(4.0, rel=1e-6)  # (3 + 4 + 5) / 3
    with pytest.raises(DataError, match="at least 2"):
        calc_fid(gt[:1], gt)
    with pytest.raises(DataError, match="at least 2"):
        average_pairwise_distance(gt[:1])


def test_normalisation_constant_feature_guard():
    gt = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    pred = np.array([[2.0, 5.5]], dtype=np.float32)
    _, compat_pred, _, _ = normalize_features(gt, pred)
    _, fixed_pred, _, _ = normalize_features(gt, pred, mode="corrected")
    assert abs(compat_pred[0, 1]) > 1e8  # F1: 0.5 / 1e-10
    assert fixed_pred[0, 1] == pytest.approx(0.5)
    assert fixed_pred[0, 0] == pytest.approx(0.0)


def speed_wave_dance(period_frames: int, frames: int) -> np.ndarray:
    """24 joints whose per-frame speed v_t (frame t -> t+1) is smallest at t = period/2 + k period."""
    t = np.arange(frames) - 0.5  # v_t measures the step centred on t + 0.5
    phase = 2 * np.pi * t / period_frames
    x = (t + np.sin(phase) * period_frames / (2 * np.pi)) * 0.01  # dx/dt = 0.01 (1 + cos)
    joints = np.zeros((frames, 24, 3))
    joints[:, :, 0] = x[:, None]
    joints[:, :, 1] = np.linspace(0, 1.7, 24)[None]
    return joints


def test_bas_analytic_and_units():
    joints = speed_wave_dance(30, 301)
    minima = np.arange(15, 290, 30)
    on_beat = beat_alignment(joints, minima, fps=60.0)
    assert on_beat.score == pytest.approx(1.0, abs=1e-12)
    off_beat = beat_alignment(joints, minima + 3, fps=60.0)
    assert off_beat.score == pytest.approx(np.exp(-0.5), abs=1e-12)  # 3 frames = one sigma
    as_seconds = beat_alignment(joints, (minima + 3) / 60.0, fps=60.0, unit="seconds")
    assert as_seconds.score == off_beat.score
    # Beats at or after T-1 are dropped (B1).
    assert beat_alignment(joints, [15, 299, 300, 400], fps=60.0).music_beats.tolist() == [15, 299]


def test_bas_empty_sets():
    with pytest.raises(DataError, match="no motion beats"):
        beat_align(np.array([10]), np.array([], dtype=np.int64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert beat_align(np.array([10]), np.array([], dtype=np.int64), mode="corrected") == 0.0
        assert np.isnan(beat_align(np.array([], dtype=np.int64), np.array([3]), mode="corrected"))
    assert len(caught) == 2
    with pytest.raises(DataError, match="fps"):
        beat_alignment(speed_wave_dance(30, 200), [15], fps=20.0)


def test_pfc_analytic():
    fps = 30.0
    glide = moving_body(fps, 3.0, (0.3, 0.0, 0.0), (0.0, 0.0, 0.2))  # z up: constant upward root acceleration
    terms = foot_contact_terms(glide)
    # every foot slides 0.3 m/s = 0.01 m/frame while the (constant) acceleration normalises to 1
    np.testing.assert_allclose(terms.root_acc_norm, 1.0, rtol=1e-6)
    assert terms.score == pytest.approx(0.01**2, rel=1e-6)
    pinned = glide.copy()
    pinned[:, [7, 10, 8, 11]] = pinned[:1, [7, 10, 8, 11]]
    assert foot_contact_terms(pinned).score == 0.0
    still = moving_body(fps, 3.0, (0.0, 0.0, 0.0))
    with pytest.warns(RuntimeWarning, match="never accelerates"):
        assert np.isnan(foot_contact_terms(still).score)
    assert foot_contact_terms(still, mode="corrected").score == 0.0
    with pytest.raises(DataError, match="30 fps"):
        foot_contact_terms(glide, fps=60.0)


def test_metrics_package_is_torch_free():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "import kpop_helpers.metrics as m\n"
        "x = np.random.default_rng(0).normal(size=(30, 24, 3))\n"
        "assert m.extract_kinetic_features(x).shape == (72,)\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_music_beats_from_audio(tmp_path):
    from scipy.io import wavfile

    rate, seconds, period = 22050, 8.0, 0.5  # a click every 0.5 s (120 BPM) from 0.5 s on
    audio = np.zeros(int(rate * seconds))
    click = np.sin(2 * np.pi * 1000 * np.arange(660) / rate) * np.exp(-np.arange(660) / (0.005 * rate))
    for start in np.arange(period, seconds - 0.1, period):
        audio[int(start * rate):int(start * rate) + click.size] += click
    path = tmp_path / "clicks.wav"
    wavfile.write(path, rate, (audio * 0.5 * 32767).astype(np.int16))
    if importlib.util.find_spec("librosa") is None:
        with pytest.raises(ImportError, match="pip install librosa"):
            music_beats_from_audio(path)
        return
    beats = music_beats_from_audio(path, fps=60.0)
    assert np.median(np.diff(beats)) == pytest.approx(30, abs=1)  # 0.5 s at 60 fps
    assert np.min(np.abs(beats[:, None] / 60.0 - np.arange(period, seconds, period)[None]), axis=1).max() < 0.05
