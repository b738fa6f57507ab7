"""Every kind of bad input, written as a real file, raises DataError naming the file, record and field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kpop_helpers.data import DataError, MotionClip, load_clips, load_json, load_npz, read_bvh, save_npz, write_bvh
from kpop_helpers.data.validate import validate_clip
from kpop_helpers.motion.skeleton import T2M_PARENTS, T2M_TARGET_OFFSETS


def figure(frames: int = 20, joints: int = 22) -> np.ndarray:
    """A standing human-sized figure that drifts forward (metres, y up)."""
    rest = np.zeros((22, 3))
    for j, p in enumerate(T2M_PARENTS):
        rest[j] = T2M_TARGET_OFFSETS[j] + (rest[p] if p >= 0 else [0, 0.95, 0])
    motion = rest[None] + np.arange(frames)[:, None, None] * np.array([0.01, 0, 0.02])
    return motion[:, :joints].astype(np.float32)


def good_record(**extra) -> dict:
    return {"motion": figure().tolist(), "text": "a powerful hip-hop dance", "style": "hiphop", **extra}


def write_json(tmp_path, records, name="clips.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def check(exc: pytest.ExceptionInfo, path, record=None, field=None, *fragments: str) -> str:
    """The message names the file, the record and the field, plus any expected fragments."""
    message = str(exc.value)
    assert isinstance(exc.value, ValueError)
    assert str(path) in message, message
    if record is not None:
        assert f"record {record}" in message, message
        assert exc.value.record == record
    if field is not None:
        assert f"field '{field}'" in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("name", ["gone.json", "gone.npz", "gone.bvh"])
def test_missing_file(tmp_path, name):
    path = tmp_path / name
    loader = {"json": load_json, "npz": load_npz, "bvh": read_bvh}[name.split(".")[1]]
    with pytest.raises(DataError) as exc:
        loader(path)
    check(exc, path, None, None, "file not found")
    with pytest.raises(DataError) as exc:
        load_clips(path)
    check(exc, path, None, None, "not found")


def test_truncated_json(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps([good_record(), good_record()])[:5000])
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, None, None, "unreadable JSON", "line 1, column", "truncated")


def test_truncated_npz(tmp_path):
    path = save_npz(tmp_path / "cut.npz", [MotionClip(figure(), 20.0, ["x"])])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as exc:
        load_npz(path)
    check(exc, path, None, None, "truncated")


def test_corrupt_npz_member_names_the_array(tmp_path):
    path = save_npz(tmp_path / "bad.npz", [MotionClip(figure(), 20.0, ["x"])])
    data = bytearray(path.read_bytes())
    start = data.index(b"motions.npy") + 200  # inside the stored (uncompressed) motions array
    data[start:start + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as exc:
        load_npz(path)
    check(exc, path, None, "motions", "corrupt")


@pytest.mark.parametrize("cut_at, field, fragment", [
    ("JOINT left_knee", "HIERARCHY", "file ends inside HIERARCHY"),
    ("Frames:", "MOTION", "MOTION must be followed by"),
    ("LAST_ROW_HALF", "MOTION", "truncated BVH"),
])
def test_truncated_bvh(tmp_path, cut_at, field, fragment):
    full = write_bvh(tmp_path / "full.bvh", MotionClip(figure(), 20.0)).read_text()
    cut = len(full) - 300 if cut_at == "LAST_ROW_HALF" else full.index(cut_at)
    path = tmp_path / "cut.bvh"
    path.write_text(full[:cut])
    with pytest.raises(DataError) as exc:
        read_bvh(path)
    message = check(exc, path, None, field, fragment)
    if field == "MOTION":
        assert "header says 20 frames" in message or "Frames: N" in message


def test_bvh_non_numeric_motion_and_bad_channel(tmp_path):
    text = write_bvh(tmp_path / "ok.bvh", MotionClip(figure(), 20.0)).read_text()
    rows = text.split("Frame Time: 0.05\n")
    bad_values = rows[0] + "Frame Time: 0.05\n" + rows[1].replace(" ", " abc ", 1)
    (tmp_path / "nn.bvh").write_text(bad_values)
    with pytest.raises(DataError) as exc:
        read_bvh(tmp_path / "nn.bvh")
    line = bad_values[:bad_values.index("abc")].count("\n") + 1
    check(exc, tmp_path / "nn.bvh", None, "MOTION", f"line {line}", "'abc' is not a number")
    (tmp_path / "ch.bvh").write_text(text.replace("Zrotation", "Qrotation", 1))
    with pytest.raises(DataError) as exc:
        read_bvh(tmp_path / "ch.bvh")
    check(exc, tmp_path / "ch.bvh", None, "HIERARCHY", "unknown channel 'Qrotation'", "line 5")


def test_wrong_rank(tmp_path):
    flat = figure().reshape(20, 66).tolist()
    path = write_json(tmp_path, [good_record(), good_record(motion=flat)])
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, 1, "motion", "rank 2", "[frames, joints, 3]")
    np.savez(tmp_path / "r.npz", motions=figure().reshape(20, 66), texts=np.array(["x"]))
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "r.npz")
    check(exc, tmp_path / "r.npz", None, "motions", "rank 2", "[N, F, J, 3]")


def test_wrong_last_dimension(tmp_path):
    np.savez(tmp_path / "d.npz", motions=np.stack([figure(), figure()])[..., :2], texts=np.array(["a", "b"]))
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "d.npz")
    check(exc, tmp_path / "d.npz", 0, "motions", "(20, 22, 2)", "x, y, z last")


def test_wrong_joint_count_without_mapping(tmp_path):
    path = write_json(tmp_path, [good_record(motion=figure(joints=21).tolist())])
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, 0, "motion", "21 joints", "expected 22 joints", "joint_map")
    # A BVH read without a joint map keeps its own joints, which load_clips then refuses.
    write_bvh(tmp_path / "x.bvh", MotionClip(figure()[:, :5], 20.0), parents=[-1, 0, 1, 2, 3])
    with pytest.raises(DataError) as exc:
        load_clips(tmp_path / "x.bvh", joint_map=None)
    check(exc, tmp_path / "x.bvh", None, "motion", "5 joints")


@pytest.mark.parametrize("bad, word", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_nan_and_inf(tmp_path, bad, word):
    motion = figure()
    motion[3, 5, 1] = bad
    path = tmp_path / "nan.json"
    path.write_text(json.dumps([good_record(), good_record(motion=motion.tolist())]))  # json writes NaN/Infinity
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, 1, "motion", "frame 3, joint 5, coordinate y", word, "finite")
    np.savez(tmp_path / "nan.npz", motions=np.stack([figure(), motion]), texts=np.array(["a", "b"]))
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "nan.npz")
    check(exc, tmp_path / "nan.npz", 1, "motions", "frame 3, joint 5")


def test_too_few_frames(tmp_path):
    path = write_json(tmp_path, [good_record(motion=figure(5).tolist())])
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, 0, "motion", "5 frames", "at least 10", "min_frames")
    assert load_json(path, min_frames=2)[0].num_frames == 5


def test_ragged_frames(tmp_path):
    motion = figure().tolist()
    motion[4] = motion[4][:21]
    path = write_json(tmp_path, [good_record(motion=motion)])
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, 0, "motion", "ragged frames", "frame 4 has 21 joints but frame 0 has 22")


@pytest.mark.parametrize("value, shown", [("abc", "'abc'"), (None, "None"), (True, "True")])
def test_non_numeric_values(tmp_path, value, shown):
    motion = figure().tolist()
    motion[2][1][1] = value
    path = write_json(tmp_path, [good_record(), good_record(motion=motion)])
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, 1, "motion", f"non-numeric value {shown} at frame 2, joint 1, coordinate y")


def test_non_numeric_npz_motions(tmp_path):
    np.savez(tmp_path / "s.npz", motions=figure()[None].astype(str), texts=np.array(["a"]))
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "s.npz")
    check(exc, tmp_path / "s.npz", None, "motions", "non-numeric")


@pytest.mark.parametrize("extra, field, fragment", [
    ({"text": ""}, "text", "is empty"),
    ({"text": "   "}, "text", "is empty"),
    ({"text": 42}, "text", "is a int"),
    ({"texts": ["fine", 3]}, "texts[1]", "is a int"),
    ({"texts": "not a list"}, "texts", "is a str"),
])
def test_empty_or_non_string_text(tmp_path, extra, field, fragment):
    path = write_json(tmp_path, [good_record(), good_record(), good_record(**extra)])
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, 2, field, fragment, "non-empty string")


def test_npz_bad_texts(tmp_path):
    np.savez(tmp_path / "t.npz", motions=np.stack([figure(), figure()]), texts=np.array(["ok", "  "]))
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "t.npz")
    check(exc, tmp_path / "t.npz", 1, "texts[0]", "is empty")
    np.savez(tmp_path / "n.npz", motions=np.stack([figure(), figure()]), texts=np.array([1.0, 2.0]))
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "n.npz")
    check(exc, tmp_path / "n.npz", None, "texts", "unicode strings [2]")


def test_style_not_a_string(tmp_path):
    path = write_json(tmp_path, [good_record(style=["hiphop"])])
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, 0, "style", "unknown style type list")
    np.savez(tmp_path / "s.npz", motions=np.stack([figure()]), texts=np.array(["a"]), styles=np.array([3]))
    with pytest.raises(DataError) as exc:
        load_npz(tmp_path / "s.npz")
    check(exc, tmp_path / "s.npz", 0, "styles", "unknown style type int")


def test_bad_fps(tmp_path):
    path = write_json(tmp_path, [good_record(fps=-20)])
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, 0, "fps", "positive number")


@pytest.mark.parametrize("factor, unit_word", [(100.0, "centimetres (unit='cm'"), (1000.0, "millimetres (unit='mm'")])
def test_absurd_scale_suggests_unit(tmp_path, factor, unit_word):
    big = (figure().astype(np.float64) * factor).tolist()
    path = write_json(tmp_path, [good_record(motion=big)])
    with pytest.raises(DataError) as exc:
        load_json(path)
    check(exc, path, 0, "motion", "absurd scale", unit_word, "unit=")
    assert load_json(path, unit="cm" if factor == 100 else "mm")[0].positions.max() < 3


def test_absurd_scale_tiny_and_bvh_unit(tmp_path):
    path = write_json(tmp_path, [good_record()])
    with pytest.raises(DataError) as exc:
        load_json(path, unit="cm")  # metres declared as centimetres
    check(exc, path, 0, "motion", "too small", "unit=")
    cm_clip = MotionClip(figure() * 100, 20.0)
    bvh = write_bvh(tmp_path / "cm.bvh", cm_clip)
    with pytest.raises(DataError) as exc:
        read_bvh(bvh, unit="m")
    check(exc, bvh, None, "motion", "centimetres (unit='cm'")
    assert read_bvh(bvh).positions.max() < 3  # unit="auto" picks centimetres


def test_pickled_npz_refused_with_advice(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, data={"motions": [figure()], "texts": ["a"]})
    with pytest.raises(DataError) as exc:
        load_npz(path)
    check(exc, path, None, "data", "pickled Python objects", "allow_pickle=True", "lengths", "dtype=str")
    with pytest.raises(DataError):
        load_clips(path)
    assert len(load_npz(path, allow_pickle=True)) == 1


def test_validate_clip_directly_names_record():
    clip = MotionClip(figure(), 20.0, ["ok"], style=5, source="memory.json")
    with pytest.raises(DataError) as exc:
        validate_clip(clip, record=7)
    check(exc, "memory.json", 7, "style")
