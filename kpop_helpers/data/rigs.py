"""Rigs: bone-name maps from common BVH rigs to the 22 T2M joints, their resolution, rotation helpers.

A map gives, for every T2M joint, one or more alternative *points* (the first that exists in the file
wins). A point is a bone name, an End Site (``"<bone>/End"``), or ``Lerp(a, b, t)``: the point at
fraction ``t`` of the way from point ``a`` to point ``b``. Lerps are only used between a bone and its
child, so the interpolated point moves rigidly with bone ``a``.

Choices for T2M joints that have no exact counterpart (all approximations, none learned):
- CMU MotionBuilder rig (31 joints): spine1 = ``Spine``, spine3 = ``Spine1`` (where neck and
  clavicles branch, like T2M spine3), spine2 = midway between them. ``LowerBack``, ``Neck`` and
  ``LeftShoulder`` have zero-length offsets in that rig, so T2M collars are midway along the clavicle
  (``LeftShoulder`` -> ``LeftArm``) and T2M neck is ``Neck1``.
- DAZ/Poser/Second-Life rig (the CMU salsa files): spine1 = ``abdomen``, spine2 = ``chest``,
  spine3 = 30 % of the way from ``chest`` to ``neck`` (T2M spine3 sits just above spine2); collars
  midway along ``lCollar`` -> ``lShldr`` because ``lCollar`` sits on the mid-line; the toe is the End
  Site of ``lFoot`` (the rig has no toe joint); the hips are ``lThigh`` (``lButtock`` is a short stub).
- Mixamo: one bone per T2M joint (Spine, Spine1, Spine2 = spine1..3; LeftShoulder = collar).
- Bandai Namco Research Motiondataset (22 joints): spine1 = ``Spine``, spine3 = ``Chest`` (where the
  shoulders branch), spine2 = midway between them; collar = ``Shoulder_L``; the root ``joint_Root`` (a
  floor projection) is not used.

Bone names match case-insensitively, ignoring a namespace (``mixamorig:``, ``Armature|``) and the
characters space, ``_``, ``-`` and ``.``. When no shipped map fits, ``joint_map="auto"`` infers one from the
bone names (``kpop_helpers.data.rig_names``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import T2M_JOINT_NAMES

END_SITE_SUFFIX = "/End"


@dataclass(frozen=True)
class Lerp:
    """The point at fraction ``t`` of the way from point ``start`` to point ``end``."""

    start: str
    end: str
    t: float = 0.5


Point = str | Lerp


@dataclass(frozen=True)
class RigMap:
    """A named map from each T2M joint to alternative points of a rig (first match wins)."""

    name: str
    description: str
    joints: Mapping[str, tuple[Point, ...]]


def _sided(template: Mapping[str, tuple[Point, ...]], left: str, right: str) -> dict[str, tuple[Point, ...]]:
    """Expand '{s}' in a left/right template into the left_* and right_* T2M joints."""
    out: dict[str, tuple[Point, ...]] = {}
    for joint, points in template.items():
        for side, prefix in (("left", left), ("right", right)):
            def fill(p: Point, prefix: str = prefix) -> Point:
                if isinstance(p, Lerp):
                    return Lerp(p.start.format(s=prefix), p.end.format(s=prefix), p.t)
                return p.format(s=prefix)
            out[f"{side}_{joint}"] = tuple(fill(p) for p in points)
    return out


T2M_RIG = RigMap("t2m", "T2M joint names (files written by write_bvh)", {n: (n,) for n in T2M_JOINT_NAMES})

CMU_RIG = RigMap(
    "cmu", "CMU MotionBuilder-friendly release (cgspeed): Hips, LHipJoint, LeftUpLeg, Spine1, Neck1, ...",
    {
        "pelvis": ("Hips",), "spine1": ("Spine",), "spine2": (Lerp("Spine", "Spine1", 0.5),),
        "spine3": ("Spine1",), "neck": ("Neck1",), "head": ("Head",),
        **_sided({"hip": ("{s}UpLeg",), "knee": ("{s}Leg",), "ankle": ("{s}Foot",), "foot": ("{s}ToeBase",),
                  "collar": (Lerp("{s}Shoulder", "{s}Arm", 0.5),), "shoulder": ("{s}Arm",),
                  "elbow": ("{s}ForeArm",), "wrist": ("{s}Hand",)}, "Left", "Right"),
    },
)

DAZ_RIG = RigMap(
    "daz", "DAZ/Poser/Second-Life rig (e.g. the CMU salsa files): hip, abdomen, chest, lThigh, lShldr, ...",
    {
        "pelvis": ("hip",), "spine1": ("abdomen",), "spine2": ("chest",),
        "spine3": (Lerp("chest", "neck", 0.3),), "neck": ("neck",), "head": ("head",),
        **_sided({"hip": ("{s}Thigh",), "knee": ("{s}Shin",), "ankle": ("{s}Foot",),
                  "foot": ("{s}Toe", "{s}Foot" + END_SITE_SUFFIX),
                  "collar": (Lerp("{s}Collar", "{s}Shldr", 0.5),), "shoulder": ("{s}Shldr",),
                  "elbow": ("{s}ForeArm",), "wrist": ("{s}Hand",)}, "l", "r"),
    },
)

MIXAMO_RIG = RigMap(
    "mixamo", "Mixamo rig: mixamorig:Hips, Spine, Spine1, Spine2, Neck, Head, LeftUpLeg, LeftShoulder, ...",
    {
        "pelvis": ("Hips",), "spine1": ("Spine",), "spine2": ("Spine1",), "spine3": ("Spine2",),
        "neck": ("Neck",), "head": ("Head",),
        **_sided({"hip": ("{s}UpLeg",), "knee": ("{s}Leg",), "ankle": ("{s}Foot",), "foot": ("{s}ToeBase",),
                  "collar": ("{s}Shoulder",), "shoulder": ("{s}Arm",), "elbow": ("{s}ForeArm",),
                  "wrist": ("{s}Hand",)}, "Left", "Right"),
    },
)

BANDAI_RIG = RigMap(
    "bandai", "Bandai Namco Research Motiondataset rig: joint_Root, Hips, Spine, Chest, Neck, Head, UpperLeg_L, ...",
    {
        "pelvis": ("Hips",), "spine1": ("Spine",), "spine2": (Lerp("Spine", "Chest", 0.5),), "spine3": ("Chest",),
        "neck": ("Neck",), "head": ("Head",),
        **_sided({"hip": ("UpperLeg_{s}",), "knee": ("LowerLeg_{s}",), "ankle": ("Foot_{s}",), "foot": ("Toes_{s}",),
                  "collar": ("Shoulder_{s}",), "shoulder": ("UpperArm_{s}",), "elbow": ("LowerArm_{s}",),
                  "wrist": ("Hand_{s}",)}, "L", "R"),
    },
)

# Auto-detection tries these in order; CMU goes before Mixamo because both use Hips/LeftUpLeg/Spine1,
# and only CMU has Neck1.
RIGS: dict[str, RigMap] = {r.name: r for r in (T2M_RIG, CMU_RIG, DAZ_RIG, BANDAI_RIG, MIXAMO_RIG)}

JointMapArg = str | Mapping[str, "Point | tuple | list"] | RigMap | None


def normalize_bone_name(name: str) -> str:
    """Canonical form of a bone name for matching: no namespace, lower case, no separators."""
    name = re.split(r"[:|]", name)[-1]
    name = re.sub(r"^mixamorig\d*_", "", name, flags=re.IGNORECASE)
    return re.sub(r"[\s_\-.]", "", name).lower()


@dataclass(frozen=True)
class ResolvedMap:
    """Indices into a file's points for each T2M joint: position = (1 - t) * p[a] + t * p[b]."""

    rig: str
    start: np.ndarray
    end: np.ndarray
    t: np.ndarray
    note: str = ""

    @property
    def label(self) -> str:
        """The map's name, with what was interpolated: 'cmu', 'inferred (interpolated: spine2)'."""
        return f"{self.rig} ({self.note})" if self.note else self.rig

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map points [..., P, 3] to T2M joints [..., 22, 3]."""
        t = self.t[:, None]
        return points[..., self.start, :] * (1.0 - t) + points[..., self.end, :] * t

    def describe(self, point_names: Sequence[str]) -> dict[str, str]:
        """Each T2M joint -> the file point it comes from ('Spine', or 'Hips -> Spine at 0.4')."""
        out = {}
        for j, joint in enumerate(T2M_JOINT_NAMES):
            a, b, t = int(self.start[j]), int(self.end[j]), float(self.t[j])
            out[joint] = point_names[a] if a == b or t == 0 else f"{point_names[a]} -> {point_names[b]} at {t:.3g}"
        return out


def rig_from_dict(joint_map: Mapping[str, object], name: str = "custom") -> RigMap:
    """Build a RigMap from {t2m_joint: bone | Lerp | (bone_a, bone_b, t) | [alternatives...]}."""
    unknown = sorted(set(joint_map) - set(T2M_JOINT_NAMES))
    if unknown:
        raise DataError(f"unknown T2M joint names {unknown}", field="joint_map",
                        expected=f"keys among {list(T2M_JOINT_NAMES)}")

    def point(spec: object) -> Point:
        if isinstance(spec, (str, Lerp)):
            return spec
        if isinstance(spec, (tuple, list)) and len(spec) == 3 and isinstance(spec[2], (int, float)):
            return Lerp(str(spec[0]), str(spec[1]), float(spec[2]))
        raise DataError(f"bad point {spec!r}", field="joint_map",
                        expected="a bone name, Lerp(a, b, t), (a, b, t) or a list of those")

    joints: dict[str, tuple[Point, ...]] = {}
    for joint, spec in joint_map.items():
        is_alternatives = isinstance(spec, list) or (isinstance(spec, tuple) and not
                                                     (len(spec) == 3 and isinstance(spec[2], (int, float))))
        joints[joint] = tuple(point(s) for s in spec) if is_alternatives else (point(spec),)
    return RigMap(name, "user joint_map", joints)


def _resolve(rig: RigMap, lookup: Mapping[str, int]) -> tuple[ResolvedMap | None, list[str]]:
    """Resolve a rig against normalized point names; returns (map or None, T2M joints that failed)."""
    starts, ends, ts, missing = [], [], [], []
    for joint in T2M_JOINT_NAMES:
        for alt in rig.joints.get(joint, ()):
            a, b, t = (alt.start, alt.end, alt.t) if isinstance(alt, Lerp) else (alt, alt, 0.0)
            ia, ib = lookup.get(normalize_bone_name(a)), lookup.get(normalize_bone_name(b))
            if ia is not None and ib is not None:
                starts.append(ia), ends.append(ib), ts.append(t)
                break
        else:
            missing.append(joint)
    if missing:
        return None, missing
    return ResolvedMap(rig.name, np.array(starts), np.array(ends), np.array(ts, dtype=np.float64)), []


def match_shipped(joint_map: JointMapArg, point_names: Sequence[str], *,
                  path: object = None) -> tuple[ResolvedMap | None, str, list[str]]:
    """(map, name, []) for the first candidate map that fits, else (None, closest map, its missing T2M joints)."""
    lookup: dict[str, int] = {}
    for i, name in enumerate(point_names):
        lookup.setdefault(normalize_bone_name(name), i)
    if joint_map == "auto":
        candidates = list(RIGS.values())
    elif isinstance(joint_map, str):
        if joint_map not in RIGS:
            raise DataError(f"unknown rig {joint_map!r}", path=path, field="joint_map",
                            expected=f"'auto', one of {sorted(RIGS)}, or a dict {{t2m_joint: bone}}")
        candidates = [RIGS[joint_map]]
    elif isinstance(joint_map, RigMap):
        candidates = [joint_map]
    else:
        candidates = [rig_from_dict(joint_map)]
    best: tuple[str, list[str]] | None = None
    for rig in candidates:
        resolved, missing = _resolve(rig, lookup)
        if resolved is not None:
            return resolved, rig.name, []
        if best is None or len(missing) < len(best[1]):
            best = (rig.name, missing)
    assert best is not None
    return None, best[0], best[1]


def unknown_rig_error(rig_name: str, missing: list[str], point_names: Sequence[str], *, path: object = None,
                      by_names: str = "") -> DataError:
    """The 'unknown rig' error: what is missing, the file's bones and how to pass a joint_map."""
    bones = [n for n in point_names if not n.endswith(END_SITE_SUFFIX)]
    if len(missing) == len(T2M_JOINT_NAMES):
        what = f"none of the {len(missing)} T2M joints {list(T2M_JOINT_NAMES)} matched a shipped rig map"
    else:
        what = f"could not map T2M joints {missing} (closest shipped map: '{rig_name}')"
    if by_names:
        what += f"; by bone names: {by_names}"
    return DataError(
        f"unknown rig: {what}. Bones in the file: {bones}. Pass joint_map={{'pelvis': '<bone>', "
        f"'left_hip': '<bone>', ...}} with a bone for every T2M joint; use '<bone>/End' for an End Site, "
        f"kpop_helpers.data.Lerp('BoneA', 'BoneB', 0.5) for a point between two bones, or joint_map=None "
        f"to keep the file's own joints", path=path, field="joint_map")


