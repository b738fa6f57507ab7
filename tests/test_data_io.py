"""JSON/NPZ loaders and savers, folder loading with load_clips, and exact round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kpop_helpers.data import (DataError, LoadReport, MotionClip, load_clips, load_json, load_npz, save_json,
                               save_npz, write_bvh)
from kpop_helpers.motion.skeleton import T2M_JOINT_NAMES, T2M_PARENTS, T2M_TARGET_OFFSETS


def figure(frames: int, seed: int = 0, joints: int = 22) -> np.ndarray:
    """A moving human-sized T2M figure (float32, metres, y up) with values that are not round numbers."""
    rest = np.zeros((22, 3))
    for j, p in enumerate(T2M_PARENTS):
        rest[j] = T2M_TARGET_OFFSETS[j] + (rest[p] if p >= 0 else [0, 0.95, 0])
    if joints == 24:
        rest = np.vstack([rest, rest[20:22] + [[0.08, 0, 0], [-0.08, 0, 0]]])
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None] / 20.0
    wobble = 0.04 * np.sin(2 * np.pi * rng.random((1, joints, 3)) * t + rng.random((1, joints, 3)) * 6)
    return (rest[None] + wobble + t * np.array([0.2, 0, 0.05])).astype(np.float32)


def clips_for_round_trip() -> list[MotionClip]:
    return [
        MotionClip(figure(30, 1), 20.0, ["a powerful hip-hop dance", "hip-hop with big arms"], "hiphop"),
        MotionClip(figure(45, 2), 30.0, ["a soft turn"], None),
        MotionClip(figure(12, 3), 20.0, [], "kpop", joint_names=tuple(T2M_JOINT_NAMES)),
    ]


def assert_same_clips(loaded: list[MotionClip], original: list[MotionClip]) -> None:
    assert len(loaded) == len(original)
    for a, b in zip(loaded, original):
        assert a.positions.dtype == np.float32
        assert np.array_equal(a.positions.view(np.uint32), b.positions.view(np.uint32))  # bit for bit
        assert (a.texts, a.style, a.fps) == (b.texts, b.style, b.fps)


@pytest.mark.parametrize("saver, loader", [(save_json, load_json), (save_npz, load_npz)])
def test_exact_round_trip(tmp_path, saver, loader):
    clips = clips_for_round_trip()
    path = saver(tmp_path / f"clips.{'json' if saver is save_json else 'npz'}", clips)
    loaded = loader(path)
    assert_same_clips(loaded, clips)
    assert all(c.source == str(path) for c in loaded)


def test_npz_saved_without_pickles(tmp_path):
    save_npz(tmp_path / "c.npz", clips_for_round_trip())
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        assert archive["motions"].shape == (87, 22, 3) and archive["lengths"].tolist() == [30, 45, 12]
        assert archive["texts"].shape == (3, 2) and archive["texts"].dtype.kind == "U"
        assert archive["styles"].tolist() == ["hiphop", "", "kpop"]


def test_single_record_and_default_fps(tmp_path):
    record = {"motion": figure(15).tolist(), "text": "powerful hip-hop dance", "style": "hiphop",
              "texts": ["second caption"]}
    (tmp_path / "one.json").write_text(json.dumps(record))
    (clip,) = load_json(tmp_path / "one.json")
    assert clip.fps == 20.0 and clip.style == "hiphop"
    assert clip.texts == ["powerful hip-hop dance", "second caption"]
    assert clip.positions.shape == (15, 22, 3)


def test_smpl_24_joints_keep_the_t2m_22(tmp_path):
    motion = figure(15, joints=24)
    (tmp_path / "smpl.json").write_text(json.dumps([{"motion": motion.tolist(), "text": "wave"}]))
    (clip,) = load_json(tmp_path / "smpl.json")
    np.testing.assert_array_equal(clip.positions, motion[:, :22])


def test_unit_converts_centimetres(tmp_path):
    motion = figure(15)
    (tmp_path / "cm.json").write_text(json.dumps([{"motion": (motion.astype(np.float64) * 100).tolist(),
                                                   "text": "step"}]))
    (clip,) = load_json(tmp_path / "cm.json", unit="cm")
    np.testing.assert_allclose(clip.positions, motion, atol=1e-6)


def test_npz_layouts(tmp_path):
    a, b = figure(20, 1), figure(14, 2)
    padded = np.zeros((2, 20, 22, 3), np.float32)
    padded[0], padded[1, :14] = a, b
    texts = np.array([["jump", "a big jump"], ["spin", ""]])
    np.savez(tmp_path / "padded.npz", motions=padded, lengths=np.array([20, 14]), texts=texts,
             styles=np.array(["hiphop", "kpop"]), fps=np.float64(30))
    np.savez(tmp_path / "ragged.npz", motions=np.concatenate([a, b]), lengths=np.array([20, 14]),
             texts=np.array(["jump", "spin"]), styles=np.array(["hiphop", "kpop"]), fps=np.array([30.0, 60.0]))
    np.savez(tmp_path / "dense.npz", motions=np.stack([a, a]), texts=np.array(["jump", "again"]))
    p1, p2, dense = (load_npz(tmp_path / f) for f in ("padded.npz", "ragged.npz", "dense.npz"))
    for clips in (p1, p2):
        np.testing.assert_array_equal(clips[0].positions, a)
        np.testing.assert_array_equal(clips[1].positions, b)
        assert [c.style for c in clips] == ["hiphop", "kpop"]
    assert p1[0].texts == ["jump", "a big jump"] and p1[1].texts == ["spin"]
    assert [c.fps for c in p1] == [30.0, 30.0] and [c.fps for c in p2] == [30.0, 60.0]
    assert [c.texts for c in dense] == [["jump"], ["again"]] and dense[0].fps == 20.0 and dense[0].style is None


def test_allow_pickle_true_reads_dict_archive(tmp_path):
    data = {"motions": [figure(12, 1), figure(16, 2)], "texts": ["one", ["two", "deux"]], "styles": ["a", "b"]}
    np.savez(tmp_path / "dict.npz", data=data)
    clips = load_npz(tmp_path / "dict.npz", allow_pickle=True)
    assert [c.num_frames for c in clips] == [12, 16] and clips[1].texts == ["two", "deux"]


def test_load_clips_folder_sorted_recursive_with_bvh(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    save_json(tmp_path / "b" / "deep" / "z.json", [MotionClip(figure(20, 5), 20.0, ["z"])])
    save_npz(tmp_path / "a.npz", [MotionClip(figure(20, 6), 20.0, ["a0"]), MotionClip(figure(22, 7), 20.0, ["a1"])])
    write_bvh(tmp_path / "b" / "m.bvh", MotionClip(figure(40, 8), 40.0))
    (tmp_path / "notes.txt").write_text("ignored")
    clips, report = load_clips(tmp_path)
    assert [c.texts for c in clips] == [["a0"], ["a1"], ["z"], []]
    assert report.files == [str(tmp_path / "a.npz"), str(tmp_path / "b" / "deep" / "z.json"),
                            str(tmp_path / "b" / "m.bvh")]
    bvh_clip = next(c for c in clips if c.source.endswith("m.bvh"))
    assert bvh_clip.fps == 20.0 and bvh_clip.num_frames == 20  # read_bvh resamples 40 -> 20 fps by default
    np.testing.assert_allclose(bvh_clip.positions, figure(40, 8)[::2], atol=1e-5)
    assert report.num_clips == 4 and report.skipped == []


def test_load_clips_fps_resamples_everything(tmp_path):
    save_json(tmp_path / "c.json", [MotionClip(figure(41, 1), 40.0, ["x"])])
    write_bvh(tmp_path / "m.bvh", MotionClip(figure(31, 2), 30.0))
    clips, _ = load_clips(tmp_path, fps=10)
    assert [(c.fps, c.num_frames) for c in clips] == [(10.0, 11), (10.0, 11)]
    np.testing.assert_allclose(clips[0].positions, figure(41, 1)[::4], atol=1e-6)


def test_load_clips_skip_reports_each_bad_file_and_record(tmp_path):
    good = figure(20).tolist()
    records = [{"motion": good, "text": "ok"}, {"motion": good, "text": ""}, {"motion": good, "text": "ok too"}]
    (tmp_path / "a.json").write_text(json.dumps(records))
    (tmp_path / "b.json").write_text('[{"motion": [[[0, 1')
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 truncated")
    clips, report = load_clips(tmp_path, on_error="skip")
    assert [c.text for c in clips] == ["ok", "ok too"]
    skipped = [(s.file.split("/")[-1], s.record) for s in report.skipped]
    assert skipped == [("a.json", 1), ("b.json", None), ("c.npz", None)]
    assert "field 'text'" in report.skipped[0].reason and "3 skipped" in report.summary()
    with pytest.raises(DataError, match="record 1"):
        load_clips(tmp_path, on_error="raise")


def test_load_json_skip_fills_a_given_report(tmp_path):
    good = figure(20).tolist()
    (tmp_path / "a.json").write_text(json.dumps([{"motion": good, "style": 7}, {"motion": good}]))
    report = LoadReport()
    clips = load_json(tmp_path / "a.json", on_error="skip", report=report)
    assert len(clips) == 1 and report.skipped[0].record == 0


def test_saves_are_atomic_and_leave_old_file_on_error(tmp_path):
    path = save_json(tmp_path / "c.json", clips_for_round_trip()[:1])
    before = path.read_bytes()
    bad = MotionClip(figure(20), 20.0, ["nan"])
    bad.positions[3, 4, 1] = np.nan
    with pytest.raises(DataError, match="record 1"):
        save_json(path, [clips_for_round_trip()[0], bad])
    assert path.read_bytes() == before
    save_npz(tmp_path / "c.npz", clips_for_round_trip())
    save_npz(tmp_path / "c.npz", clips_for_round_trip()[:2])  # overwrite
    assert len(load_npz(tmp_path / "c.npz")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.npz"]  # no temp files left


def test_save_npz_needs_one_joint_count(tmp_path):
    with pytest.raises(DataError, match="joint counts"):
        save_npz(tmp_path / "x.npz", [MotionClip(figure(12), 20.0), MotionClip(figure(12, joints=24), 20.0)])


def test_on_error_must_be_known(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        load_clips(tmp_path, on_error="ignore")
