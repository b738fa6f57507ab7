"""BVH parsing, forward kinematics, units, up axis, rig maps, resampling and write/read round trips.

Expected positions are derived by hand (90-degree rotations) or by an independent path (scipy's
rotations, cumulative offsets), never by calling the code under test.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kpop_helpers.data import DataError, MotionClip, Lerp, parse_bvh, read_bvh, write_bvh
from kpop_helpers.data.bvh import BvhData
from kpop_helpers.motion.skeleton import T2M_JOINT_NAMES, T2M_PARENTS, T2M_TARGET_OFFSETS

ROOT_CHANNELS = "Xposition Yposition Zposition Zrotation Yrotation Xrotation"


def chain_bvh(joint_channels: str, joint_values: str, end_offset: str, *, frames: int = 1) -> str:
    """Root at (1, 2, 3) rotated 90 degrees about Z, child 1 unit up with the given channels, one End Site."""
    row = f"1 2 3 90 0 0 {joint_values}"
    return (
        "HIERARCHY\nROOT root\n{\n\tOFFSET 0 0 0\n"
        f"\tCHANNELS 6 {ROOT_CHANNELS}\n"
        "\tJOINT mid\n\t{\n\t\tOFFSET 0 1 0\n"
        f"\t\tCHANNELS 3 {joint_channels}\n"
        f"\t\tEnd Site\n\t\t{{\n\t\t\tOFFSET {end_offset}\n\t\t}}\n\t}}\n}}\n"
        f"MOTION\nFrames: {frames}\nFrame Time: 0.05\n" + (row + "\n") * frames
    )


def read_points(path, **kwargs):
    """Every joint and End Site in metres, unchanged frame rate, no minimum length."""
    return read_bvh(path, unit="m", target_fps=None, keep_all_joints=True, up_axis="y", min_frames=1,
                    check_scale=False, **kwargs)


# Rz(90) maps x->y, y->-x; Ry(90) maps z->x, x->-z; Rx(90) maps y->z, z->-y.
# The root turns the child's OFFSET (0,1,0) into (-1,0,0): mid = (1,2,3) + (-1,0,0) = (0,2,3).
HAND_CASES = [
    # ZYX, z=90 y=90 x=0 on end (1,0,0): Ry90 x -> -z, then Rz90 keeps z: (0,0,-1); root Rz90 keeps it.
    ("Zrotation Yrotation Xrotation", "90 90 0", "1 0 0", (0.0, 2.0, 2.0)),
    # XYZ, x=90 y=90 z=0 on end (1,0,0): Ry90 x -> -z, Rx90 -z -> y: (0,1,0); root Rz90: y -> -x.
    ("Xrotation Yrotation Zrotation", "90 90 0", "1 0 0", (-1.0, 2.0, 3.0)),
    # YXZ, y=90 x=0 z=90 on end (0,0,1): Rz90 keeps z, Ry90 z -> x: (1,0,0); root Rz90: x -> y.
    ("Yrotation Xrotation Zrotation", "90 0 90", "0 0 1", (0.0, 3.0, 3.0)),
]


@pytest.mark.parametrize("channels, values, end_offset, expected_end", HAND_CASES)
def test_channel_orders_against_hand_computed_positions(tmp_path, channels, values, end_offset, expected_end):
    path = tmp_path / "chain.bvh"
    path.write_text(chain_bvh(channels, values, end_offset))
    clip = read_points(path)
    assert clip.joint_names == ("root", "mid", "mid/End")
    np.testing.assert_allclose(clip.positions[0], [[1, 2, 3], [0, 2, 3], expected_end], atol=1e-6)


@pytest.mark.parametrize("order", ["ZYX", "XYZ", "YXZ", "ZXY", "XZY", "YZX"])
def test_random_angles_match_scipy_intrinsic_rotations(tmp_path, order):
    rng = np.random.default_rng(len(order) + ord(order[0]))
    angles = rng.uniform(-170, 170, size=(12, 2, 3))
    channels = " ".join(f"{a}rotation" for a in order)
    rows = "\n".join(f"0.5 1 -2 {' '.join(map(str, a[0]))} {' '.join(map(str, a[1]))}" for a in angles)
    text = ("HIERARCHY\nROOT r\n{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition Zposition " + channels +
            "\n JOINT j\n {\n  OFFSET 0.2 0.7 -0.1\n  CHANNELS 3 " + channels +
            "\n  End Site\n  {\n   OFFSET 0.3 -0.4 0.5\n  }\n }\n}\nMOTION\nFrames: 12\nFrame Time: 0.05\n" + rows)
    (tmp_path / "r.bvh").write_text(text)
    clip = read_points(tmp_path / "r.bvh")
    r0 = Rotation.from_euler(order.upper(), angles[:, 0], degrees=True)  # upper case = intrinsic
    r1 = r0 * Rotation.from_euler(order.upper(), angles[:, 1], degrees=True)
    joint = np.array([0.5, 1, -2]) + r0.apply([0.2, 0.7, -0.1])
    end = joint + r1.apply([0.3, -0.4, 0.5])
    np.testing.assert_allclose(clip.positions[:, 1], joint, atol=1e-5)
    np.testing.assert_allclose(clip.positions[:, 2], end, atol=1e-5)


def test_position_channels_on_every_joint_replace_offsets(tmp_path):
    text = """HIERARCHY
