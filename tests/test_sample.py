"""The synthetic K-pop sample set: determinism, labels, physical plausibility, beat sync and style contrast."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from kpop_helpers.data.clip import DataError
from kpop_helpers.data.io import load_npz
from kpop_helpers.data.sample import (
    ENERGY_WORDS,
    MOVE_PHRASES,
    STYLES,
    build_sample_dataset,
    generate_sample_clips,
    generate_sample_records,
    main,
    stratified_split,
)
from kpop_helpers.motion.features import features_to_joints, joints_to_features
from kpop_helpers.motion.quality import bone_length_drift, floor_penetration, foot_skating_ratio
from kpop_helpers.motion.skeleton import FOOT_JOINTS, T2M_TARGET_OFFSETS, bone_lengths

NUM_CLIPS = 120
BODY_PARTS = re.compile(r"\b(arms?|hands?|knees?|legs?|feet|foot|hips?|chest|head|shoulders?|torso|spine|body|"
                        r"fists?|cheeks?|waist)\b")
REQUIRED_STYLES = ("hiphop_groove", "girl_crush", "cute_aegyo", "boygroup_power", "house_footwork", "ballad_lyrical")


@pytest.fixture(scope="module")
def records():
    return generate_sample_records(NUM_CLIPS, seed=0)


def test_same_seed_gives_identical_clips_and_another_seed_does_not():
    first, again, other = (generate_sample_clips(8, seed=s) for s in (5, 5, 6))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert (a.texts, a.style, a.source) == (b.texts, b.style, b.source)
    assert all(a.positions.shape != c.positions.shape or not np.array_equal(a.positions, c.positions)
               for a, c in zip(first, other))


def test_a_clip_does_not_depend_on_how_many_are_generated():
    few, many = generate_sample_clips(4, seed=2), generate_sample_clips(9, seed=2)
    for a, b in zip(few, many):
        np.testing.assert_array_equal(a.positions, b.positions)


def test_every_required_style_is_registered_and_generated(records):
    assert len(STYLES) >= 6 and set(REQUIRED_STYLES) <= set(STYLES)
    counts = {s: sum(r.clip.style == s for r in records) for s in STYLES}
    assert min(counts.values()) >= NUM_CLIPS // len(STYLES)
    for spec in STYLES.values():
        assert spec.bpm[0] < spec.bpm[1] and spec.moves and spec.names and spec.manner


def test_clips_are_2_to_10_seconds_of_t2m_joints_at_20_fps(records):
    for r in records:
        clip = r.clip
        assert clip.fps == 20.0 and 2.0 <= clip.duration <= 10.0
        assert clip.positions.dtype == np.float32 and clip.positions.shape[1:] == (22, 3)
        assert clip.source == f"synthetic:{clip.style}:{r.index}"
        assert STYLES[clip.style].bpm[0] <= r.bpm <= STYLES[clip.style].bpm[1]


def test_captions_name_style_energy_and_body_parts_in_several_phrasings(records):
    for r in records:
        texts = r.clip.texts
        assert len(texts) >= 3 and len(set(texts)) == len(texts) and all(t.strip() for t in texts)
        for text in texts:
            lower = text.lower()
            assert any(name.lower() in lower for name in STYLES[r.clip.style].names), text
            assert any(word in lower for word in ENERGY_WORDS[r.energy]), text
            assert BODY_PARTS.search(lower), text
    all_texts = [t for r in records for t in r.clip.texts]
    assert len(set(all_texts)) >= 0.95 * len(all_texts)
    assert all(BODY_PARTS.search(p) for phrases in MOVE_PHRASES.values() for p in phrases)


def test_bones_keep_the_humanml3d_target_lengths(records):
    target = np.linalg.norm(T2M_TARGET_OFFSETS, axis=-1)
    for r in records:
        assert bone_length_drift(r.clip.positions) < 1e-4
        np.testing.assert_allclose(bone_lengths(r.clip.positions.astype(np.float64))[:, 1:],
                                   np.broadcast_to(target[1:], (r.clip.num_frames, 21)), atol=2e-5)


def test_feet_touch_the_floor_and_nothing_sinks_through_it(records):
    for r in records:
        joints = r.clip.positions
        assert floor_penetration(joints) < 1e-4
        feet_y = joints[:, list(FOOT_JOINTS), 1]
        assert abs(float(feet_y.min())) < 1e-4
        assert (feet_y.min(axis=1) < 0.01).mean() >= 0.5  # a foot is on the floor most of the time


def test_supporting_feet_stay_pinned_and_skating_is_below_the_measured_bound(records):
    ratios = [foot_skating_ratio(r.clip.positions, r.clip.fps) for r in records]
    # Measured on seed 0: 0.0 for every clip (GMD definition). The bound leaves room for numeric noise only.
    assert max(ratios) <= 0.01
    for r in records:
        for side, toe in enumerate((10, 11)):
            planted = r.contacts[1:, side] & r.contacts[:-1, side]
            step = np.linalg.norm(np.diff(r.clip.positions[:, toe][:, [0, 2]], axis=0), axis=-1)
            assert (step[planted] < 1e-5).all()
            assert np.abs(r.clip.positions[r.contacts[:, side], toe, 1]).max(initial=0.0) < 1e-4


def test_the_dancer_actually_moves(records):
    for r in records:
        speed = np.linalg.norm(np.diff(r.clip.positions, axis=0), axis=-1) * r.clip.fps
        assert speed.mean() > 0.08  # m/s over all joints; measured minimum 0.13
        assert r.clip.positions[:, 0, 1].std() > 0.004  # the pelvis bounces


def _dominant_frequency(signal: np.ndarray, fps: float) -> float:
    t = np.arange(signal.size)
    detrended = signal - np.polyval(np.polyfit(t, signal, 1), t)
    n = 8 * signal.size  # zero padding only interpolates the spectrum; resolution stays fps / T
    spectrum = np.abs(np.fft.rfft(detrended * np.hanning(signal.size), n=n))
    freqs = np.fft.rfftfreq(n, 1.0 / fps)
    spectrum[freqs < 0.5] = 0.0
    return float(freqs[np.argmax(spectrum)])


def _beat_locked_share(records, tempo_scale: float = 1.0) -> float:
    hits = []
    for r in records:
        beat_hz = r.bpm / 60.0 * tempo_scale
        peak = _dominant_frequency(r.clip.positions[:, 0, 1].astype(np.float64), r.clip.fps)
        multiple = max(1, round(peak / beat_hz))
        hits.append(abs(peak - multiple * beat_hz) <= max(1.0 / r.clip.duration, 0.1 * beat_hz))
    return float(np.mean(hits))


def test_pelvis_bounce_is_locked_to_the_beat(records):
    # Measured on seed 0: 118 of 120 clips peak at BPM/60 or a multiple (the two others at a bar-level rate).
    assert _beat_locked_share(records) >= 0.9
    # The check discriminates: against a wrong tempo most clips fail it.
    assert _beat_locked_share(records, tempo_scale=1.37) < 0.5


def _style_features(joints: np.ndarray, fps: float) -> np.ndarray:
    rel = joints - joints[:, :1]
    arms = np.linalg.norm(np.diff(rel[:, [18, 19, 20, 21]], axis=0), axis=-1).mean() * fps
    legs = np.linalg.norm(np.diff(joints[:, list(FOOT_JOINTS)], axis=0), axis=-1).mean() * fps
    jerk = np.linalg.norm(np.diff(joints, n=3, axis=0), axis=-1).mean() * fps**3
    return np.array([arms, legs, arms / (legs + 0.05), joints[:, 0, 1].mean(), rel[:, [20, 21], 1].mean(),
                     np.log(jerk)])


def test_styles_differ_measurably(records):
    feats = np.array([_style_features(r.clip.positions.astype(np.float64), r.clip.fps) for r in records])
    labels = np.array([r.clip.style for r in records])
    mean = {s: feats[labels == s].mean(axis=0) for s in STYLES}
    arms, legs, ratio, level, wrist_height, log_jerk = range(6)
    # Measured on seed 0 (per-style means): house has the busiest feet (0.46 m/s vs <= 0.33), boy-group the
    # busiest arms (1.13 m/s), girl-crush the most arm-led (arm/leg ratio 5.2 vs house 1.4), ballad the
    # smoothest (lowest jerk) with raised arms, hip-hop and boy-group ride lowest (pelvis 0.81-0.82 m).
    assert mean["house_footwork"][legs] == max(m[legs] for m in mean.values())
    assert mean["boygroup_power"][arms] == max(m[arms] for m in mean.values())
    assert mean["girl_crush"][ratio] > 2.5 * mean["house_footwork"][ratio]
    assert mean["ballad_lyrical"][ratio] > 1.5 * mean["house_footwork"][ratio]
    assert mean["ballad_lyrical"][wrist_height] > mean["house_footwork"][wrist_height] + 0.1
    assert mean["ballad_lyrical"][log_jerk] == min(m[log_jerk] for m in mean.values())
    assert mean["boygroup_power"][log_jerk] == max(m[log_jerk] for m in mean.values())
    assert max(mean["hiphop_groove"][level], mean["boygroup_power"][level]) < mean["cute_aegyo"][level] - 0.04
    # Leave-one-out nearest centroid on these six numbers: measured 0.925 on seed 0 (chance 1/6).
    z = (feats - feats.mean(axis=0)) / feats.std(axis=0)
    correct = 0
    for i in range(len(z)):
        others = np.arange(len(z)) != i
        centroids = {s: z[others & (labels == s)].mean(axis=0) for s in STYLES}
        correct += min(centroids, key=lambda s: np.linalg.norm(z[i] - centroids[s])) == labels[i]
    assert correct / len(z) >= 0.8


def test_clips_are_canonical_humanml3d_motions(records):
    # Facing +z at frame 0, root at the origin, floor at y = 0, target skeleton: the 263-d round trip is exact.
    for r in records[:6]:
        back = features_to_joints(joints_to_features(r.clip.positions))
        np.testing.assert_allclose(back, r.clip.positions[:-1], atol=1e-4)


def test_stratified_split_is_deterministic_and_per_style():
    styles = ["a"] * 20 + ["b"] * 7 + ["c"] * 1
    split = stratified_split(styles, 0.15, seed=3)
    assert split == stratified_split(styles, 0.15, seed=3)
    assert split != stratified_split(styles, 0.15, seed=4)
    val = {s: sum(p == "val" for p, x in zip(split, styles) if x == s) for s in "abc"}
    assert val == {"a": 3, "b": 1, "c": 0}
    assert stratified_split(styles, 0.0, seed=3) == ["train"] * len(styles)
    with pytest.raises(DataError, match="val_fraction"):
        stratified_split(styles, 1.0, seed=0)


def test_build_writes_labelled_synthetic_files(tmp_path, records):
    start = time.perf_counter()
    summary = build_sample_dataset(tmp_path / "set", num_clips=NUM_CLIPS, seed=0, progress=False)
    assert time.perf_counter() - start < 15.0  # the budget on this machine; measured about 1-2 s
    meta = json.loads((tmp_path / "set" / "metadata.json").read_text())
    assert meta["synthetic"] is True and "SYNTHETIC" in meta["note"] and summary["synthetic"] is True
    assert meta["seed"] == 0 and meta["generator_version"] and len(meta["clips"]) == NUM_CLIPS
    assert (meta["num_train"], meta["num_val"]) == (102, 18)
    assert all(info["val"] == 3 for info in meta["styles"].values())  # 15 % of 20 clips per style
    train, val = load_npz(tmp_path / "set" / "train.npz"), load_npz(tmp_path / "set" / "val.npz")
    assert (len(train), len(val)) == (102, 18)
    by_text = {tuple(r.clip.texts): r for r in records}  # captions identify a clip: the NPZ has no source field
    assert len(by_text) == NUM_CLIPS
    for clip in train + val:
        original = by_text[tuple(clip.texts)]
        np.testing.assert_array_equal(clip.positions, original.clip.positions)
        assert clip.style == original.clip.style
    for entry, r in zip(meta["clips"], records):
        assert (entry["source"], entry["bpm"], entry["frames"]) == (r.clip.source, r.bpm, r.clip.num_frames)
        assert entry["quality"]["foot_skating_ratio"] <= 0.01


def test_cli_builds_and_prints_a_synthetic_summary(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "cli"), "--num-clips", "12", "--seed", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "NOT motion capture" in out
    for style in STYLES:
        assert re.search(rf"^{style}\s+\d+-\d+\s+\d+\s+\d+", out, flags=re.M), style
    assert {p.name for p in (tmp_path / "cli").iterdir()} == {"train.npz", "val.npz", "metadata.json"}


def test_module_entry_point_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kpop_helpers.data.sample", "--out", str(tmp_path / "m"),
                             "--num-clips", "6", "--no-progress"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC" in result.stdout


@pytest.mark.parametrize("kwargs, field", [
    ({"styles": ["tango"]}, "styles"),
    ({"styles": []}, "styles"),
    ({"seed": -1}, "seed"),
    ({"num_clips": 0}, "num_clips"),
])
def test_bad_arguments_raise_data_error(kwargs, field):
    with pytest.raises(DataError, match=field):
        generate_sample_clips(**{"num_clips": 2, **kwargs})