def resolve_joint_map(joint_map: JointMapArg, point_names: Sequence[str], *, path: object = None) -> ResolvedMap:
    """Resolve 'auto', a shipped rig name, a RigMap or a dict against a file's point names (bones + End Sites).

    Shipped maps only; read_bvh also infers a map from bone names (kpop_helpers.data.rig_names)."""
    resolved, rig_name, missing = match_shipped(joint_map, point_names, path=path)
    if resolved is None:
        raise unknown_rig_error(rig_name, missing, point_names, path=path)
    return resolved


def detect_rig(point_names: Sequence[str]) -> str | None:
    """Name of the first shipped rig whose map resolves against these names, or None."""
    lookup: dict[str, int] = {}
    for i, name in enumerate(point_names):
        lookup.setdefault(normalize_bone_name(name), i)
    for rig in RIGS.values():
        if _resolve(rig, lookup)[0] is not None:
            return rig.name
    return None


# Rotation helpers for rigs: BVH Euler channels and rotations that follow a figure's bones.


def euler_to_matrix(angles_deg: np.ndarray, axes: str) -> np.ndarray:
    """Rotation matrices [F, 3, 3] for angles [F, n] in degrees applied as R_axes[0] @ R_axes[1] @ ..."""
    angles = np.radians(np.asarray(angles_deg, dtype=np.float64))
    out = np.broadcast_to(np.eye(3), (angles.shape[0], 3, 3)).copy()
    for k, axis in enumerate(axes.upper()):
        c, s = np.cos(angles[:, k]), np.sin(angles[:, k])
        m = np.zeros_like(out)
        i, j = {"X": (1, 2), "Y": (2, 0), "Z": (0, 1)}[axis]
        m[:, "XYZ".index(axis), "XYZ".index(axis)] = 1.0
        m[:, i, i], m[:, j, j], m[:, i, j], m[:, j, i] = c, c, -s, s
        out = out @ m
    return out


