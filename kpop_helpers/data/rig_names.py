"""Any humanoid rig by its bone names: the T2M map inferred when no shipped map (kpop_helpers.data.rigs) fits.

1. Names are normalised: a namespace (``mixamorig:``, ``Armature|``), a prefix every bone shares (``Bip01 ``,
   ``Dancer1_``), ``DEF-``, case, separators, camelCase and numbers go; the side comes from ``Left``/``Right``,
   ``L``/``R`` (``L_``, ``_l``, ``.L``, ``LHip``, ``lThigh``) or ``Lft``/``Rt``; ``L5``/``T8`` are spine bones;
   fingers, twist/roll/IK bones and end bones are left out. Parts are recognised by usual names (PART_NAMES).
2. Chains are found through the hierarchy, so each T2M chain is a parent chain in the file: per side the first
   hand/wrist, its nearest forearm ancestor, that one's upper arm (``shoulder`` counts) and collar; the first
   foot/ankle, its shin and thigh ancestors, its first toe descendant (or End Site). The pelvis is where the
   thighs meet, the spine the bones from it to the head, T2M spine3 the bone where the arms branch.
3. Left and right must mirror on the motion itself (bone lengths, arms on the legs' sides, toes forward of
   ``cross(left - right, up)``), else DataError.
4. T2M joints without a bone are interpolated along their chain and reported: spine1/spine2 at 0.40/0.83 of
   pelvis -> spine3 (spine bones are used where there are some), a neck at 0.68 of spine3 -> head, a collar
   midway along the bone the upper arm hangs from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kpop_helpers.data.rigs import (END_SITE_SUFFIX, JointMapArg, Lerp, Point, ResolvedMap, RigMap, match_shipped,
                                    unknown_rig_error)
from kpop_helpers.motion.skeleton import T2M_JOINT_NAMES

# Compact names (lower case, no side, separators or digits) of each body part. Sided parts need a side.
PART_NAMES: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in {
    "pelvis": "hips hip pelvis hipcenter hipscenter",
    "spine": "spine abdomen ab abs chest upperchest chestupper lowerchest chestlower torso lowerback upperback "
             "midback middleback thorax waist belly stomach ribcage spinelower spineupper spinemid spinemiddle",
    "neck": "neck lowerneck upperneck necklower neckupper",
    "head": "head",
    "collar": "clavicle collar collarbone clav scapula shoulderblade",
    "shoulder": "shoulder shldr",
    "upperarm": "arm upperarm uparm uarm humerus armupper bicep",
    "forearm": "forearm lowerarm loarm lowarm elbow radius ulna farm armlower forarm",
    "hand": "hand wrist",
    "thigh": "thigh upleg upperleg femur hip legupper uleg",
    "shin": "calf shin leg knee lowerleg loleg lowleg tibia crus leglower",
    "foot": "foot ankle",
    "toe": "toe toes toebase ball",
}.items()}
_CENTRE = ("pelvis", "spine", "neck", "head")
_LEFT, _RIGHT = frozenset({"left", "l", "lft", "lt"}), frozenset({"right", "r", "rt", "rgt", "rght"})
_FINGERS = frozenset("thumb index middle ring pinky pinkie little finger fingers metacarpal carpal".split())
_SKIP = frozenset("end nub tip top twist roll ik fk helper pole target ctrl control dummy null aux adjust "
                  "corrective".split())
_NOISE = frozenset("joint jnt jt bone bn bind skin def drv".split())
_NAMESPACE = re.compile(r"^.*[:|]")
_KNOWN_PREFIX = re.compile(r"^(mixamorig\d*_|bip\d+[ _]|(def|org|mch)-)", re.IGNORECASE)
_VERTEBRA = re.compile(r"^[CTLS]\d{1,2}$")
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
# T2M proportions along pelvis -> spine3 (with no spine bone: along pelvis -> neck) and spine3 -> head.
_SPINE_FRACTIONS = {"spine1": 0.40, "spine2": 0.83}
_SPINE_ONLY_FRACTIONS = {"spine1": 0.24, "spine2": 0.50, "spine3": 0.60}
_NECK_FRACTION = 0.68
_MAX_FRAMES = 120


@dataclass(frozen=True)
class BoneLabel:
    """What a bone name says: side ('left', 'right' or None) and body part (a PART_NAMES key or None)."""

    side: str | None
    part: str | None


def _part(compact: str, side: str | None) -> str | None:
    for part, names in PART_NAMES.items():
        if compact in names and (side is None) == (part in _CENTRE):
            return part
    if side is None and any(k in compact for k in ("spine", "chest", "torso", "abdomen", "thorax")):
        return "spine"
    return "neck" if side is None and "neck" in compact else None


def label_bone(name: str, prefix: str = "") -> BoneLabel:
    """Side and body part of one bone name (``prefix``: a prefix every bone of the rig shares)."""
    name = _NAMESPACE.sub("", name[len(prefix):] if prefix and name.startswith(prefix) else name)
    name = _KNOWN_PREFIX.sub("", name.strip())
    if _VERTEBRA.match(name):
        return BoneLabel(None, "spine")
    words: list[str] = []
    for word in _WORDS.findall(name):
        low = word.lower()
        known = low in _LEFT | _RIGHT or any(low in names for names in PART_NAMES.values())
        # "LUArm", "LFArm" (OptiTrack): a side letter glued to an abbreviation.
        words += list(low) if word.isupper() and len(word) in (2, 3) and word[0] in "LR" and not known else [low]
    words = [w for w in words if not w.isdigit()]
    lefts, rights = [w for w in words if w in _LEFT], [w for w in words if w in _RIGHT]
    side = "left" if lefts and not rights else "right" if rights and not lefts else None
    if set(words) & (_FINGERS | _SKIP):
        return BoneLabel(side, None)
    compact = "".join(w for w in words if w not in _LEFT | _RIGHT | _NOISE)
    part = _part(compact, side)
    for glued, glued_side in (("left", "left"), ("right", "right"), ("l", "left"), ("r", "right")):
        if part is None and side is None and compact.startswith(glued):  # "lthigh": a side glued to a name
            part = _part(compact[len(glued):], glued_side)
            side = glued_side if part else None
    return BoneLabel(side, part)


def shared_prefix(names: Sequence[str]) -> str:
    """The prefix (up to a separator) every bone name shares, such as 'Bip01 ' or 'Dancer1_'; '' if none."""
    bones = [n for n in names if not n.endswith(END_SITE_SUFFIX)]
    if len(bones) < 2:
        return ""
    common = os.path.commonprefix([n + " " for n in bones])
    cut = max(common.rfind(c) for c in " _:|.-")
    return common[:cut + 1] if cut > 0 else ""


@dataclass
class InferredMap:
    """A T2M map found from bone names: per T2M joint (point a, point b, t) into the file's points."""

    points: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    interpolated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and len(self.points) == len(T2M_JOINT_NAMES)

    def rig_map(self) -> RigMap:
        """The map as a RigMap of bone names (usable as read_bvh(joint_map=...))."""
        def point(a: int, b: int, t: float) -> Point:
            return self.names[a] if a == b or t == 0 else Lerp(self.names[a], self.names[b], t)
        return RigMap("inferred", "inferred from bone names",
                      {j: (point(*self.points[j]),) for j in T2M_JOINT_NAMES if j in self.points})

    def resolved(self) -> ResolvedMap:
        a, b, t = zip(*(self.points[j] for j in T2M_JOINT_NAMES))
        note = f"interpolated: {', '.join(self.interpolated)}" if self.interpolated else ""
        return ResolvedMap("inferred", np.array(a), np.array(b), np.array(t, dtype=np.float64), note)

    def explain(self) -> str:
        """What the name-based mapping could not do, in one line."""
        return "; ".join(self.problems) if self.problems else "every T2M joint found"


