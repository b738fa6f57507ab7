"""The T2M 22-joint skeleton used by HumanML3D and MDM, and the SMPL 24-joint skeleton.

Conventions: y up, metres, 20 fps for HumanML3D data. The first 22 SMPL joints are the T2M joints.
"""

from __future__ import annotations

import numpy as np

FPS_HUMANML = 20.0
NUM_T2M_JOINTS = 22

T2M_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
SMPL_JOINT_NAMES: tuple[str, ...] = T2M_JOINT_NAMES + ("left_hand", "right_hand")

T2M_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
SMPL_PARENTS: tuple[int, ...] = T2M_PARENTS + (20, 21)

# Order matters: HumanML3D's IK walks the chains in exactly this order.
T2M_KINEMATIC_CHAIN: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)

# Unit rest direction of each bone (parent -> joint), HumanML3D's `t2m_raw_offsets`.
T2M_RAW_OFFSETS = np.array(
    [[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
     [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
     [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0]],
    dtype=np.float32,
)

# HumanML3D target skeleton (`tgt_offsets`): every processed HumanML3D motion has exactly these bone
# lengths (metres). Recovered from the public processed samples; see the humanml_features fixture README.
_T2M_BONE_LENGTHS = np.array(
    [0.0, 0.10307396948337555, 0.10988336056470871, 0.13156823813915253, 0.3936232030391693,
     0.39018821716308594, 0.14319021999835968, 0.43243300914764404, 0.4256434142589569,
     0.05736473947763443, 0.14338178932666779, 0.14941905438899994, 0.21936005353927612,
     0.1374868005514145, 0.14338281750679016, 0.1030392125248909, 0.13161396980285645,
     0.1229843869805336, 0.25683990120887756, 0.2630918622016907, 0.2660118341445923,
     0.26987630128860474],
    dtype=np.float32,
)
T2M_TARGET_OFFSETS = (T2M_RAW_OFFSETS * _T2M_BONE_LENGTHS[:, None]).astype(np.float32)

# Foot joints used for contacts: (ankle, toe) per side.
LEFT_FOOT = (7, 10)
RIGHT_FOOT = (8, 11)
FOOT_JOINTS = (7, 10, 8, 11)
# right hip, left hip, right shoulder, left shoulder
FACE_JOINTS = (2, 1, 17, 16)

LEFT_CHAIN_JOINTS = frozenset({1, 4, 7, 10, 13, 16, 18, 20})
RIGHT_CHAIN_JOINTS = frozenset({2, 5, 8, 11, 14, 17, 19, 21})


def bone_lengths(positions: np.ndarray, parents: tuple[int, ...] = T2M_PARENTS) -> np.ndarray:
    """Per-frame bone lengths [..., J] (root entry 0) of joint positions [..., J, 3]."""
    positions = np.asarray(positions)
    par = np.array([p if p >= 0 else 0 for p in parents])
    return np.linalg.norm(positions - positions[..., par, :], axis=-1)
