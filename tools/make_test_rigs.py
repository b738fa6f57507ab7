"""Writes the hand-made rig headers of tests/data/rigs (one small humanoid per naming convention, 1.71 m tall).

    python tools/make_test_rigs.py tests/data/rigs
"""
import math
import sys
from pathlib import Path

OUT = Path(sys.argv[1])
UNITS = {"m": 1.0, "cm": 100.0, "mm": 1000.0, "inch": 1 / 0.0254, "cmu": 1 / 0.0564444}
FRAMES = 24


class Rig:
    def __init__(self, unit="cm", z_up=False, order="Zrotation Xrotation Yrotation",
                 root_order="Xposition Yposition Zposition Zrotation Xrotation Yrotation"):
        self.bones, self.scale, self.z_up, self.order, self.root_order = [], UNITS[unit], z_up, order, root_order
        self.pos, self.ends, self.rot = {}, {}, {}

    def add(self, name, parent, at, end=None, rot=None):
        self.bones.append((name, parent))
        self.pos[name] = at
        if end is not None:
            self.ends[name] = end
        if rot is not None:
            self.rot[name] = rot
        return name

    def axes(self, v):
        x, y, z = v
        return (x, -z, y) if self.z_up else (x, y, z)

    def file_vec(self, v):
        return tuple(c * self.scale for c in self.axes(v))

    def rotation(self, name, f):
        """(file axis letter, degrees) of this bone's motion at frame f."""
        if name not in self.rot:
            return None
        axis, angle = self.rot[name](f)  # canonical axis 'x', 'y' (up) or 'z' (forward)
        if self.z_up:
            axis, angle = {"x": ("X", angle), "y": ("Z", angle), "z": ("Y", -angle)}[axis]
        else:
            axis = axis.upper()
        return axis, angle

    def text(self, frame_time=1 / 30):
        children = {}
        for name, parent in self.bones:
            children.setdefault(parent, []).append(name)
        lines, order = ["HIERARCHY"], []

        def emit(name, parent, depth):
            pad = "\t" * depth
            base = self.pos[parent] if parent else (0, 0, 0)
            off = self.file_vec(tuple(a - b for a, b in zip(self.pos[name], base)))
            lines.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} {name}")
            lines.append(pad + "{")
            lines.append(pad + "\tOFFSET " + " ".join(f"{v:.4f}" for v in off))
            chans = self.root_order if parent is None else self.order
            lines.append(f"{pad}\tCHANNELS {len(chans.split())} {chans}")
            order.append((name, chans.split()))
            for child in children.get(name, []):
                emit(child, name, depth + 1)
            if name in self.ends or name not in children:
                end = self.ends.get(name, (0, 0.03, 0))
                lines.extend([pad + "\tEnd Site", pad + "\t{",
                          pad + "\t\tOFFSET " + " ".join(f"{v:.4f}" for v in self.file_vec(end)), pad + "\t}"])
            lines.append(pad + "}")

        root = children[None][0]
        emit(root, None, 0)
        lines += ["MOTION", f"Frames: {FRAMES}", f"Frame Time: {frame_time:.6f}"]
        for f in range(FRAMES):
            row = []
            for name, chans in order:
                values = {}
                if name == root:
                    p = self.file_vec(tuple(a + d for a, d in zip(self.pos[root], (0.02 * f, 0, 0.015 * f))))
                    values.update(Xposition=p[0], Yposition=p[1], Zposition=p[2])
                    rot = ("Z" if self.z_up else "Y", 2.0 * f)
                else:
                    rot = self.rotation(name, f)
                if rot is not None:
                    values[rot[0] + "rotation"] = rot[1]
                row += [f"{values.get(c, 0.0):.4f}" for c in chans]
            lines.append(" ".join(row))
        return "\n".join(lines) + "\n"