class _Rig:
    """Points (bones, then End Sites) with parents, labels and motion, and tree helpers."""

    def __init__(self, names: Sequence[str], parents: Sequence[int], points: np.ndarray):
        self.names, self.parents = list(names), list(parents)
        step = max(1, points.shape[0] // _MAX_FRAMES)
        self.pos = np.asarray(points[::step], dtype=np.float64)
        prefix = shared_prefix(self.names)
        self.labels = [BoneLabel(None, None) if n.endswith(END_SITE_SUFFIX) else label_bone(n, prefix)
                       for n in self.names]
        self.depth = [len(self.ancestors(i)) for i in range(len(self.names))]
        self.tol = 0.02 * max(float(np.median(np.ptp(self.pos, axis=1).max(axis=-1))), 1e-9)

    def ancestors(self, i: int) -> list[int]:
        out = []
        while self.parents[i] >= 0:
            i = self.parents[i]
            out.append(i)
        return out

    def first(self, side: str | None, parts: tuple[str, ...], among: Sequence[int] | None = None) -> int | None:
        hits = [i for i in (range(len(self.names)) if among is None else among)
                if self.labels[i].side == side and self.labels[i].part in parts]
        return min(hits, key=lambda i: (self.depth[i], i)) if hits else None

    def nearest_ancestor(self, i: int | None, side: str | None, parts: tuple[str, ...]) -> int | None:
        return None if i is None else next((a for a in self.ancestors(i) if self.labels[a].side == side
                                            and self.labels[a].part in parts), None)

    def descendants(self, i: int) -> list[int]:
        return [j for j in range(len(self.names)) if i in self.ancestors(j)]

    def lca(self, a: int, b: int) -> int | None:
        up_a = [a, *self.ancestors(a)]
        return next((x for x in [b, *self.ancestors(b)] if x in up_a), None)

    def dist(self, a: int, b: int) -> float:
        return float(np.median(np.linalg.norm(self.pos[:, a] - self.pos[:, b], axis=-1)))

    def along(self, chain: list[int], fraction: float) -> tuple[int, int, float]:
        """The point at `fraction` of the length of a parent chain, between two consecutive points."""
        cum = self.fractions(chain)
        k = int(np.clip(np.searchsorted(cum, fraction, side="right") - 1, 0, len(chain) - 2))
        span = cum[k + 1] - cum[k]
        t = float(np.clip((fraction - cum[k]) / span, 0.0, 1.0)) if span > 0 else 0.0
        return (chain[k], chain[k], 0.0) if t < 1e-3 else (chain[k + 1], chain[k + 1], 0.0) if t > 1 - 1e-3 \
            else (chain[k], chain[k + 1], round(t, 3))

    def fractions(self, chain: list[int]) -> np.ndarray:
        cum = np.concatenate([[0.0], np.cumsum([self.dist(a, b) for a, b in zip(chain, chain[1:])])])
        return cum / max(cum[-1], 1e-12)


_WHAT = {"hand": "a hand or wrist", "forearm": "a forearm/lower arm/elbow", "upperarm": "an upper arm",
         "foot": "a foot or ankle", "shin": "a shin/calf/lower leg/knee", "thigh": "a thigh/upper leg/hip",
         "toe": "a toe/ball (or an End Site on the foot)"}


def _limbs(rig: _Rig, out: InferredMap) -> dict[str, dict[str, int | None]]:
    """Per side the bones of the arm and leg chains, each found through the parents of the next one."""
    limbs: dict[str, dict[str, int | None]] = {}
    for side in ("left", "right"):
        wrist = rig.first(side, ("hand",))
        elbow = rig.nearest_ancestor(wrist, side, ("forearm",))
        shoulder = rig.nearest_ancestor(elbow, side, ("upperarm", "shoulder"))
        collar = rig.nearest_ancestor(shoulder, side, ("collar", "shoulder"))
        ankle = rig.first(side, ("foot",))
        knee = rig.nearest_ancestor(ankle, side, ("shin",))
        hip = rig.nearest_ancestor(knee, side, ("thigh",))
        toe = None
        if ankle is not None:  # a toe bone, a second foot bone (SMPL: L_Ankle -> L_Foot), the End Site, a child
            below = rig.descendants(ankle)
            children = sorted((j for j in below if rig.parents[j] == ankle),
                              key=lambda j: not rig.names[j].endswith(END_SITE_SUFFIX))
            toe = rig.first(side, ("toe",), below) or rig.first(side, ("foot",), below) or next(iter(children), None)
        limbs[side] = dict(wrist=wrist, elbow=elbow, shoulder=shoulder, collar=collar, ankle=ankle, knee=knee,
                           hip=hip, foot=toe)
        for joint, part, after in (("wrist", "hand", None), ("elbow", "forearm", "wrist"), ("shoulder", "upperarm",
                                   "elbow"), ("ankle", "foot", None), ("knee", "shin", "ankle"),
                                   ("hip", "thigh", "knee"), ("foot", "toe", "ankle")):
            found_after = limbs[side][after] if after else None
            if limbs[side][joint] is None and (after is None or found_after is not None):
                where = "" if found_after is None else \
                    f" {'below' if joint == 'foot' else 'above'} '{rig.names[found_after]}'"
                out.problems.append(f"{side}_{joint}: no bone named like {_WHAT[part]} on the {side}{where}")
    return limbs


def infer_joint_map(point_names: Sequence[str], point_parents: Sequence[int], points: np.ndarray) -> InferredMap:
    """The T2M map of a rig from its bone names and hierarchy, checked on its motion points [F, P, 3]."""
    rig = _Rig(point_names, point_parents, points)
    out = InferredMap(names=list(point_names))
    limbs = _limbs(rig, out)
    left, right = limbs["left"], limbs["right"]
    if left["hip"] is None or right["hip"] is None:
        if not any(lab.part for lab in rig.labels):
            out.problems[:] = ["no bone is named like a body part (hips/pelvis, spine, neck, head, thigh, shin, "
                               "foot, toe, clavicle, upper arm, forearm, hand)"]
        return out
    pelvis = rig.lca(left["hip"], right["hip"])
    if pelvis is None:
        out.problems.append("pelvis: the two thighs are in separate hierarchies (several ROOTs)")
        return out
    below = rig.descendants(pelvis)
    head = rig.first(None, ("head",), below)
    if head is None:
        necks = [n for n in below if rig.labels[n].part == "neck" and rig.labels[n].side is None]
        ends = [j for j in below if rig.parents[j] in necks and rig.names[j].endswith(END_SITE_SUFFIX)]
        if not ends:
            out.problems.append(f"head: no bone named like a head below '{rig.names[pelvis]}'")
            return out
        head = ends[-1]
        out.notes.append(f"head: End Site of '{rig.names[rig.parents[head]]}'")
    path = [*reversed([head, *rig.ancestors(head)])]
    path = path[path.index(pelvis):]
    for side in ("left", "right"):
        for joint in ("collar", "shoulder"):
            bone = limbs[side][joint]
            if bone is not None and any(b in path[1:] for b in [bone, *rig.descendants(bone)]):
                out.problems.append(f"{side}_{joint}: '{rig.names[bone]}' lies on the spine")
    if out.problems:
        return out
    roots = [limbs[s]["collar"] if limbs[s]["collar"] is not None else limbs[s]["shoulder"] for s in ("left", "right")]
    branch = rig.lca(*roots)
    if branch not in path[1:-1]:
        where = "the hips" if branch == pelvis else f"'{rig.names[branch]}'" if branch is not None else "nothing"
        out.problems.append(f"the arms branch from {where}, not from a spine or neck bone between the hips and the "
                            "head")
        return out
    _spine_and_neck(rig, out, path, branch)
    for side in ("left", "right"):
        _arm_and_leg(rig, out, side, limbs[side], left["hip"], right["hip"], branch)
    out.points["pelvis"] = (pelvis, pelvis, 0.0)
    out.points["head"] = (head, head, 0.0)
    _check_mirror(rig, out, limbs, pelvis, head)
    return out


def _spine_and_neck(rig: _Rig, out: InferredMap, path: list[int], branch: int) -> None:
    necks = [k for k in range(1, len(path) - 1) if rig.labels[path[k]].part == "neck"]
    first_neck = necks[0] if necks else len(path) - 1
    spine = list(range(1, first_neck))  # indices into path of the bones between the pelvis and the neck
    if not spine:
        top = first_neck if necks else len(path) - 1
        for joint, fraction in _SPINE_ONLY_FRACTIONS.items():
            out.points[joint] = rig.along(path[:top + 1], fraction)
            out.interpolated.append(joint)
        s3 = None
    else:
        s3 = path.index(branch) if path.index(branch) in spine else spine[-1]
        out.points["spine3"] = (path[s3], path[s3], 0.0)
        chain = path[:s3 + 1]
        _spine1_and_spine2(rig, out, chain)
    if necks:
        solid = [k for k in necks if rig.dist(path[k - 1], path[k]) > rig.tol]
        k = solid[0] if solid else necks[-1]
        out.points["neck"] = (path[k], path[k], 0.0)
    else:
        start = s3 if s3 is not None else 0
        out.points["neck"] = rig.along(path[start:], _NECK_FRACTION)
        out.interpolated.append("neck")


def _spine1_and_spine2(rig: _Rig, out: InferredMap, chain: list[int]) -> None:
    """Spine bones where the rig has them (the pair nearest T2M's fractions), else points along the chain."""
    frac = rig.fractions(chain)
    cands = [k for k in range(1, len(chain) - 1) if rig.dist(chain[k - 1], chain[k]) > rig.tol]
    (f1, f2), chosen = _SPINE_FRACTIONS.values(), {}
    if len(cands) >= 2:
        pairs = [(i, j) for i in cands for j in cands if i < j]
        i, j = min(pairs, key=lambda ij: abs(frac[ij[0]] - f1) + abs(frac[ij[1]] - f2))
        chosen = {"spine1": i, "spine2": j}
    elif cands and min(abs(frac[cands[0]] - f1), abs(frac[cands[0]] - f2)) <= 0.25:
        chosen = {"spine1" if abs(frac[cands[0]] - f1) <= abs(frac[cands[0]] - f2) else "spine2": cands[0]}
    for joint, target in _SPINE_FRACTIONS.items():
        if joint in chosen:
            out.points[joint] = (chain[chosen[joint]], chain[chosen[joint]], 0.0)
        else:
            low = frac[chosen["spine1"]] + 1e-3 if joint == "spine2" and "spine1" in chosen else 0.0
            out.points[joint] = rig.along(chain, max(target, low))
            out.interpolated.append(joint)


def _arm_and_leg(rig: _Rig, out: InferredMap, side: str, bones: dict[str, int | None], left_hip: int,
                 right_hip: int, branch: int) -> None:
    for joint in ("hip", "knee", "ankle", "foot", "shoulder", "elbow", "wrist"):
        bone = bones[joint]
        assert bone is not None
        out.points[f"{side}_{joint}"] = (bone, bone, 0.0)
    shoulder, collar = bones["shoulder"], bones["collar"]
    assert shoulder is not None
    joint = f"{side}_collar"
    if collar is None:
        hang = rig.parents[shoulder]
        out.points[joint] = (hang, shoulder, 0.5)
        out.interpolated.append(joint)
        return
    lateral = rig.pos[:, left_hip] - rig.pos[:, right_hip]
    lateral /= np.maximum(np.linalg.norm(lateral, axis=-1, keepdims=True), 1e-12)
    off_midline = float(np.median(np.abs(((rig.pos[:, collar] - rig.pos[:, branch]) * lateral).sum(-1))))
    if off_midline < 0.25 * rig.dist(collar, shoulder):
        out.points[joint] = (collar, shoulder, 0.5)
        out.notes.append(f"{joint}: midway along '{rig.names[collar]}' -> '{rig.names[shoulder]}' (the clavicle "
                         "starts on the mid-line)")
    else:
        out.points[joint] = (collar, collar, 0.0)


def _check_mirror(rig: _Rig, out: InferredMap, limbs: dict, pelvis: int, head: int) -> None:
    """Left and right mirror: bone lengths match, arms and legs agree on the side, toes point forward."""
    left, right = limbs["left"], limbs["right"]
    for a, b, bone in (("hip", "knee", "thigh"), ("knee", "ankle", "shin"), ("shoulder", "elbow", "upper arm"),
                       ("elbow", "wrist", "forearm")):
        lengths = rig.dist(left[a], left[b]), rig.dist(right[a], right[b])
        if min(lengths) < 0.7 * max(lengths):
            out.problems.append(f"left and right do not mirror: {bone} {lengths[0]:.3g} (left) vs {lengths[1]:.3g} "
                                "(right) file units")
    pos = rig.pos
    lateral = pos[:, left["hip"]] - pos[:, right["hip"]]
    arms = pos[:, left["shoulder"]] - pos[:, right["shoulder"]]
    if np.mean((lateral * arms).sum(-1) > 0) < 0.5:
        out.problems.append("the arms' left and right are the other way round from the legs'")
    forward = np.cross(lateral, pos[:, head] - pos[:, pelvis])
    for side in ("left", "right"):
        toes = pos[:, limbs[side]["foot"]] - pos[:, limbs[side]["ankle"]]
        long_enough = np.linalg.norm(toes, axis=-1) > rig.tol
        if long_enough.any() and np.mean((toes * forward).sum(-1)[long_enough] > 0) < 0.5:
            out.problems.append(f"the {side} toes point backwards when the bones named left are the performer's "
                                "left: left and right look swapped (a mirrored file?)")
            break


def choose_joint_map(joint_map: JointMapArg, skeleton: object, points: np.ndarray, *,
                     path: object = None) -> ResolvedMap:
    """A shipped map (or the one given) when it fits, else ('auto') the map inferred from bone names."""
    names = skeleton.point_names  # type: ignore[attr-defined]
    resolved, closest, missing = match_shipped(joint_map, names, path=path)
    if resolved is not None:
        return resolved
    if joint_map != "auto":
        raise unknown_rig_error(closest, missing, names, path=path)
    parents = list(skeleton.parents) + [p for p, _ in skeleton.end_sites]  # type: ignore[attr-defined]
    inferred = infer_joint_map(names, parents, points)
    if inferred.ok:
        return inferred.resolved()
    raise unknown_rig_error(closest, missing, names, path=path, by_names=inferred.explain())
