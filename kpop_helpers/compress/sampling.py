"""Few-step sampling as a compression axis: DDIM with 50/20/10 steps against a many-step DDIM reference."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from kpop_helpers.compress.errors import joints_error_mm
from kpop_helpers.edge.sampler import Denoiser, sample_loop, sample_to_features
from kpop_helpers.runners import relative_rms
from kpop_helpers.sampling import SamplerSpec, SamplingNoise, draw_noise


@dataclass
class FewStepError:
    """DDIM with `steps` steps vs the `reference_steps` DDIM on the same noise (eta = 0, deterministic)."""

    steps: int
    reference_steps: int
    joints_mpjpe_mm: float | None
    joints_max_mm: float | None
    sample_rel_rms: float | None
    time_s: float | None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def default_reference_steps(diffusion_steps: int) -> int:
    """The full schedule for models of <= 100 steps, else 100 DDIM steps (the 1000-step ODE costs ~1000 calls)."""
    return diffusion_steps if diffusion_steps <= 100 else 100


def _run(denoiser: Denoiser, text_emb: np.ndarray, initial: np.ndarray, diffusion_steps: int, steps: int,
         guidance: float, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    from kpop_helpers.motion.features import features_to_joints

    spec = SamplerSpec("ddim", steps, guidance)  # eta = 0: deterministic, no step noise
    diffusion = spec.schedule(diffusion_steps)
    start = time.perf_counter()
    sample = sample_loop(denoiser, text_emb, SamplingNoise(initial), diffusion, sampler=spec.sampler,
                         guidance=spec.guidance)
    elapsed = time.perf_counter() - start
    return sample, np.asarray(features_to_joints(sample_to_features(sample, mean, std))), elapsed


def few_step_errors(denoiser: Denoiser, text_emb: np.ndarray, mean: np.ndarray, std: np.ndarray, *,
                    diffusion_steps: int, frames: int, steps: Sequence[int] = (50, 20, 10),
                    reference_steps: int | None = None, guidance: float = 2.5, seed: int = 0) -> list[FewStepError]:
    """Joint error (mm) and time of DDIM-N for each N, all from the same initial noise as the reference.

    A step count that the "ddimN" integer-stride respacing cannot produce for this model (e.g. 20 of a
    50-step schedule) is reported as skipped with the reason, not silently replaced.
    """
    reference_steps = int(reference_steps or default_reference_steps(diffusion_steps))
    initial = draw_noise(seed, text_emb.shape[0], frames, 1, stochastic=False).initial
    ref_sample, ref_joints, _ = _run(denoiser, text_emb, initial, diffusion_steps, reference_steps, guidance,
                                     mean, std)
    results = []
    for n in steps:
        try:
            SamplerSpec("ddim", int(n)).schedule(diffusion_steps)
        except ValueError as exc:
            results.append(FewStepError(int(n), reference_steps, None, None, None, None, skipped=str(exc)))
            continue
        sample, joints, elapsed = _run(denoiser, text_emb, initial, diffusion_steps, int(n), guidance, mean, std)
        mpjpe, worst = joints_error_mm(ref_joints, joints)
        results.append(FewStepError(int(n), reference_steps, mpjpe, worst, relative_rms(ref_sample, sample), elapsed))
    return results