def matrix_to_euler_zyx(m: np.ndarray) -> np.ndarray:
    """Angles [F, 3] in degrees (z, y, x) with m = Rz @ Ry @ Rx."""
    sy = np.clip(-m[:, 2, 0], -1.0, 1.0)
    y = np.arcsin(sy)
    gimbal = np.abs(sy) > 1.0 - 1e-9
    z = np.where(gimbal, np.arctan2(-m[:, 0, 1], m[:, 1, 1]), np.arctan2(m[:, 1, 0], m[:, 0, 0]))
    x = np.where(gimbal, 0.0, np.arctan2(m[:, 2, 1], m[:, 2, 2]))
    return np.degrees(np.stack([z, y, x], axis=-1))


def _frame(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal frames [..., 3, 3] (columns) from a primary and a secondary vector, and a validity mask."""
    e1 = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
    v = v - (v * e1).sum(-1, keepdims=True) * e1
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    e2 = v / np.maximum(norm, 1e-12)
    ok = (np.linalg.norm(u, axis=-1) > 1e-9) & (norm[..., 0] > 1e-9)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=-1), ok


def bone_world_rotations(positions: np.ndarray, parents: list[int], rest: np.ndarray) -> np.ndarray:
    """World rotations [F, J, 3, 3] turning each joint's rest bones (rest [J, 3]) into the observed ones."""
    frames, joints = positions.shape[:2]
    rotations = np.broadcast_to(np.eye(3), (frames, joints, 3, 3)).copy()
    for j in range(joints):
        children = sorted((c for c in range(joints) if parents[c] == j), key=lambda c: -np.linalg.norm(rest[c]))
        if not children:
            rotations[:, j] = rotations[:, parents[j]] if parents[j] >= 0 else rotations[:, j]
            continue
        primary = positions[:, children[0]] - positions[:, j]
        # A second child fixes the twist; single-bone joints get a helper axis that is never parallel.
        helper_rest = rest[children[1]] if len(children) > 1 else np.cross(rest[children[0]], [0.3, 0.5, 0.8])
        secondary = positions[:, children[1]] - positions[:, j] if len(children) > 1 else None
        if secondary is None:
            parent_rot = rotations[:, parents[j]] if parents[j] >= 0 else rotations[:, j]
            secondary = np.einsum("fij,j->fi", parent_rot, helper_rest)
        rest_frame, rest_ok = _frame(rest[children[0]][None], helper_rest[None])
        cur_frame, ok = _frame(primary, secondary)
        if rest_ok[0]:
            rotations[ok, j] = cur_frame[ok] @ rest_frame[0].T
    return rotations