def humanoid(rig, *, root, spine, necks, head, arms_from, arm, leg, sides=("Left", "Right"), pelvis_parent=None,
             leg_from=None, head_top=None, fingers=(), toe_end_bone=None, extra=None, right_first=False):
    """spine: [(name, height)], necks: [(name, height)], arm: [collar|None, upper, fore, hand] with '{s}',
    leg: [stub|None, thigh, shin, foot, toe|None]."""
    if pelvis_parent and pelvis_parent not in rig.pos:
        rig.add(pelvis_parent, None, (0, 0, 0))
    rig.add(root, pelvis_parent, (0, 0.97, 0))
    parent = root
    for name, height in spine:
        parent = rig.add(name, parent, (0, height, 0), rot=(lambda f: ("y", 1.5 * math.sin(f / 2))) if name == spine[0][0] else None)
    for name, height in necks:
        parent = rig.add(name, parent, (0, height, 0))
    rig.add(head, parent, (0, 1.57, 0), end=(0, 0.14, 0) if not head_top else None)
    if head_top:
        rig.add(head_top, head, (0, 1.71, 0))
    for sign, s in ((-1, sides[1]), (1, sides[0])) if right_first else ((1, sides[0]), (-1, sides[1])):
        collar, upper, fore, hand = (a.format(s=s, s_=s[0]) if a else None for a in arm)
        p = arms_from
        if collar:
            at = (sign * 0.0, 1.38, 0.0) if collar.endswith("!") else (sign * 0.04, 1.39, 0.0)
            collar = collar.rstrip("!")
            p = rig.add(collar, p, at if not arm[0].endswith("!") else (0, rig.pos[arms_from][1], 0))
        rig.add(upper, p, (sign * 0.18, 1.42, 0), rot=lambda f, sign=sign: ("z", -sign * (5 + 2 * f)))
        rig.add(fore, upper, (sign * 0.46, 1.42, 0), rot=lambda f: ("y", 3.0 * f))
        rig.add(hand, fore, (sign * 0.71, 1.42, 0), end=(sign * 0.09, 0, 0))
        for finger in fingers:
            name, dx, dz = finger
            rig.add(name.format(s=s), hand, (sign * (0.71 + dx), 1.42, dz), end=(sign * 0.03, 0, 0))
        stub, thigh, shin, foot, toe = (a.format(s=s, s_=s[0]) if a else None for a in leg)
        p = leg_from or root
        if stub:
            p = rig.add(stub, p, rig.pos[p])
        rig.add(thigh, p, (sign * 0.09, 0.91, 0))
        rig.add(shin, thigh, (sign * 0.09, 0.49, 0.01))
        rig.add(foot, shin, (sign * 0.09, 0.08, 0), end=None if toe else (0, -0.06, 0.15))
        if toe:
            rig.add(toe, foot, (sign * 0.09, 0.02, 0.13), end=None if toe_end_bone else (0, 0, 0.06))
            if toe_end_bone:
                rig.add(toe_end_bone.format(s=s), toe, (sign * 0.09, 0.02, 0.19))
    if extra:
        extra(rig)
    return rig


def even(names, low=0.97, high=1.38):
    n = len(names)
    return [(name, low + (high - low) * (k + 1) / n) for k, name in enumerate(names)]


RIGS = {}
RIGS["rokoko"] = humanoid(Rig("cm"), root="Hips", spine=even(["Spine1", "Spine2", "Spine3", "Spine4"]),
                          necks=[("Neck", 1.47)], head="Head", head_top="HeadTop", arms_from="Spine4",
                          arm=["{s}Shoulder", "{s}Arm", "{s}ForeArm", "{s}Hand"],
                          leg=[None, "{s}Thigh", "{s}Shin", "{s}Foot", "{s}Toe"], toe_end_bone="{s}ToeEnd")
RIGS["xsens_mvn"] = humanoid(Rig("cm", order="Zrotation Xrotation Yrotation"), root="Hips",
                             spine=even(["Chest", "Chest2", "Chest3", "Chest4"]), necks=[("Neck", 1.47)],
                             head="Head", arms_from="Chest4", right_first=True,
                             arm=["{s}Collar", "{s}Shoulder", "{s}Elbow", "{s}Wrist"],
                             leg=[None, "{s}Hip", "{s}Knee", "{s}Ankle", "{s}Toe"])
RIGS["xsens_segments"] = humanoid(Rig("cm"), root="Pelvis", spine=even(["L5", "L3", "T12", "T8"]),
                                  necks=[("Neck", 1.47)], head="Head", arms_from="T8",
                                  arm=["{s}Shoulder", "{s}UpperArm", "{s}ForeArm", "{s}Hand"],
                                  leg=[None, "{s}UpperLeg", "{s}LowerLeg", "{s}Foot", "{s}Toe"])
RIGS["perception_neuron"] = humanoid(
    Rig("cm", order="Yrotation Xrotation Zrotation", root_order="Xposition Yposition Zposition Yrotation Xrotation Zrotation"),
    root="Hips", spine=even(["Spine", "Spine1", "Spine2", "Spine3"]), necks=[("Neck", 1.47), ("Neck1", 1.52)],
    head="Head", arms_from="Spine3", arm=["{s}Shoulder", "{s}Arm", "{s}ForeArm", "{s}Hand"],
    leg=[None, "{s}UpLeg", "{s}Leg", "{s}Foot", None],
    fingers=[("{s}HandThumb1", 0.02, 0.03), ("{s}InHandIndex", 0.03, 0.01), ("{s}HandMiddle1", 0.08, 0.0)])