ROOT root
{
  OFFSET 5 5 5
  CHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
  JOINT child
  {
    OFFSET 0 1 0
    CHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation
    End Site
    {
      OFFSET 0 0 1
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.1
0 0 0 0 0 0 0 2 0 0 0 0
0 0 0 0 0 90 0 2 0 90 0 0
"""
    (tmp_path / "p.bvh").write_text(text)
    pos = read_points(tmp_path / "p.bvh").positions
    # Frame 0: child at its channel translation (0,2,0), not the OFFSET (0,1,0); end 1 further in z.
    np.testing.assert_allclose(pos[0], [[0, 0, 0], [0, 2, 0], [0, 2, 1]], atol=1e-6)
    # Frame 1: root Rz90 sends (0,2,0) to (-2,0,0); child Rx90 sends (0,0,1) to (0,-1,0), then Rz90 to (1,0,0).
    np.testing.assert_allclose(pos[1], [[0, 0, 0], [-2, 0, 0], [-1, 0, 0]], atol=1e-6)


def test_odd_whitespace_crlf_tabs_and_no_leading_zero(tmp_path):
    text = chain_bvh("Zrotation Yrotation Xrotation", "90 90 0", "1 0 0", frames=3)
    text = text.replace("Frame Time: 0.05", "Frame Time:   .05  ").replace("\t", " \t ").replace("\n", " \r\n")
    (tmp_path / "w.bvh").write_bytes(text.encode())
    clip = read_points(tmp_path / "w.bvh")
    assert clip.fps == pytest.approx(20.0)
    np.testing.assert_allclose(clip.positions[2], [[1, 2, 3], [0, 2, 3], [0, 2, 2]], atol=1e-6)


def skeleton_bvh(names, parents, offsets, frames, *, frame_time=0.05, up="y", end_sites=()):
    """A BVH of a figure in its rest pose whose root moves along +x (one unit per frame / 10)."""
    offsets = np.asarray(offsets, dtype=np.float64)
    if up == "z":
        offsets = offsets[:, [0, 2, 1]] * [1, -1, 1]  # y-up (x, y, z) -> z-up (x, -z, y)
    children = {i: [c for c, p in enumerate(parents) if p == i] for i in range(len(names))}
    lines = ["HIERARCHY"]

    def emit(j, depth):
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if parents[j] < 0 else 'JOINT'} {names[j]}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {offsets[j][0]:.9f} {offsets[j][1]:.9f} {offsets[j][2]:.9f}")
        lines.append(f"{pad}  CHANNELS {6 if parents[j] < 0 else 3} "
                     + (ROOT_CHANNELS if parents[j] < 0 else "Zrotation Xrotation Yrotation"))
        for c in children[j]:
            emit(c, depth + 1)
        for p, off in end_sites:
            if p == j:
                lines.extend([pad + "  End Site", pad + "  {", f"{pad}    OFFSET {off[0]} {off[1]} {off[2]}",
                              pad + "  }"])
        lines.append(pad + "}")

    emit(0, 0)
    rows = []
    for f in range(frames):
        root = list(offsets[0] + [f / 10, 0, 0])  # the root's position channels replace its OFFSET
        rows.append(" ".join(str(v) for v in root + [0] * (3 + 3 * (len(names) - 1))))
    return "\n".join(lines + ["MOTION", f"Frames: {frames}", f"Frame Time: {frame_time}"] + rows) + "\n"


# T2M target bone offsets with the pelvis 0.95 m above the floor (metres).
FIGURE_OFFSETS = T2M_TARGET_OFFSETS.astype(np.float64) + np.array([[0, 0.95, 0]] + [[0, 0, 0]] * 21)


def rest_positions(parents, offsets):
    """World rest positions by summing offsets down the tree (independent of the reader)."""
    pos = np.zeros((len(parents), 3))
    for j, p in enumerate(parents):
        pos[j] = offsets[j] + (pos[p] if p >= 0 else 0)
    return pos


T2M_REST = rest_positions(T2M_PARENTS, FIGURE_OFFSETS)


def expected_motion(frames, scale=1.0):
    shift = np.zeros((frames, 1, 3))
    shift[:, 0, 0] = np.arange(frames) / 10 * scale
    return T2M_REST[None] + shift


@pytest.mark.parametrize("unit, factor", [("m", 1.0), ("cm", 100.0), ("mm", 1000.0)])
def test_units_explicit_and_auto(tmp_path, unit, factor):
    offsets = FIGURE_OFFSETS * factor
    (tmp_path / "f.bvh").write_text(skeleton_bvh(list(T2M_JOINT_NAMES), T2M_PARENTS, offsets, 12))
    for given in (unit, "auto"):
        clip = read_bvh(tmp_path / "f.bvh", unit=given, target_fps=None)
        assert clip.positions.shape == (12, 22, 3) and clip.fps == 20.0
        # The root moves 0.1 file units per frame: 0.1 / factor metres.
        np.testing.assert_allclose(clip.positions, expected_motion(12, 1 / factor), atol=1e-5)


def test_numeric_unit_scale(tmp_path):
    (tmp_path / "c.bvh").write_text(chain_bvh("Zrotation Yrotation Xrotation", "0 0 0", "0 1 0", frames=10))
    clip = read_bvh(tmp_path / "c.bvh", unit=0.5, target_fps=None, keep_all_joints=True, up_axis="y",
                    check_scale=False)
    np.testing.assert_allclose(clip.positions[0], np.array([[1, 2, 3], [0, 2, 3], [-1, 2, 3]]) * 0.5, atol=1e-6)


def test_z_up_humanoid_is_turned_y_up(tmp_path):
    offsets = FIGURE_OFFSETS
    (tmp_path / "z.bvh").write_text(skeleton_bvh(list(T2M_JOINT_NAMES), T2M_PARENTS, offsets, 10, up="z"))
    clip = read_bvh(tmp_path / "z.bvh", target_fps=None)  # up_axis="auto"
    np.testing.assert_allclose(clip.positions, expected_motion(10), atol=1e-5)
    forced = read_bvh(tmp_path / "z.bvh", target_fps=None, up_axis="z")
    np.testing.assert_allclose(forced.positions, clip.positions, atol=1e-6)
    as_is = read_bvh(tmp_path / "z.bvh", target_fps=None, up_axis="y")
    assert as_is.positions[0, 15, 2] > 1.3  # left z-up: the head is high along z


def test_z_up_unknown_rig_uses_rest_offsets(tmp_path):
    # A stick figure: legs and spine along z (up), arms along x.
    names = ["base", "top", "arm_l", "arm_r", "leg"]
    rows = "\n".join("0 0 0 0 0 0 " + "0 0 0 " * 4 for _ in range(10))
    text = "HIERARCHY\n"
    text += "ROOT base\n{\nOFFSET 0 0 1\nCHANNELS 6 " + ROOT_CHANNELS + "\n"
    text += "JOINT top\n{\nOFFSET 0 0 0.7\nCHANNELS 3 Zrotation Yrotation Xrotation\n"
    text += "JOINT arm_l\n{\nOFFSET 0.6 0 0\nCHANNELS 3 Zrotation Yrotation Xrotation\n}\n"
    text += "JOINT arm_r\n{\nOFFSET -0.6 0 0\nCHANNELS 3 Zrotation Yrotation Xrotation\n}\n}\n"
    text += "JOINT leg\n{\nOFFSET 0 0 -0.9\nCHANNELS 3 Zrotation Yrotation Xrotation\n}\n}\n"
    text += f"MOTION\nFrames: 10\nFrame Time: 0.05\n{rows}\n"
    (tmp_path / "s.bvh").write_text(text)
    clip = read_bvh(tmp_path / "s.bvh", joint_map=None, target_fps=None)
    assert clip.joint_names == tuple(names)
    # Root channels put the root at the origin; z-up (x, y, z) becomes y-up (x, z, -y).
    expected = np.array([[0, 0, 0], [0, 0.7, 0], [0.6, 0.7, 0], [-0.6, 0.7, 0], [0, -0.9, 0]])
    np.testing.assert_allclose(clip.positions[0], expected, atol=1e-6)


def test_mixamo_names_with_namespace_are_mapped(tmp_path):
    mixamo = {"pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg", "spine1": "Spine",
              "left_knee": "LeftLeg", "right_knee": "RightLeg", "spine2": "Spine1", "left_ankle": "LeftFoot",
              "right_ankle": "RightFoot", "spine3": "Spine2", "left_foot": "LeftToeBase",
              "right_foot": "RightToeBase", "neck": "Neck", "left_collar": "LeftShoulder",
              "right_collar": "RightShoulder", "head": "Head", "left_shoulder": "LeftArm",
              "right_shoulder": "RightArm", "left_elbow": "LeftForeArm", "right_elbow": "RightForeArm",
              "left_wrist": "LeftHand", "right_wrist": "RightHand"}
    names = ["mixamorig:" + mixamo[n] for n in T2M_JOINT_NAMES]
    offsets = FIGURE_OFFSETS * 100
    (tmp_path / "mx.bvh").write_text(skeleton_bvh(names, T2M_PARENTS, offsets, 10))
    clip = read_bvh(tmp_path / "mx.bvh", target_fps=None)  # cm detected, Mixamo detected
    np.testing.assert_allclose(clip.positions, expected_motion(10, 1 / 100), atol=1e-5)
    assert clip.joint_names == T2M_JOINT_NAMES


def test_daz_style_rig_uses_documented_interpolations(tmp_path):
    # A small DAZ-named figure; T2M spine3 is 30 % from chest to neck, collars midway to the shoulder,
    # the toe is the End Site of the foot.
    bones = {
        "hip": (-1, [0, 1.0, 0]), "abdomen": ("hip", [0, 0.15, 0]), "chest": ("abdomen", [0, 0.15, 0]),
        "neck": ("chest", [0, 0.2, 0]), "head": ("neck", [0, 0.1, 0]),
        "lCollar": ("chest", [0.02, 0.15, 0]), "lShldr": ("lCollar", [0.1, 0, 0]),
        "lForeArm": ("lShldr", [0.25, 0, 0]), "lHand": ("lForeArm", [0.25, 0, 0]),
        "rCollar": ("chest", [-0.02, 0.15, 0]), "rShldr": ("rCollar", [-0.1, 0, 0]),
        "rForeArm": ("rShldr", [-0.25, 0, 0]), "rHand": ("rForeArm", [-0.25, 0, 0]),
        "lButtock": ("hip", [0.08, 0, 0]), "lThigh": ("lButtock", [0, -0.02, 0]),
        "lShin": ("lThigh", [0, -0.42, 0]), "lFoot": ("lShin", [0, -0.45, 0]),
        "rButtock": ("hip", [-0.08, 0, 0]), "rThigh": ("rButtock", [0, -0.02, 0]),
        "rShin": ("rThigh", [0, -0.42, 0]), "rFoot": ("rShin", [0, -0.45, 0]),
    }
    names = list(bones)
    parents = [-1 if bones[n][0] == -1 else names.index(bones[n][0]) for n in names]
    offsets = np.array([bones[n][1] for n in names], dtype=np.float64)
    toe = [0, -0.05, 0.12]
    ends = [(names.index("lFoot"), toe), (names.index("rFoot"), toe)]
    (tmp_path / "daz.bvh").write_text(skeleton_bvh(names, parents, offsets, 10, end_sites=ends))
    clip = read_bvh(tmp_path / "daz.bvh", target_fps=None, unit="m")
    rest = rest_positions(parents, offsets)
    at = {n: rest[i] for i, n in enumerate(names)}
    expect = {"pelvis": at["hip"], "spine1": at["abdomen"], "spine2": at["chest"],
              "spine3": 0.7 * at["chest"] + 0.3 * at["neck"], "neck": at["neck"], "head": at["head"],
              "left_collar": (at["lCollar"] + at["lShldr"]) / 2, "left_shoulder": at["lShldr"],
              "left_wrist": at["lHand"], "left_hip": at["lThigh"], "left_ankle": at["lFoot"],
              "left_foot": at["lFoot"] + toe, "right_foot": at["rFoot"] + toe}
    for joint, value in expect.items():
        np.testing.assert_allclose(clip.positions[0, T2M_JOINT_NAMES.index(joint)], value, atol=1e-6, err_msg=joint)


def test_unknown_rig_error_lists_unmapped_joints_and_custom_map_works(tmp_path):
    names = [f"bone{i}" for i in range(22)]
    offsets = FIGURE_OFFSETS
    path = tmp_path / "odd.bvh"
    path.write_text(skeleton_bvh(names, T2M_PARENTS, offsets, 10))
    with pytest.raises(DataError) as info:
        read_bvh(path)
    message = str(info.value)
    assert str(path) in message and "field 'joint_map'" in message
    assert "left_ankle" in message and "joint_map={" in message and "bone7" in message and "none of the 22" in message
    custom = {t2m: f"bone{i}" for i, t2m in enumerate(T2M_JOINT_NAMES)}
    custom["spine2"] = Lerp("bone3", "bone6", 1.0)  # same point as bone6, via an interpolation
    clip = read_bvh(path, joint_map=custom, target_fps=None)
    np.testing.assert_allclose(clip.positions, expected_motion(10), atol=1e-5)


@pytest.mark.parametrize("src_fps, dst_fps", [(60.0, 20.0), (30.0, 20.0), (20.0, 60.0)])
def test_resampling_reproduces_linear_motion(tmp_path, src_fps, dst_fps):
    offsets = FIGURE_OFFSETS
    frames = 61
    (tmp_path / "r.bvh").write_text(skeleton_bvh(list(T2M_JOINT_NAMES), T2M_PARENTS, offsets, frames,
                                                  frame_time=1 / src_fps))
    clip = read_bvh(tmp_path / "r.bvh", target_fps=dst_fps)
    duration = (frames - 1) / src_fps
    assert clip.fps == dst_fps and clip.num_frames == int(round(duration * dst_fps)) + 1
    # The root moves 0.1 per source frame, i.e. 0.1 * src_fps per second.
    times = np.arange(clip.num_frames) / dst_fps
    np.testing.assert_allclose(clip.positions[:, 0, 0], 0.1 * src_fps * times, atol=1e-5)


def test_source_fps_overrides_wrong_header(tmp_path):
    offsets = FIGURE_OFFSETS
    (tmp_path / "h.bvh").write_text(skeleton_bvh(list(T2M_JOINT_NAMES), T2M_PARENTS, offsets, 121,
                                                  frame_time=0.008333))
    # 121 frames: 0.99996 s at the header's 120.005 fps (20 frames at 20 fps), 2 s at the true 60 fps.
    trusting = read_bvh(tmp_path / "h.bvh", target_fps=20)
    fixed = read_bvh(tmp_path / "h.bvh", target_fps=20, source_fps=60)
    assert trusting.num_frames == 20 and fixed.num_frames == 41 and fixed.fps == 20
    np.testing.assert_allclose(fixed.positions[:, 0, 0], 0.1 * 3 * np.arange(41), atol=1e-5)


def t2m_motion(frames: int, seed: int = 0) -> np.ndarray:
    """A moving T2M figure: rest pose, a drifting root, and per-joint wobble."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None] / 20.0
    wobble = 0.05 * np.sin(2 * np.pi * (0.5 + rng.random((1, 22, 3))) * t + rng.random((1, 22, 3)) * 6)
    return (T2M_REST[None] + wobble + t * np.array([0.3, 0, 0.1])).astype(np.float32)


def test_write_bvh_t2m_clip_round_trip(tmp_path):
    clip = MotionClip(t2m_motion(40), 20.0, ["a spin"], "hiphop")
    path = write_bvh(tmp_path / "t2m.bvh", clip)
    data = parse_bvh(path)
    assert sorted(data.skeleton.names) == sorted(T2M_JOINT_NAMES)  # depth-first order in the file
    back = read_bvh(path, target_fps=None)
    assert back.fps == 20.0 and back.positions.shape == clip.positions.shape
    assert np.abs(back.positions - clip.positions).max() < 1e-5
    # The rotations are real: the left knee's local translation runs down its bone (-y in the rest pose).
    knee = data.values.reshape(40, 22, 6)[:, data.skeleton.names.index("left_knee"), :3]
    assert np.all(knee[:, 1] < -0.3) and np.abs(knee[:, [0, 2]]).max() < 1e-6


def test_write_bvh_other_skeleton_needs_parents(tmp_path):
    positions = t2m_motion(12)[:, :5]
    clip = MotionClip(positions, 30.0)
    with pytest.raises(DataError, match="parents"):
        write_bvh(tmp_path / "x.bvh", clip)
    write_bvh(tmp_path / "x.bvh", clip, parents=[-1, 0, 0, 0, 1])
    back = read_bvh(tmp_path / "x.bvh", joint_map=None, target_fps=None)
    assert back.fps == pytest.approx(30.0)
    # The file lists joints depth first: joint0, joint1, joint4 (child of joint1), joint2, joint3.
    assert back.joint_names == ("joint0", "joint1", "joint4", "joint2", "joint3")
    order = [int(name[-1]) for name in back.joint_names]
    assert np.abs(back.positions - positions[:, order]).max() < 1e-5


def test_write_parsed_data_round_trips_values(tmp_path):
    (tmp_path / "c.bvh").write_text(chain_bvh("Yrotation Xrotation Zrotation", "10 -20 30", "0.5 0 0", frames=4))
    data = parse_bvh(tmp_path / "c.bvh")
    write_bvh(tmp_path / "c2.bvh", BvhData(data.skeleton, data.values, data.frame_time))
    again = parse_bvh(tmp_path / "c2.bvh")
    assert again.skeleton.channels == data.skeleton.channels and again.frame_time == data.frame_time
    np.testing.assert_array_equal(again.values, data.values)
    np.testing.assert_allclose(read_points(tmp_path / "c2.bvh").positions, read_points(tmp_path / "c.bvh").positions)


def test_parsing_a_3mb_bvh_is_fast(tmp_path):
    clip = MotionClip(t2m_motion(2400, seed=3), 60.0)
    path = write_bvh(tmp_path / "big.bvh", clip)
    assert path.stat().st_size > 3_000_000
    start = time.perf_counter()
    back = read_bvh(path, target_fps=20)
    elapsed = time.perf_counter() - start
    assert back.num_frames == 800
    assert elapsed < 2.0, f"reading a {path.stat().st_size / 1e6:.1f} MB BVH took {elapsed:.2f} s"
