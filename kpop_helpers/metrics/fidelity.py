"""How far a variant's (compressed/exported model's) joints are from the reference model's joints."""

from __future__ import annotations

import numpy as np

from kpop_helpers.errors import DataError


def fidelity(reference_joints, variant_joints) -> dict[str, float]:
    """Position error of variant vs reference joints [B, T, J, 3] (or [T, J, 3]), metres in.

    mpjpe_mm: mean over samples, frames and joints of the Euclidean joint error, in millimetres.
    rel_rms: RMS of the error divided by the RMS spread of the reference about each sample's centroid
    (mean over its frames and joints), so it is scale-free and ignores where the dancer stands.
    Identical inputs give exactly 0 for both.
    """
    ref = np.asarray(reference_joints, dtype=np.float64)
    var = np.asarray(variant_joints, dtype=np.float64)
    if ref.ndim == 3:
        ref = ref[None]
        if var.ndim == 3:
            var = var[None]
    if ref.ndim != 4 or ref.shape[-1] != 3:
        raise DataError(f"got shape {ref.shape}", field="reference_joints", expected="[B, T, J, 3] joint positions")
    if var.shape != ref.shape:
        raise DataError(f"got shape {var.shape}, reference is {ref.shape}", field="variant_joints",
                        expected="the reference's shape")
    if ref.size == 0:
        raise DataError("is empty", field="reference_joints", expected="at least one frame")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(var))):
        raise DataError("contains NaN or inf", field="variant_joints", expected="finite joint positions")
    error = var - ref
    mpjpe_mm = float(np.mean(np.linalg.norm(error, axis=-1)) * 1000.0)
    error_rms = float(np.sqrt(np.mean(error**2)))
    centroid = ref.mean(axis=(1, 2), keepdims=True)
    spread_rms = float(np.sqrt(np.mean((ref - centroid) ** 2)))
    if error_rms == 0.0:
        rel_rms = 0.0
    elif spread_rms == 0.0:
        rel_rms = float("inf")
    else:
        rel_rms = error_rms / spread_rms
    return {"mpjpe_mm": mpjpe_mm, "rel_rms": rel_rms}