RIGS["vicon"] = humanoid(Rig("mm", order="Xrotation Yrotation Zrotation",
                             root_order="Xposition Yposition Zposition Xrotation Yrotation Zrotation"),
                         root="Root", spine=even(["LowerBack", "UpperBack", "Thorax"], high=1.36),
                         necks=[("LowerNeck", 1.47), ("UpperNeck", 1.52)], head="Head", arms_from="Thorax",
                         sides=("L", "R"), arm=["{s}Clavicle", "{s}Humerus", "{s}Radius", "{s}Wrist"],
                         leg=[None, "{s}Femur", "{s}Tibia", "{s}Foot", "{s}Toes"],
                         fingers=[("{s}Hand", 0.05, 0.0)])
RIGS["optitrack"] = humanoid(Rig("m"), root="Dancer1_Hip", spine=[("Dancer1_Ab", 1.10), ("Dancer1_Chest", 1.33)],
                             necks=[("Dancer1_Neck", 1.47)], head="Dancer1_Head", arms_from="Dancer1_Chest",
                             sides=("L", "R"),
                             arm=["Dancer1_{s}Shoulder", "Dancer1_{s}UArm", "Dancer1_{s}FArm", "Dancer1_{s}Hand"],
                             leg=[None, "Dancer1_{s}Thigh", "Dancer1_{s}Shin", "Dancer1_{s}Foot", "Dancer1_{s}Toe"])
RIGS["mixamo"] = humanoid(Rig("cm"), root="mixamorig:Hips",
                          spine=even(["mixamorig:Spine", "mixamorig:Spine1", "mixamorig:Spine2"], high=1.33),
                          necks=[("mixamorig:Neck", 1.47)], head="mixamorig:Head", head_top="mixamorig:HeadTop_End",
                          arms_from="mixamorig:Spine2",
                          arm=["mixamorig:{s}Shoulder", "mixamorig:{s}Arm", "mixamorig:{s}ForeArm", "mixamorig:{s}Hand"],
                          leg=[None, "mixamorig:{s}UpLeg", "mixamorig:{s}Leg", "mixamorig:{s}Foot",
                               "mixamorig:{s}ToeBase"], toe_end_bone="mixamorig:{s}Toe_End",
                          fingers=[("mixamorig:{s}HandIndex1", 0.09, 0.02)])


def unreal_extra(rig):
    for s, sign in (("l", 1), ("r", -1)):
        rig.add(f"upperarm_twist_01_{s}", f"upperarm_{s}", (sign * 0.32, 1.42, 0))
        rig.add(f"calf_twist_01_{s}", f"calf_{s}", (sign * 0.09, 0.28, 0))
    rig.add("ik_foot_root", "root", (0, 0, 0))
    rig.add("ik_foot_l", "ik_foot_root", (0.09, 0.08, 0))


RIGS["unreal"] = humanoid(Rig("cm", z_up=True), root="pelvis", pelvis_parent="root",
                          spine=even(["spine_01", "spine_02", "spine_03"], high=1.34), necks=[("neck_01", 1.47)],
                          head="head", arms_from="spine_03", sides=("l", "r"),
                          arm=["clavicle_{s}", "upperarm_{s}", "lowerarm_{s}", "hand_{s}"],
                          leg=[None, "thigh_{s}", "calf_{s}", "foot_{s}", "ball_{s}"], extra=unreal_extra)
RIGS["blender"] = humanoid(Rig("m", z_up=True, order="Xrotation Yrotation Zrotation"), root="hips",
                           spine=[("spine", 1.10), ("chest", 1.30)], necks=[("neck", 1.47)], head="head",
                           arms_from="chest", sides=("L", "R"),
                           arm=["shoulder.{s}", "upper_arm.{s}", "forearm.{s}", "hand.{s}"],
                           leg=[None, "thigh.{s}", "shin.{s}", "foot.{s}", "toe.{s}"])


def biped_pelvis(rig):
    pass


