"""MDM's Gaussian diffusion: schedules, respacing, training loss, DDPM/DDIM sampling and guidance."""

from kpop_helpers.diffusion.gaussian import (
    DiffusionStep,
    GaussianDiffusion,
    ModelFn,
    draw_noise,
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

__all__ = [
    "DiffusionStep",
    "GaussianDiffusion",
    "ModelFn",
    "betas_for_alpha_bar",
    "cfg_model_fn",
    "draw_noise",
    "get_named_beta_schedule",
    "guided_combine",
    "lengths_to_mask",
    "make_generator",
    "masked_l2",
    "respace_betas",
    "space_timesteps",
]
