"""Scores of a variant's sample draws: fidelity against the fp32 variant and dance quality per noise draw, pooled.

One draw is one dance per prompt. A draw's FID_k or PFC moves a lot with the noise alone (16 dances score FID_k
59-87 and PFC 0.08-0.29 over five seeds), so with several draws a row reports the mean over draws, the standard
deviation between draws (`<metric>_sd`) and the number of draws; a quality comparison then knows its own noise.
Each draw is scored exactly like a one-draw run, so means stay comparable across runs with different draw counts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

QUALITY_FIELDS = ("fid_k", "fid_g", "div_k", "div_g", "pfc", "foot_skating", "jitter", "bone_drift", "div_k_gt",
                  "div_g_gt", "pfc_gt")
# Fields whose spread between draws is reported as <field>_sd (the reference-set fields do not vary).
SPREAD_FIELDS = ("fid_k", "fid_g", "div_k", "div_g", "pfc", "foot_skating")


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def load_draws(first: Path, draw_digests: Sequence[str], sample_key: str) -> list[np.ndarray]:
    """Joints of every draw on disk made from these inputs under this sample key, in draw order (to the first gap)."""
    from kpop_helpers.bench.worker import read_samples, samples_path

    draws = []
    for draw, digest in enumerate(draw_digests):
        joints = read_samples(samples_path(first, draw), digest, sample_key)
        if joints is None:
            break
        draws.append(joints)
    return draws


def pooled_quality(draws: Sequence[np.ndarray], reference: Sequence[np.ndarray], mode: str) -> dict[str, Any]:
    """Mean over draws of each quality field, `<field>_sd` between draws (ddof 1; None for one draw), n_draws."""
    from kpop_helpers.metrics import dance_quality

    per_draw = [dance_quality(list(joints), list(reference), fps=20.0, mode=mode, allow_small=True, progress=False)
                for joints in draws]
    out: dict[str, Any] = {"n_draws": len(draws), "n_samples": int(sum(len(j) for j in draws))}
    for key in QUALITY_FIELDS:
        values = [_finite_or_none(scores.get(key)) for scores in per_draw]
        finite = [v for v in values if v is not None]
        # A field that is non-finite in any draw is reported missing rather than as a mean of the rest.
        out[key] = float(np.mean(finite)) if finite and len(finite) == len(values) else None
        if key in SPREAD_FIELDS:
            out[f"{key}_sd"] = float(np.std(finite, ddof=1)) if len(finite) == len(values) > 1 else None
    if len(per_draw) > 1:
        out["per_draw"] = [{k: _finite_or_none(scores.get(k)) for k in SPREAD_FIELDS} for scores in per_draw]
    return out


def pooled_fidelity(reference_draws: Sequence[np.ndarray], draws: Sequence[np.ndarray]) -> dict[str, float] | None:
    """Joint error against the fp32 variant over the draws both have (same prompts and noise), or None."""
    from kpop_helpers.metrics import fidelity

    common = min(len(reference_draws), len(draws))
    if common == 0:
        return None
    fid = fidelity(np.concatenate(list(reference_draws[:common])), np.concatenate(list(draws[:common])))
    return {"fidelity_mm": fid["mpjpe_mm"], "fidelity_rel_rms": fid["rel_rms"], "fidelity_draws": common}
