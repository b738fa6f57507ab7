"""Bailando's feature pipeline and the one-call dance-quality report used by the benchmark."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from kpop_helpers.errors import DataError
from kpop_helpers.metrics.beat import beat_align_score
from kpop_helpers.metrics.convert import AIST_FPS, EDGE_FPS, to_aist_convention, to_edge_convention
from kpop_helpers.metrics.fid import MIN_SAMPLES, quantized_metrics
from kpop_helpers.metrics.geometric import extract_geometric_features
from kpop_helpers.metrics.kinetic import REFERENCE_FPS, Mode, check_joints, check_mode, extract_kinetic_features
from kpop_helpers.metrics.pfc import physical_foot_contact
from kpop_helpers.motion.quality import bone_length_drift, foot_skating_ratio, jitter

PREDICTION_MAX_FRAMES = 1200


def bailando_features(joints: np.ndarray, *, is_prediction: bool = True, mode: Mode = "compat",
                      fps: float = REFERENCE_FPS, max_frames: int = PREDICTION_MAX_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """(kinetic [72], geometric [32]) float32 of SMPL-24 joints [T, 24, 3] (y up), Bailando's evaluation way.

    Predictions are cut to their first `max_frames` frames (ground truth is not, K4); then every joint
    of every frame has frame 0's root position subtracted (zero-start), which the K1 column depends on.
    """
    positions = check_joints(joints, min_frames=3, num_joints=24)
    if is_prediction:
        positions = positions[:max_frames]
    positions = positions - positions[0, 0]
    return (extract_kinetic_features(positions, mode=mode, fps=fps),
            extract_geometric_features(positions, mode=mode, fps=fps))


def _mean_of(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def dance_quality(generated: Sequence[np.ndarray], reference: Sequence[np.ndarray], fps: float = 20.0,
                  mode: Mode = "compat", *, music_beat_times: Sequence[np.ndarray] | None = None,
                  allow_small: bool = False, progress: bool = True) -> dict:
    """FID_k/FID_g/Div_k/Div_g vs a reference set, PFC (and the reference set's pfc_gt), foot skating, jitter, bone drift.

    Inputs are our T2M-22 joints [T, 22, 3] (y up, metres) at `fps`. They go through
    `to_aist_convention` (SMPL-24, 60 fps) for the features and `to_edge_convention` (z up, 30 fps) for
    PFC; the motion.quality metrics run on the inputs as given. FID needs >= 2 motions per set: fewer
    raises DataError unless allow_small=True, which reports fid_*/div_* as None. With
    `music_beat_times` (seconds, one array per generated dance) the result also has "bas".
    """
    check_mode(mode)
    generated, reference = list(generated), list(reference)
    if not generated:
        raise DataError("no generated motions", field="generated", expected="at least one motion")
    small = len(generated) < MIN_SAMPLES or len(reference) < MIN_SAMPLES
    if small and not allow_small:
        raise DataError(f"got {len(generated)} generated and {len(reference)} reference motions", field="generated",
                        expected=f"at least {MIN_SAMPLES} in each set for FID/diversity (or allow_small=True)")
    gen = [check_joints(g, name=f"generated[{i}]", min_frames=2) for i, g in enumerate(generated)]
    ref = [check_joints(r, name=f"reference[{i}]", min_frames=2) for i, r in enumerate(reference)]

    result: dict = {"mode": mode, "n_generated": len(gen), "n_reference": len(ref)}
    if small:
        result.update(fid_k=None, fid_g=None, div_k=None, div_g=None, div_k_gt=None, div_g_gt=None)
    else:
        items = [(g, True) for g in gen] + [(r, False) for r in ref]
        feats = [bailando_features(to_aist_convention(j, fps), is_prediction=pred, mode=mode, fps=AIST_FPS)
                 for j, pred in tqdm(items, desc="dance features", disable=not progress, leave=False)]
        kin = np.stack([k for k, _ in feats])
        geo = np.stack([g for _, g in feats])
        n = len(gen)
        result.update(quantized_metrics(kin[:n], geo[:n], kin[n:], geo[n:], mode=mode))

    result["pfc"] = physical_foot_contact([to_edge_convention(g, fps) for g in gen], mode=mode, fps=EDGE_FPS)
    # The real set's own PFC: the floor a generator should approach (as div_*_gt is for diversity).
    result["pfc_gt"] = physical_foot_contact([to_edge_convention(r, fps) for r in ref], mode=mode, fps=EDGE_FPS)
    result["foot_skating"] = _mean_of([float(foot_skating_ratio(g, fps)) for g in gen])
    result["jitter"] = _mean_of([float(jitter(g, fps)) for g in gen])
    result["bone_drift"] = _mean_of([float(bone_length_drift(g)) for g in gen])
    if music_beat_times is not None:
        dances = [to_aist_convention(g, fps) for g in gen]
        result["bas"] = beat_align_score(dances, list(music_beat_times), fps=AIST_FPS, unit="seconds", mode=mode)
    return result
