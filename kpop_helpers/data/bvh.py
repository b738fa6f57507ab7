"""BVH motion capture: parse, vectorised forward kinematics, map to T2M joints, and write our own BVH.

Conventions (the common reading of the BVH format):
- Rotation channels compose in file order: ``Zrotation Yrotation Xrotation`` means R = Rz @ Ry @ Rx,
  angles in degrees; a joint's world rotation is its parent's world rotation times its own.
- Position channels *replace* the OFFSET on the axes they name (the root's channels are its position;
  files with position channels on every joint give each joint's local translation).
- Resampling to ``target_fps`` linearly interpolates joint positions in time (no low-pass filter, as
  HumanML3D does when it subsamples). Units are converted to metres; z-up files are turned y-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kpop_helpers.data.clip import MotionClip
from kpop_helpers.data.report import warn_size
from kpop_helpers.data.rig_names import choose_joint_map
from kpop_helpers.data.rigs import (END_SITE_SUFFIX, JointMapArg, ResolvedMap, bone_world_rotations, euler_to_matrix,
                                    matrix_to_euler_zyx, normalize_bone_name)
from kpop_helpers.data.validate import MIN_FRAMES, UNIT_SCALES, body_size, unit_scale, validate_clip
from kpop_helpers.errors import DataError
from kpop_helpers.motion.resample import resample_positions
from kpop_helpers.motion.skeleton import T2M_JOINT_NAMES, T2M_PARENTS, T2M_RAW_OFFSETS
from kpop_helpers.utils import atomic_write_text

_CHANNEL_NAMES = {f"{a}{k}".lower(): f"{a}{k}" for a in "XYZ" for k in ("position", "rotation")}
# Rotates a z-up frame to y-up (x stays, z -> y, y -> -z): a proper rotation, so handedness is kept.
_Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
_WRITE_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Yrotation", "Xrotation")
_TYPICAL_BODY_SIZE_M = 1.6


@dataclass
class BvhSkeleton:
    """A BVH HIERARCHY: joints in file order (parents first) and their End Sites."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[tuple[str, ...]]
    end_sites: list[tuple[int, np.ndarray]] = field(default_factory=list)

    @property
    def num_channels(self) -> int:
        return sum(len(c) for c in self.channels)

    @property
    def point_names(self) -> list[str]:
        """Joint names followed by one '<parent>/End' per End Site: the order of forward_kinematics points."""
        return self.names + [self.names[p] + END_SITE_SUFFIX for p, _ in self.end_sites]


@dataclass
class BvhData:
    """A parsed BVH file: skeleton, channel values [frames, channels] and the header's frame time."""

    skeleton: BvhSkeleton
    values: np.ndarray
    frame_time: float
    source: str | None = None


class _Tokens:
    """Whitespace tokens of the HIERARCHY block with their line numbers, for error messages."""

    def __init__(self, text: str, path: object):
        self.items = [(tok, n + 1) for n, line in enumerate(text.splitlines())
                      for tok in line.replace("{", " { ").replace("}", " } ").split()]
        self.pos, self.path = 0, path

    def error(self, message: str, line: int | None = None) -> DataError:
        where = f"line {line}: " if line else ""
        return DataError(f"{where}{message}", path=self.path, field="HIERARCHY")

    def next(self, what: str) -> tuple[str, int]:
        if self.pos >= len(self.items):
            raise self.error(f"file ends inside HIERARCHY while reading {what} (truncated BVH?)")
        self.pos += 1
        return self.items[self.pos - 1]

    def expect(self, word: str) -> int:
        tok, line = self.next(word)
        if tok.upper() != word.upper():
            raise self.error(f"found '{tok}' where '{word}' was expected", line)
        return line

    def number(self, what: str) -> float:
        tok, line = self.next(what)
        try:
            return float(tok)
        except ValueError:
            raise self.error(f"{what} is '{tok}', not a number", line) from None

    def name(self, line: int) -> str:
        parts = []
        while self.pos < len(self.items) and self.items[self.pos][1] == line and self.items[self.pos][0] != "{":
            parts.append(self.items[self.pos][0])
            self.pos += 1
        if not parts:
            raise self.error("joint without a name", line)
        return " ".join(parts)


