"""Skeletons, the HumanML3D 263-d feature representation and motion statistics."""

from kpop_helpers.motion.skeleton import (
    FPS_HUMANML,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    T2M_JOINT_NAMES,
    T2M_KINEMATIC_CHAIN,
    T2M_PARENTS,
    T2M_RAW_OFFSETS,
    T2M_TARGET_OFFSETS,
    bone_lengths,
)

__all__ = [
    "FPS_HUMANML",
    "SMPL_JOINT_NAMES",
    "SMPL_PARENTS",
    "T2M_JOINT_NAMES",
    "T2M_KINEMATIC_CHAIN",
    "T2M_PARENTS",
    "T2M_RAW_OFFSETS",
    "T2M_TARGET_OFFSETS",
    "bone_lengths",
]
