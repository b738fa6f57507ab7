"""Bring your own mocap: any humanoid BVH by its bone names, captions beside the files, no silent empty loads.

tests/data/rigs/ holds one small hand-made BVH per naming convention, all the same 1.71 m person (T-pose
rest, metres: pelvis 0.97 m up, hips +-0.09 m, knees 0.49 m, ankles 0.08 m, toes 0.02 m and 0.13 m forward,
upper arms at +-0.18 m and 1.42 m, head base 1.57 m; left is +x, forward +z), in each tool's unit and up
axis, walking forward for 24 frames at 30 fps while turning, twisting the spine and lowering the arms; the
legs do not bend, so the feet stay on the floor. Expected positions below come from that construction.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import real_motion_dir
from kpop_helpers.data import (DataError, Lerp, LoadReport, MotionClip, load_clips, load_json, load_npz, parse_bvh,
                               read_bvh, save_npz)
from kpop_helpers.data.bvh import forward_kinematics
from kpop_helpers.data.captions import parse_caption_line, read_index
from kpop_helpers.data.report import DataWarning, standing_height
from kpop_helpers.data.rig_names import infer_joint_map, label_bone, shared_prefix
from kpop_helpers.motion.skeleton import T2M_JOINT_NAMES

RIGS = Path(__file__).parent / "data" / "rigs"
J = {name: i for i, name in enumerate(T2M_JOINT_NAMES)}

# file -> (map chosen, T2M joints placed by interpolation)
CONVENTIONS = {
    "rokoko": ("inferred", ()),
    "xsens_mvn": ("inferred", ()),  # Hips, Chest..Chest4, RightCollar, RightShoulder, RightElbow, RightHip, ...
    "xsens_segments": ("inferred", ()),  # Pelvis, L5, L3, T12, T8, RightUpperArm, RightUpperLeg, ...
    "perception_neuron": ("inferred", ()),  # no toe bones: the foot's End Site; fingers left out
    "vicon": ("inferred", ()),  # LFemur, LTibia, LHumerus, LRadius, LWrist, ... in millimetres
    "optitrack": ("inferred", ("spine2",)),  # Dancer1_Hip, Ab, Chest, LUArm, LFArm, ... in metres
    "mixamo": ("mixamo", ()),  # the shipped map
    "unreal": ("inferred", ()),  # root, pelvis, spine_01, thigh_l, calf_l, ball_l, twist and IK bones; z up, cm
    "blender": ("inferred", ("spine2",)),  # hips, spine, chest, thigh.L, upper_arm.L; z up, metres
    "biped": ("inferred", ("spine2",)),  # Bip01 L Thigh, clavicles on the neck, thighs on Bip01 Spine
    "cmu_3dsmax": ("inferred", ("spine2",)),  # LHipJoint, LeftHip, LeftKnee, LeftAnkle, LeftToe; CMU units
    "cmu_plain": ("inferred", ()),  # CMU names without LHipJoint and Neck1
    "one_spine": ("inferred", ("spine1", "spine2", "left_collar", "right_collar")),
    "smpl": ("inferred", ()),  # SMPL names (AIST++ conversions): L_Hip, L_Ankle -> L_Foot (the toe), L_Collar
}
REST = {"pelvis": (0, 0.97, 0), "head": (0, 1.57, 0), "left_hip": (0.09, 0.91, 0), "right_hip": (-0.09, 0.91, 0),
        "left_knee": (0.09, 0.49, 0.01), "left_ankle": (0.09, 0.08, 0), "right_ankle": (-0.09, 0.08, 0),
        "left_shoulder": (0.18, 1.42, 0), "right_shoulder": (-0.18, 1.42, 0)}


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_each_naming_convention_loads_as_a_plausible_person(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # person-sized: no unit warning
        clip = read_bvh(RIGS / f"{name}.bvh")
    rig, interpolated = CONVENTIONS[name]
    assert clip.rig == (f"{rig} (interpolated: {', '.join(interpolated)})" if interpolated else rig)
    assert clip.positions.shape == (16, 22, 3) and clip.fps == 20.0 and clip.joint_names == T2M_JOINT_NAMES
    p = clip.positions.astype(np.float64)
    for joint, where in REST.items():  # frame 0: no turn yet, and these joints do not move with the arms
        np.testing.assert_allclose(p[0, J[joint]], where, atol=2e-3, err_msg=f"{name} {joint}")
    toe = (0.09, 0.02, 0.15 if name == "perception_neuron" else 0.13)
    np.testing.assert_allclose(p[0, J["left_foot"]], toe, atol=2e-3, err_msg=name)
    assert standing_height(p) == pytest.approx(1.55, abs=0.01)
    y = p[..., 1]
    assert np.all(np.abs(y[:, [J["left_foot"], J["right_foot"]]] - 0.02) < 2e-3)  # both feet on the floor
    chain = ["head", "neck", "spine3", "spine2", "spine1", "pelvis", "left_knee", "left_ankle"]
    assert all(np.all(y[:, J[a]] > y[:, J[b]]) for a, b in zip(chain, chain[1:])), name
    # Left is the performer's left: the toes point along cross(left_hip - right_hip, up) ...
    lateral = p[:, J["left_hip"]] - p[:, J["right_hip"]]
    forward = np.cross(lateral, [0.0, 1.0, 0.0])
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    for side in ("left", "right"):
        assert np.all(((p[:, J[f"{side}_foot"]] - p[:, J[f"{side}_ankle"]]) * forward).sum(-1) > 0.1)
    # ... and the arms agree with the legs.
    assert np.all(((p[:, J["left_shoulder"]] - p[:, J["right_shoulder"]]) * lateral).sum(-1) > 0)
    thigh = np.linalg.norm(p[:, J["left_knee"]] - p[:, J["left_hip"]], axis=-1)
    assert np.allclose(thigh, np.hypot(0.42, 0.01), atol=2e-3)
    # The person walks forward (+z, +x in the file's own axes) whatever the file's up axis and unit.
    assert p[-1, J["pelvis"], 2] - p[0, J["pelvis"], 2] == pytest.approx(0.015 * 22.5, abs=2e-3)  # at 0.75 s


def test_interpolated_joints_lie_on_their_chain():
    clip = read_bvh(RIGS / "one_spine.bvh")
    p = clip.positions[0].astype(np.float64)
    # One spine bone at 1.38 m: spine1/spine2 at T2M's fractions 0.40 and 0.83 of hips -> spine.
    np.testing.assert_allclose(p[J["spine1"]], (0, 0.97 + 0.40 * 0.41, 0), atol=2e-3)
    np.testing.assert_allclose(p[J["spine2"]], (0, 0.97 + 0.83 * 0.41, 0), atol=2e-3)
    np.testing.assert_allclose(p[J["spine3"]], (0, 1.38, 0), atol=2e-3)
    # No clavicle: the collar is midway along spine -> upper arm.
    np.testing.assert_allclose(p[J["left_collar"]], (0.09, 1.40, 0), atol=2e-3)
    cmu = read_bvh(RIGS / "cmu_3dsmax.bvh").positions[0].astype(np.float64)
    # LeftCollar starts on the mid-line (zero offset): the T2M collar is midway along it; Neck has zero
    # length, so the T2M neck is Neck1.
    np.testing.assert_allclose(cmu[J["left_collar"]], (0.09, (1.33 + 1.42) / 2, 0), atol=2e-3)
    np.testing.assert_allclose(cmu[J["neck"]], (0, 1.47, 0), atol=2e-3)


@pytest.mark.parametrize("name, fragments", [
    ("quadruped", ["left_wrist", "no bone named like a hand or wrist on the left", "LeftHindPaw"]),
    ("camera", ["none of the 22 T2M joints", "no bone is named like a body part", "CameraAim"]),
])
def test_non_humanoids_are_refused_with_the_clear_error(name, fragments):
    path = RIGS / f"{name}.bvh"
    with pytest.raises(DataError) as info:
        read_bvh(path)
    message = str(info.value)
    assert str(path) in message and "field 'joint_map'" in message and "unknown rig" in message
    assert "joint_map={" in message
    for fragment in fragments:
        assert fragment in message, message
    # The file's own joints still load.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # a 0.75 m dog or a camera: not person-sized
        assert read_bvh(path, joint_map=None, check_scale=False).rig is None


def test_a_mirrored_file_is_refused(tmp_path):
    text = (RIGS / "rokoko.bvh").read_text()
    swapped = text.replace("Left", "@").replace("Right", "Left").replace("@", "Right")
    (tmp_path / "mirrored.bvh").write_text(swapped)
    with pytest.raises(DataError, match="left and right look swapped"):
        read_bvh(tmp_path / "mirrored.bvh")


@pytest.mark.parametrize("name, side, part", [
    ("mixamorig:LeftUpLeg", "left", "thigh"), ("mixamorig1:RightForeArm", "right", "forearm"),
    ("thigh_l", "left", "thigh"), ("calf_r", "right", "shin"), ("ball_l", "left", "toe"),
    ("upperarm_twist_01_l", "left", None), ("ik_foot_l", "left", None), ("spine_03", None, "spine"),
    ("upper_arm.L", "left", "upperarm"), ("shin.R", "right", "shin"), ("DEF-forearm.L", "left", "forearm"),
    ("Bip01 L Thigh", "left", "thigh"), ("Bip01 R Toe0", "right", "toe"), ("Bip01 L Finger0", "left", None),
    ("LHipJoint", "left", "thigh"), ("LeftAnkle", "left", "foot"), ("RightCollar", "right", "collar"),
    ("LUArm", "left", "upperarm"), ("RFArm", "right", "forearm"), ("L5", None, "spine"), ("T8", None, "spine"),
    ("lThigh", "left", "thigh"), ("rShldr", "right", "shoulder"), ("lfemur", "left", "thigh"),
    ("LeftHandThumb1", "left", None), ("RightInHandIndex", "right", None), ("HeadTop_End", None, None),
    ("Lft_Wrist", "left", "hand"), ("Rt_Knee", "right", "shin"), ("LowerBack", None, "spine"),
    ("Hips", None, "pelvis"), ("Armature|pelvis", None, "pelvis"), ("Neck1", None, "neck"), ("Ab", None, "spine"),
    ("LEFT_LEG", "left", "shin"), ("Tail1", None, None), ("LeftFrontPaw", "left", None),
    ("L_Collar", "left", "collar"), ("R_Foot", "right", "foot"), ("Spine3", None, "spine"),
])
def test_bone_names_are_read(name, side, part):
    label = label_bone(name)
    assert (label.side, label.part) == (side, part)


def test_a_prefix_shared_by_every_bone_is_ignored():
    assert shared_prefix(["Bip01", "Bip01 Pelvis", "Bip01 L Thigh", "Bip01 L Thigh/End"]) == "Bip01 "
    assert shared_prefix(["Dancer1_Hip", "Dancer1_LThigh", "Dancer1_Ab"]) == "Dancer1_"
    assert shared_prefix(["Hips", "Spine", "Spine1"]) == ""
    assert label_bone("Dancer1_LShin", "Dancer1_") == label_bone("LShin")


def test_real_files_keep_their_shipped_maps():
    folder = real_motion_dir()
    assert read_bvh(folder / "cmu_mb" / "01_01.bvh", target_fps=5.0, start_frame=1).rig == "cmu"
    assert read_bvh(folder / "cmu_salsa_daz" / "60_10_scaled.bvh", target_fps=5.0, source_fps=60).rig == "daz"


def test_load_clips_reports_the_map_of_each_file(tmp_path):
    for name in ("mixamo", "one_spine", "quadruped"):
        shutil.copy(RIGS / f"{name}.bvh", tmp_path)
    with pytest.warns(DataWarning, match="none of the 2 clips has a caption"):
        clips, report = load_clips(tmp_path, on_error="skip")
    assert [c.rig for c in clips] == ["mixamo", "inferred (interpolated: spine1, spine2, left_collar, right_collar)"]
    assert report.rigs == {str(tmp_path / "mixamo.bvh"): "mixamo", str(tmp_path / "one_spine.bvh"): clips[1].rig}
    assert [Path(s["file"]).name for s in report.to_dict()["skip"]] == ["quadruped.bvh"]
    text = report.summary()
    assert "mixamo.bvh: mixamo" in text and "one_spine.bvh: inferred (interpolated: spine1" in text
    assert "quadruped.bvh: " in text and "unknown rig" in text
    assert report.uncaptioned == ["mixamo.bvh", "one_spine.bvh"] and "without a caption (2 of 2 clips)" in text


# No silent empties.

def _empty_files(folder: Path) -> list[Path]:
    (folder / "empty.json").write_text("[]")
    np.savez(folder / "zero.npz", motions=np.zeros((0, 30, 22, 3), dtype=np.float32))
    np.savez(folder / "zero_lengths.npz", motions=np.zeros((0, 22, 3), dtype=np.float32),
             lengths=np.zeros(0, dtype=np.int64))
    header = (RIGS / "cmu_plain.bvh").read_text().split("MOTION")[0]
    (folder / "zero.bvh").write_text(header + "MOTION\nFrames: 0\nFrame Time: 0.033333\n")
    return sorted(folder.iterdir())


def test_empty_files_raise_no_records(tmp_path):
    for path in _empty_files(tmp_path):
        loader = {".json": load_json, ".npz": load_npz, ".bvh": read_bvh}[path.suffix]
        for load in (loader, load_clips):
            with pytest.raises(DataError, match="no records") as info:
                load(path)
            assert str(path) in str(info.value)


def test_empty_files_are_listed_under_skip(tmp_path):
    files = _empty_files(tmp_path)
    shutil.copy(RIGS / "rokoko.bvh", tmp_path)
    with pytest.warns(DataWarning):
        clips, report = load_clips(tmp_path, on_error="skip")
    assert len(clips) == 1
    skip = report.to_dict()["skip"]
    assert [s["file"] for s in skip] == [str(p) for p in files]
    assert all("no records" in s["reason"] for s in skip) and "4 skipped" in report.summary()
    report = LoadReport()
    assert load_json(tmp_path / "empty.json", on_error="skip", report=report) == []
    assert "no records" in report.skipped[0].reason


# Size sanity.

def _rescaled(src: Path, dst: Path, factor: float) -> Path:
    """A copy of a BVH with every length multiplied (OFFSETs and the root's position channels)."""
    head, motion = src.read_text().split("MOTION")
    head = re.sub(r"OFFSET ([-\d. ]+)", lambda m: "OFFSET " + " ".join(f"{float(v) * factor:.5f}"
                                                                        for v in m.group(1).split()), head)
    lines = motion.strip().splitlines()
    rows = [" ".join([f"{float(v) * factor:.5f}" for v in row.split()[:3]] + row.split()[3:]) for row in lines[2:]]
    dst.write_text(head + "MOTION\n" + "\n".join(lines[:2] + rows) + "\n")
    return dst


def test_a_rescaled_file_warns_with_the_unit_that_fixes_it(tmp_path):
    path = _rescaled(RIGS / "biped.bvh", tmp_path / "biped_inches.bvh", 1 / 2.54)  # cm -> inches
    with pytest.warns(DataWarning) as caught:
        clips, report = load_clips(path)
    message = next(str(w.message) for w in caught if "standing height" in str(w.message))
    assert str(path) in message and "standing height 0.61 m" in message and "unit='inch' (gives 1.55 m)" in message
    assert message in report.warnings and f"warning: {message}" in report.summary()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        fixed = read_bvh(path, unit="inch")
    assert standing_height(fixed.positions) == pytest.approx(1.55, abs=0.01)
    np.testing.assert_allclose(fixed.positions, read_bvh(RIGS / "biped.bvh").positions, atol=1e-4)


def test_json_in_the_wrong_unit_warns(tmp_path):
    clip = read_bvh(RIGS / "rokoko.bvh")
    records = [{"motion": (clip.positions * 0.5).tolist(), "text": "half size"}]
    (tmp_path / "half.json").write_text(json.dumps(records))
    with pytest.warns(DataWarning, match=r"half.json: standing height 0.78 m .* unit=2 metres per file unit"):
        load_json(tmp_path / "half.json")


# Captions and styles beside the files.

SIDECAR = """a dancer lowers both arms while walking
# a comment line, and a blank line next

someone walks and turns#someone/PRON walk/VERB and/CCONJ turn/VERB#0.0#0.0
the dancer starts walking#the/DET dancer/NOUN start/VERB walk/VERB#0.0#0.5
the dancer turns#the/DET dancer/NOUN turn/VERB#0.25#0.75
"""


def test_a_sidecar_gives_captions_and_humanml3d_cuts(tmp_path):
    shutil.copy(RIGS / "rokoko.bvh", tmp_path / "take.bvh")
    (tmp_path / "take.txt").write_text(SIDECAR)
    clips, report = load_clips(tmp_path / "take.bvh", min_frames=5)
    whole = read_bvh(tmp_path / "take.bvh")
    assert [c.texts for c in clips] == [["a dancer lowers both arms while walking", "someone walks and turns"],
                                        ["the dancer starts walking"], ["the dancer turns"]]
    assert [c.num_frames for c in clips] == [16, 10, 10]  # [int(start * 20), int(end * 20))
    np.testing.assert_array_equal(clips[1].positions, whole.positions[0:10])
    np.testing.assert_array_equal(clips[2].positions, whole.positions[5:15])
    assert report.uncaptioned == [] and report.num_clips == 3
    # Only cuts: the whole clip is left out, as HumanML3D does.
    (tmp_path / "take.txt").write_text("the dancer turns#x#0.25#0.75\n")
    clips, _ = load_clips(tmp_path / "take.bvh", min_frames=5)
    assert [c.texts for c in clips] == [["the dancer turns"]]
    # A cut too short for min_frames is skipped (and listed) or raises.
    clips, report = load_clips(tmp_path / "take.bvh", on_error="skip", min_frames=12)
    assert clips == [] and "cut 0.25-0.75 s" in report.skipped[0].reason and "has 10 frames" in report.summary()
    with pytest.raises(DataError, match="cut 0.25-0.75 s"):
        load_clips(tmp_path / "take.bvh", min_frames=12)


def test_caption_lines():
    assert parse_caption_line("  a spin ") .text == "a spin"
    assert parse_caption_line("# note") is None and parse_caption_line("   ") is None
    assert parse_caption_line("a spin#a/DET spin/NOUN#nan#nan").start is None
    cut = parse_caption_line("a spin#a/DET spin/NOUN#1.5#3")
    assert (cut.text, cut.start, cut.end) == ("a spin", 1.5, 3.0)
    with pytest.raises(DataError, match="0 <= start < end"):
        parse_caption_line("a spin#x#3#1.5")


def _folder_of_takes(tmp_path: Path) -> Path:
    root = tmp_path / "mocap"
    (root / "hiphop").mkdir(parents=True)
    shutil.copy(RIGS / "rokoko.bvh", root / "a.bvh")
    shutil.copy(RIGS / "xsens_mvn.bvh", root / "hiphop" / "b.bvh")
    shutil.copy(RIGS / "vicon.bvh", root / "hiphop" / "c.bvh")
    return root


def test_a_csv_index_gives_captions_style_fps_and_unit(tmp_path):
    root = _folder_of_takes(tmp_path)
    (root / "captions.csv").write_text(
        "file,captions,style,fps,unit\n"
        'a.bvh,"a soft wave | a gentle wave",kpop,,\n'
        "hiphop/b.bvh,a kick,,60,cm\n"
        "c,first caption of c,hiphop,,\n"
        "c,second caption of c,,,\n")
    clips, report = load_clips(root, min_frames=5)
    by_file = {Path(c.source).name: c for c in clips}
    assert by_file["a.bvh"].texts == ["a soft wave", "a gentle wave"] and by_file["a.bvh"].style == "kpop"
    assert by_file["b.bvh"].texts == ["a kick"] and by_file["b.bvh"].style is None
    assert by_file["c.bvh"].texts == ["first caption of c", "second caption of c"]
    assert by_file["c.bvh"].style == "hiphop"
    # fps=60 from the index: 24 frames last 0.383 s, not 0.767 s.
    assert by_file["b.bvh"].num_frames == 8 and by_file["a.bvh"].num_frames == 16
    assert report.uncaptioned == [] and report.warnings == []
    # The captions and styles reach the training set (train.npz, as prepare_own_data writes it).
    back = load_npz(save_npz(tmp_path / "train.npz", clips), min_frames=5)
    assert [(c.texts, c.style) for c in back] == [(c.texts, c.style) for c in clips]


def test_a_json_index_and_styles_from_folders(tmp_path):
    root = _folder_of_takes(tmp_path)
    (root / "hiphop" / "captions.json").write_text(json.dumps(
        [{"file": "b.bvh", "captions": ["a kick", "a high kick#a/DET high/ADJ kick/NOUN#0#0"], "style": "krump"}]))
    (root / "captions.json").write_text(json.dumps({"a.bvh": "a wave", "gone.bvh": ["a typo"]}))
    with pytest.warns(DataWarning, match="gone.bvh"):
        clips, report = load_clips(root, style_from_folder=True)
    by_file = {Path(c.source).name: c for c in clips}
    assert by_file["a.bvh"].texts == ["a wave"] and by_file["a.bvh"].style == "mocap"  # the folder's name
    assert by_file["b.bvh"].texts == ["a kick", "a high kick"] and by_file["b.bvh"].style == "krump"
    assert by_file["c.bvh"].texts == [] and by_file["c.bvh"].style == "hiphop"
    assert report.uncaptioned == ["hiphop/c.bvh"]
    assert any("captions index entries that name no loaded file" in w for w in report.warnings)
    assert not any("trains it unconditioned" in w for w in report.warnings)  # 2 of 3 have captions
    assert read_index(root / "captions.json")["gone.bvh"].captions[0].text == "a typo"


def test_captions_inside_a_file_win_over_a_sidecar(tmp_path):
    clip = read_bvh(RIGS / "rokoko.bvh")
    record = {"motion": clip.positions.tolist(), "text": "its own caption", "style": "own"}
    (tmp_path / "own.json").write_text(json.dumps([record]))
    (tmp_path / "own.txt").write_text("a sidecar caption\n")
    (tmp_path / "captions.csv").write_text("file,captions,style\nown.json,an index caption,indexed\n")
    clips, _ = load_clips(tmp_path)
    assert [(c.texts, c.style) for c in clips] == [(["its own caption"], "own")]


def test_a_folder_without_captions_warns_that_training_is_unconditioned(tmp_path):
    root = _folder_of_takes(tmp_path)
    with pytest.warns(DataWarning, match="none of the 3 clips has a caption: fine-tuning a text-to-motion model"):
        clips, report = load_clips(root)
    assert report.uncaptioned == ["a.bvh", "hiphop/b.bvh", "hiphop/c.bvh"]
    assert all(c.texts == [] and c.style is None for c in clips)
    with pytest.warns(DataWarning, match="none of the 3 clips"):
        clips, report = load_clips(root, captions=False, style_from_folder=True)
    assert [c.style for c in clips] == ["mocap", "hiphop", "hiphop"]


def test_clip_rig_survives_resampling_and_defaults_to_none():
    assert MotionClip(np.zeros((2, 22, 3), np.float32), 20.0).rig is None
    with pytest.warns(DataWarning, match="its one clip has no caption"):
        clips, _ = load_clips(RIGS / "blender.bvh", fps=10, min_frames=5)
    assert clips[0].fps == 10 and clips[0].rig == "inferred (interpolated: spine2)"


def test_the_inferred_map_can_be_kept_and_passed_back():
    data = parse_bvh(RIGS / "biped.bvh")
    skel = data.skeleton
    inferred = infer_joint_map(skel.point_names, skel.parents + [p for p, _ in skel.end_sites],
                               forward_kinematics(skel, data.values))
    assert inferred.ok and inferred.interpolated == ["spine2"]
    rig = inferred.rig_map()
    assert rig.joints["left_hip"] == ("Bip01 L Thigh",) and isinstance(rig.joints["spine2"][0], Lerp)
    again = read_bvh(RIGS / "biped.bvh", joint_map=rig)
    np.testing.assert_allclose(again.positions, read_bvh(RIGS / "biped.bvh").positions, atol=1e-6)
    assert again.rig == "inferred"  # given, not inferred again


@pytest.mark.parametrize("name, text, fragment", [
    ("captions.csv", "name,captions\na.bvh,x\n", "a header row with 'file'"),
    ("captions.csv", "file,captions,unit\na.bvh,x,furlong\n", "unknown unit"),
    ("captions.csv", "file,captions,fps\na.bvh,x,fast\n", "field 'fps'"),
    ("captions.json", '{"a.bvh": {"captions": [1, 2]}}', "a string or a list of strings"),
    ("captions.json", '[{"captions": "x"}]', "has no 'file'"),
    ("captions.json", "[{", "unreadable JSON"),
])
def test_a_bad_index_names_itself(tmp_path, name, text, fragment):
    shutil.copy(RIGS / "rokoko.bvh", tmp_path / "a.bvh")
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=re.escape(fragment)) as info:
        load_clips(tmp_path)
    assert str(tmp_path / name) in str(info.value)


def test_fbx_tool_says_what_to_do_without_blender(tmp_path, monkeypatch):
    """tools/fbx_to_bvh.py (Blender's command line) is not run here: its arguments and its no-Blender error are."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fbx_to_bvh", Path(__file__).resolve().parents[1] / "tools" / "fbx_to_bvh.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    (tmp_path / "in").mkdir()
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "in"), str(tmp_path / "out")])  # no .fbx files: argparse error
    (tmp_path / "in" / "take.fbx").write_bytes(b"Kaydara FBX Binary  \x00")
    monkeypatch.delenv("BLENDER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit, match="Blender was not found"):
        tool.main([str(tmp_path / "in"), str(tmp_path / "out")])