def _parse_joint(tokens: _Tokens, skel: BvhSkeleton, offsets: list, parent: int, line: int) -> None:
    index = len(skel.names)
    skel.names.append(tokens.name(line))
    skel.parents.append(parent)
    skel.channels.append(())
    offsets.append(None)
    tokens.expect("{")
    while True:
        tok, line = tokens.next(f"the body of joint '{skel.names[index]}'")
        key = tok.upper()
        if key == "OFFSET":
            offsets[index] = np.array([tokens.number("OFFSET value") for _ in range(3)])
        elif key == "CHANNELS":
            count = tokens.number("CHANNELS count")
            chans = []
            for _ in range(int(count)):
                name, cline = tokens.next("a channel name")
                if name.lower() not in _CHANNEL_NAMES:
                    raise tokens.error(f"unknown channel '{name}' (expected e.g. Xposition or Zrotation)", cline)
                chans.append(_CHANNEL_NAMES[name.lower()])
            skel.channels[index] = tuple(chans)
        elif key == "JOINT":
            _parse_joint(tokens, skel, offsets, index, line)
        elif key == "END":
            tokens.expect("Site")
            tokens.expect("{")
            tokens.expect("OFFSET")
            site = np.array([tokens.number("End Site OFFSET value") for _ in range(3)])
            tokens.expect("}")
            skel.end_sites.append((index, site))
        elif key == "}":
            break
        else:
            raise tokens.error(f"unexpected '{tok}' in joint '{skel.names[index]}'", line)
    if offsets[index] is None:
        raise tokens.error(f"joint '{skel.names[index]}' has no OFFSET", line)


def parse_bvh_text(text: str, path: object = None) -> BvhData:
    """Parse BVH text (any whitespace, CRLF, any channel order) into a BvhData."""
    match = re.search(r"^\s*MOTION\b", text, re.MULTILINE | re.IGNORECASE)
    tokens = _Tokens(text[:match.start()] if match else text, path)
    tokens.expect("HIERARCHY")
    skel = BvhSkeleton([], [], np.zeros((0, 3)), [])
    offsets: list = []
    while tokens.pos < len(tokens.items):
        _parse_joint(tokens, skel, offsets, -1, tokens.expect("ROOT"))
    if not skel.names:
        raise tokens.error("no ROOT joint")
    skel.offsets = np.array(offsets, dtype=np.float64)
    if match is None:
        raise DataError("no MOTION section (truncated BVH?)", path=path, field="MOTION")
    header = re.compile(r"\s*Frames\s*:\s*(\S*)\s*\n\s*Frame\s*Time\s*:\s*(\S*)[^\S\n]*(\n|$)", re.IGNORECASE)
    head = header.match(text, match.end())
    if head is None:
        raise DataError("MOTION must be followed by 'Frames: N' and 'Frame Time: seconds' lines (truncated BVH?)",
                        path=path, field="MOTION")
    try:
        frames, frame_time = int(head.group(1)), float(head.group(2))
    except ValueError:
        raise DataError(f"bad header 'Frames: {head.group(1)}' / 'Frame Time: {head.group(2)}'", path=path,
                        field="MOTION", expected="an integer frame count and a frame time in seconds") from None
    if frames < 1 or not frame_time > 0:
        raise DataError(("no records: " if frames < 1 else "") + f"Frames: {frames}, Frame Time: {frame_time}",
                        path=path, field="MOTION", expected="at least one frame and a positive frame time")
    first_line = text.count("\n", 0, head.end()) + 1
    values = _parse_motion_block(text[head.end():], frames, skel.num_channels, first_line, path)
    return BvhData(skel, values, frame_time, None if path is None else str(path))


