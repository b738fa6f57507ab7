"""MDM's Gaussian diffusion on torch: training loss and sampling loops over the sampling core's steps.

Schedules, respacing, the steps, guidance and constraints live in `kpop_helpers.sampling` (torch-free);
their names are re-exported here for existing callers.
"""

from kpop_helpers.diffusion.gaussian import (
    DiffusionStep,
    GaussianDiffusion,
    ModelFn,
    draw_noise,
    draw_torch_noise,
    lengths_to_mask,
    make_generator,
    masked_l2,
)
from kpop_helpers.diffusion.guidance import cfg_model_fn, guided_combine
from kpop_helpers.diffusion.schedule import (
    betas_for_alpha_bar,
    get_named_beta_schedule,
    respace_betas,
    space_timesteps,
)

from kpop_helpers.sampling import Constraint, SamplerSpec

__all__ = [
    "Constraint",
    "SamplerSpec",
    "DiffusionStep",
    "GaussianDiffusion",
    "ModelFn",
    "betas_for_alpha_bar",
    "cfg_model_fn",
    "draw_noise",
    "draw_torch_noise",
    "get_named_beta_schedule",
    "guided_combine",
    "lengths_to_mask",
    "make_generator",
    "masked_l2",
    "respace_betas",
    "space_timesteps",
]
