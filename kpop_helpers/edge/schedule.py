"""MDM's schedule, respacing and reverse steps for the edge runtime: the sampling core on numpy arrays.

`kpop_helpers.sampling` holds the one implementation (float64 schedules; each step picks the float64
coefficients at t, casts them to float32 and does every array operation in float32, in the reference's
order). `NumpyDiffusion` keeps the edge's historical method names on top of it.
"""

from __future__ import annotations

import numpy as np

from kpop_helpers.sampling import DiffusionSchedule, RespacingSpec, SamplerSpec, space_timesteps
from kpop_helpers.sampling.schedule import MAX_BETA, get_named_beta_schedule
from kpop_helpers.sampling.steps import ddim_step, ddpm_step, predict_eps_from_xstart

named_betas = get_named_beta_schedule  # old edge name

__all__ = ["MAX_BETA", "NumpyDiffusion", "RespacingSpec", "cosine_betas", "named_betas", "sampling_schedule",
           "space_timesteps"]


def cosine_betas(num_steps: int) -> np.ndarray:
    """The cosine (Nichol & Dhariwal) beta schedule as MDM builds it (alpha_bar not normalised), float64."""
    return get_named_beta_schedule("cosine", num_steps)


class NumpyDiffusion(DiffusionSchedule):
    """The (respaced) schedule arrays of MDM's GaussianDiffusion, float64, with float32 reverse steps."""

    def predict_eps(self, x: np.ndarray, pred_xstart: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The noise implied by an x0 prediction: (sqrt(1/abar) x_t - x0) / sqrt(1/abar - 1), float32."""
        return predict_eps_from_xstart(self, x, t, pred_xstart)

    def ddpm_step(self, x: np.ndarray, pred_xstart: np.ndarray, t: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Ancestral step x_t -> x_{t-1} (FIXED_SMALL variance); rows at t = 0 get no noise."""
        return ddpm_step(self, x, t, pred_xstart, noise).sample

    def ddim_step(self, x: np.ndarray, pred_xstart: np.ndarray, t: np.ndarray, eta: float = 0.0,
                  noise: np.ndarray | None = None) -> np.ndarray:
        """DDIM step x_t -> x_{t_prev}; every operation in float32 from float32-cast coefficients."""
        return ddim_step(self, x, t, pred_xstart, eta, noise).sample


def sampling_schedule(diffusion_steps: int, sampler: str, steps: int | None,
                      schedule: str = "cosine") -> NumpyDiffusion:
    """The schedule `kpop_helpers.generate` samples with: DDIM "ddim{steps}", DDPM section list [steps]."""
    return NumpyDiffusion(diffusion_steps, schedule, SamplerSpec(sampler, steps).respacing(diffusion_steps))