def _parse_motion_block(block: str, frames: int, channels: int, first_line: int, path: object) -> np.ndarray:
    tokens = block.split()
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        for n, line in enumerate(block.splitlines()):
            for tok in line.split():
                try:
                    float(tok)
                except ValueError:
                    raise DataError(f"line {first_line + n}: motion value '{tok}' is not a number", path=path,
                                    field="MOTION") from None
        raise
    expected = frames * channels
    if values.size != expected:
        rows = [len(line.split()) for line in block.splitlines() if line.strip()]
        bad = next((i for i, r in enumerate(rows) if r != channels), None)
        detail = f"; frame {bad} has {rows[bad]} values" if bad is not None else ""
        state = "truncated BVH" if values.size < expected else "more data than the header says"
        raise DataError(f"{state}: header says {frames} frames x {channels} channels = {expected} values, found "
                        f"{values.size} ({values.size // max(channels, 1)} complete frames){detail}", path=path,
                        field="MOTION", expected=f"{channels} values per frame, one frame per line")
    return values.reshape(frames, channels)


def parse_bvh(path: str | Path) -> BvhData:
    """Read and parse a BVH file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path, expected="an existing .bvh file") from None
    except OSError as exc:
        raise DataError(f"cannot read file: {exc}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # old exporters write joint names in a legacy code page
    return parse_bvh_text(text, path)


def forward_kinematics(skeleton: BvhSkeleton, values: np.ndarray) -> np.ndarray:
    """World positions [F, joints + End Sites, 3] (file units), order of ``skeleton.point_names``."""
    frames = values.shape[0]
    num_joints = len(skeleton.names)
    points = np.empty((frames, num_joints + len(skeleton.end_sites), 3))
    world: list[np.ndarray | None] = []
    col = 0
    for j, chans in enumerate(skeleton.channels):
        block = values[:, col:col + len(chans)]
        col += len(chans)
        trans = np.repeat(skeleton.offsets[j][None], frames, axis=0)
        rot_cols, axes = [], ""
        for k, name in enumerate(chans):
            if name.endswith("position"):
                trans[:, "XYZ".index(name[0])] = block[:, k]
            else:
                rot_cols.append(k)
                axes += name[0]
        local = euler_to_matrix(block[:, rot_cols], axes) if axes else None
        parent = skeleton.parents[j]
        parent_rot = world[parent] if parent >= 0 else None
        base = points[:, parent] if parent >= 0 else 0.0
        points[:, j] = base + (trans if parent_rot is None else np.einsum("fij,fj->fi", parent_rot, trans))
        world.append(local if parent_rot is None else (parent_rot if local is None else parent_rot @ local))
    for e, (parent, offset) in enumerate(skeleton.end_sites):
        rot = world[parent]
        points[:, num_joints + e] = points[:, parent] + (offset if rot is None else rot @ offset)
    return points


def _up_is_z(points: np.ndarray, skeleton: BvhSkeleton, mapped: ResolvedMap | None) -> bool:
    """Whether a file is z-up: from head minus ankles when the rig is known, else from the rest offsets."""
    if mapped is not None:
        t2m = mapped.apply(points)
        up = np.median(t2m[:, 15] - 0.5 * (t2m[:, 7] + t2m[:, 8]), axis=0)
        return abs(up[2]) > abs(up[1])
    # Legs and spine are vertical in any rest pose, arms horizontal: the axis with most length is up.
    length = np.abs(skeleton.offsets).sum(axis=0) + sum(np.abs(o) for _, o in skeleton.end_sites)
    return bool(length[2] > length[1])


def _auto_unit(points: np.ndarray, cmu: bool) -> float:
    """Metres per unit that makes the figure closest to a human size (CMU units only for CMU-named rigs)."""
    size = body_size(points)
    if size <= 0:
        return 1.0
    names = ["m", "cm", "mm"] + (["cmu"] if cmu else [])
    return min((UNIT_SCALES[n] for n in names), key=lambda s: abs(np.log(size * s / _TYPICAL_BODY_SIZE_M)))


def read_bvh(path: str | Path, *, unit: str | float = "auto", target_fps: float | None = 20.0,
             source_fps: float | None = None, joint_map: JointMapArg = "auto", keep_all_joints: bool = False,
             up_axis: str = "auto", start_frame: int = 0, min_frames: int = MIN_FRAMES, check_scale: bool = True,
             texts: tuple[str, ...] | list[str] = (), style: str | None = None) -> MotionClip:
    """Load a BVH as a MotionClip: 22 T2M joints (y up, metres, target_fps) unless joint_map=None/keep_all_joints.

    unit: 'auto' picks m, cm, mm (or CMU units for CMU rigs) to make a human-sized figure; or 'm', 'cm',
    'mm', 'inch', 'cmu' or metres per unit. source_fps overrides the header's Frame Time (the CMU salsa
    files say 120 but are 60 fps). joint_map: 'auto' (a shipped map, else one inferred from the bone names:
    kpop_helpers.data.rig_names; the clip's `rig` says which), 'cmu', 'daz', 'bandai', 'mixamo', 't2m', a dict
    {t2m_joint: bone} (see kpop_helpers.data.rigs), or None for the file's joints in file order.
    keep_all_joints=True returns every joint and End Site ('<bone>/End') instead of T2M joints.
    start_frame drops leading frames (e.g. 1 for converters that prepend a T-pose).
    """
    data = parse_bvh(path)
    skel = data.skeleton
    fps = float(source_fps) if source_fps is not None else 1.0 / data.frame_time
    if not (np.isfinite(fps) and fps > 0):
        raise DataError(f"source_fps {source_fps!r}", path=path, field="source_fps", expected="a positive number")
    if not 0 <= start_frame < data.values.shape[0]:
        raise DataError(f"start_frame {start_frame} with {data.values.shape[0]} frames", path=path,
                        field="start_frame", expected="0 <= start_frame < number of frames")
    points = forward_kinematics(skel, data.values[start_frame:])
    if up_axis not in ("auto", "y", "z"):
        raise DataError(f"up_axis {up_axis!r}", path=path, field="up_axis", expected="'auto', 'y' or 'z'")
    names, to_t2m = skel.point_names, not (keep_all_joints or joint_map is None)
    try:  # the map chosen (shipped, or inferred from bone names); only a T2M read needs one
        mapped: ResolvedMap | None = choose_joint_map(joint_map or "auto", skel, points, path=path)
    except DataError:
        if to_t2m:
            raise
        mapped = None
    if up_axis == "z" or (up_axis == "auto" and _up_is_z(points, skel, mapped)):
        points = points @ _Z_UP_TO_Y_UP.T
    if not to_t2m:
        keep = len(names) if keep_all_joints else len(skel.names)
        selected, joint_names, expected = points[:, :keep], tuple(names[:keep]), None
    else:
        assert mapped is not None
        selected = mapped.apply(points)
        joint_names, expected = tuple(T2M_JOINT_NAMES), len(T2M_JOINT_NAMES)
    cmu = (mapped is not None and mapped.rig == "cmu") or "lhipjoint" in {normalize_bone_name(n) for n in names}
    scale = _auto_unit(selected, cmu) if unit == "auto" else unit_scale(unit, path=path)
    positions = selected * scale
    warn_size(positions, path=path, scale=scale, unit=unit)  # a DataWarning when not person-sized
    out_fps = fps
    if target_fps is not None and abs(float(target_fps) - fps) > 1e-6 * fps:
        positions = resample_positions(positions, fps, float(target_fps))
        out_fps = float(target_fps)
    clip = MotionClip(positions.astype(np.float32), out_fps, list(texts), style, str(path), joint_names,
                      rig=mapped.label if to_t2m and mapped is not None else None)
    return validate_clip(clip, path=path, expected_joints=expected, min_frames=min_frames, check_scale=check_scale)


def _clip_to_bvh(clip: MotionClip, parents: list[int]) -> BvhData:
    """A BVH of a positions clip: rotations from the bone directions, exact positions in translation channels."""
    pos = np.asarray(clip.positions, dtype=np.float64)
    joints = pos.shape[1]
    names = list(clip.joint_names or (T2M_JOINT_NAMES if joints == len(T2M_JOINT_NAMES)
                                      else [f"joint{i}" for i in range(joints)]))
    par_idx = np.array([max(p, 0) for p in parents])
    lengths = np.linalg.norm(pos[0] - pos[0, par_idx], axis=-1)
    is_t2m = joints == len(T2M_JOINT_NAMES) and list(parents) == list(T2M_PARENTS)
    rest = T2M_RAW_OFFSETS * lengths[:, None] if is_t2m else pos[0] - pos[0, par_idx]
    rest[[i for i, p in enumerate(parents) if p < 0]] = 0.0
    world = bone_world_rotations(pos, parents, rest)
    values = np.empty((pos.shape[0], joints, 6))
    for j, p in enumerate(parents):
        if p < 0:
            values[:, j, :3], local = pos[:, j], world[:, j]
        else:
            inv_parent = np.swapaxes(world[:, p], -1, -2)
            values[:, j, :3] = np.einsum("fij,fj->fi", inv_parent, pos[:, j] - pos[:, p])
            local = inv_parent @ world[:, j]
        values[:, j, 3:] = matrix_to_euler_zyx(local)
    skeleton = BvhSkeleton(names, list(parents), rest, [_WRITE_CHANNELS] * joints)
    return BvhData(skeleton, values.reshape(pos.shape[0], -1), 1.0 / float(clip.fps), clip.source)


def _format_hierarchy(skel: BvhSkeleton) -> tuple[list[str], list[int]]:
    """HIERARCHY lines, and the depth-first joint order in which they list the joints (the MOTION column order)."""
    lines, order = ["HIERARCHY"], []

    def emit(j: int, depth: int) -> None:
        pad = "\t" * depth
        order.append(j)
        lines.extend([f"{pad}{'ROOT' if skel.parents[j] < 0 else 'JOINT'} {skel.names[j]}", pad + "{",
                      pad + "\tOFFSET " + " ".join(f"{v:.9g}" for v in skel.offsets[j])])
        if skel.channels[j]:
            lines.append(f"{pad}\tCHANNELS {len(skel.channels[j])} " + " ".join(skel.channels[j]))
        for c in (c for c, p in enumerate(skel.parents) if p == j):
            emit(c, depth + 1)
        for offset in (o for p, o in skel.end_sites if p == j):
            lines.extend([f"{pad}\tEnd Site", pad + "\t{",
                          pad + "\t\tOFFSET " + " ".join(f"{v:.9g}" for v in offset), pad + "\t}"])
        lines.append(pad + "}")

    for root in (j for j, p in enumerate(skel.parents) if p < 0):
        emit(root, 0)
    return lines, order


def write_bvh(path: str | Path, motion: MotionClip | BvhData, *, parents: list[int] | None = None) -> Path:
    """Write a BVH atomically: a BvhData as is, or a positions clip as a rig that read_bvh reads back exactly.

    A clip becomes one joint per clip joint (T2M names and parents for 22-joint clips, else pass parents)
    with ``Xposition Yposition Zposition Zrotation Yrotation Xrotation`` channels: rotations follow the
    bones (rest pose: T2M raw offsets for T2M clips, else frame 0) and translations keep bone lengths exact.
    Joints are written depth first, so read_bvh(joint_map=None) returns them in that order (by name).
    """
    path = Path(path)
    if isinstance(motion, MotionClip):
        parents = list(T2M_PARENTS) if parents is None and motion.num_joints == len(T2M_PARENTS) else parents
        if parents is None or len(parents) != motion.num_joints or any(p >= i for i, p in enumerate(parents)):
            raise DataError(f"parents {parents} do not fit {motion.num_joints} joints", path=path, field="parents",
                            expected="one parent index per joint, each smaller than the joint's own index, -1 "
                                     "for roots")
        motion = _clip_to_bvh(motion, parents)
    if motion.values.ndim != 2 or motion.values.shape[1] != motion.skeleton.num_channels:
        raise DataError(f"values have shape {motion.values.shape}", path=path, field="values",
                        expected=f"[frames, {motion.skeleton.num_channels}] matching the skeleton's channels")
    lines, order = _format_hierarchy(motion.skeleton)
    starts = np.cumsum([0] + [len(c) for c in motion.skeleton.channels])
    values = np.asarray(motion.values, dtype=np.float64)[:, [c for j in order for c in range(starts[j], starts[j + 1])]]
    rows = "\n".join(" ".join(f"{v:.9g}" for v in row) for row in values.tolist())
    lines += ["MOTION", f"Frames: {values.shape[0]}", f"Frame Time: {motion.frame_time!r}"]
    atomic_write_text(path, "\n".join(lines) + "\n" + rows + "\n")
    return path