biped = Rig("cm")
biped.add("Bip01", None, (0, 0.97, 0))
biped.add("Bip01 Pelvis", "Bip01", (0, 0.97, 0))
RIGS["biped"] = humanoid(biped, root="Bip01 Spine", pelvis_parent="Bip01 Pelvis",
                         spine=[("Bip01 Spine1", 1.12), ("Bip01 Spine2", 1.30)], necks=[("Bip01 Neck", 1.47)],
                         head="Bip01 Head", head_top="Bip01 HeadNub", arms_from="Bip01 Neck", sides=("L", "R"),
                         arm=["Bip01 {s} Clavicle", "Bip01 {s} UpperArm", "Bip01 {s} Forearm", "Bip01 {s} Hand"],
                         leg=[None, "Bip01 {s} Thigh", "Bip01 {s} Calf", "Bip01 {s} Foot", "Bip01 {s} Toe0"],
                         fingers=[("Bip01 {s} Finger0", 0.03, 0.03)])
RIGS["cmu_3dsmax"] = humanoid(Rig("cmu", order="Zrotation Yrotation Xrotation",
                                  root_order="Xposition Yposition Zposition Zrotation Yrotation Xrotation"),
                              root="Hips", spine=[("LowerBack", 0.97), ("Spine", 1.15), ("Spine1", 1.33)],
                              necks=[("Neck", 1.33), ("Neck1", 1.47)], head="Head", arms_from="Spine1",
                              arm=["{s}Collar!", "{s}Shoulder", "{s}Elbow", "{s}Wrist"],
                              leg=["{s_}HipJoint", "{s}Hip", "{s}Knee", "{s}Ankle", "{s}Toe"])
RIGS["cmu_plain"] = humanoid(Rig("cm", order="Zrotation Yrotation Xrotation",
                                 root_order="Xposition Yposition Zposition Zrotation Yrotation Xrotation"),
                             root="Hips", spine=[("LowerBack", 1.05), ("Spine", 1.18), ("Spine1", 1.33)],
                             necks=[("Neck", 1.47)], head="Head", arms_from="Spine1",
                             arm=["{s}Shoulder", "{s}Arm", "{s}ForeArm", "{s}Hand"],
                             leg=[None, "{s}UpLeg", "{s}Leg", "{s}Foot", "{s}ToeBase"])
RIGS["one_spine"] = humanoid(Rig("m"), root="Hips", spine=[("Spine", 1.38)], necks=[("Neck", 1.47)], head="Head",
                             arms_from="Spine", sides=("L", "R"), arm=[None, "{s}_Shoulder", "{s}_Elbow", "{s}_Wrist"],
                             leg=[None, "{s}_Hip", "{s}_Knee", "{s}_Ankle", "{s}_Toe"])

RIGS["smpl"] = humanoid(Rig("m"), root="Pelvis", spine=even(["Spine1", "Spine2", "Spine3"], high=1.34),
                        necks=[("Neck", 1.47)], head="Head", arms_from="Spine3", sides=("L", "R"),
                        arm=["{s}_Collar", "{s}_Shoulder", "{s}_Elbow", "{s}_Wrist"],
                        leg=[None, "{s}_Hip", "{s}_Knee", "{s}_Ankle", "{s}_Foot"], fingers=[("{s}_Hand", 0.08, 0.0)])
quad = Rig("cm")
quad.add("Pelvis", None, (0, 0.6, -0.4))
quad.add("Spine1", "Pelvis", (0, 0.62, -0.1))
quad.add("Spine2", "Spine1", (0, 0.63, 0.2))
quad.add("Neck", "Spine2", (0, 0.7, 0.4))
quad.add("Head", "Neck", (0, 0.8, 0.55), end=(0, 0, 0.2))
quad.add("Tail1", "Pelvis", (0, 0.6, -0.6))
quad.add("Tail2", "Tail1", (0, 0.55, -0.8))
for s, sign in (("Left", 1), ("Right", -1)):
    for part, parent, z in (("Hind", "Pelvis", -0.4), ("Front", "Spine2", 0.25)):
        quad.add(f"{s}{part}Leg", parent, (sign * 0.1, 0.55, z))
        quad.add(f"{s}{part}LowerLeg", f"{s}{part}Leg", (sign * 0.1, 0.3, z - 0.02))
        quad.add(f"{s}{part}Paw", f"{s}{part}LowerLeg", (sign * 0.1, 0.05, z + 0.02), end=(0, 0, 0.06))
RIGS["quadruped"] = quad
cam = Rig("m")
cam.add("Camera", None, (0, 1.5, 3.0))
cam.add("CameraAim", "Camera", (0, 1.2, 0.0))
cam.add("CameraUp", "Camera", (0, 2.5, 3.0))
RIGS["camera"] = cam

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rig in RIGS.items():
        (OUT / f"{name}.bvh").write_text(rig.text())
        print(name, len(rig.bones))
