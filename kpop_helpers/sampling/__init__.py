"""The one sampling core: MDM's schedules, respacing, sampler settings, reverse steps, guidance and constraints.

Torch-free (numpy, `kpop_helpers.errors` and the feature layout of `kpop_helpers.motion`): the edge runtime samples with it directly, and
`kpop_helpers.diffusion` runs the very same steps on torch tensors (see `xp` for how).
"""

from kpop_helpers.sampling.constraint import (
    LOWER_BODY_JOINTS, NUM_FEATURES, T2M_JOINTS, Constraint, hml_lower_body_mask, in_between_mask,
)
from kpop_helpers.sampling.denoiser import Denoiser, takes_guidance
from kpop_helpers.sampling.loop import guided_denoise, sample_loop, sample_to_features
from kpop_helpers.sampling.noise import SamplingNoise, SequentialSteps, draw_noise, resolve_noise
from kpop_helpers.sampling.schedule import (
    SCHEDULE_ARRAYS, DiffusionSchedule, RespacingSpec, betas_for_alpha_bar, get_named_beta_schedule,
    respace_betas, schedule_arrays, space_timesteps,
)
from kpop_helpers.sampling.spec import SAMPLERS, SamplerSpec
from kpop_helpers.sampling.windows import BLENDS, WindowPlan
from kpop_helpers.sampling.steps import (
    StepOutput, ddim_step, ddpm_step, guided_combine, posterior_mean, predict_eps_from_xstart, sample_step,
)

__all__ = [
    "BLENDS", "WindowPlan", "LOWER_BODY_JOINTS", "NUM_FEATURES", "SAMPLERS", "SCHEDULE_ARRAYS", "T2M_JOINTS",
    "Constraint", "Denoiser", "DiffusionSchedule", "RespacingSpec", "SamplerSpec", "SamplingNoise", "SequentialSteps",
    "StepOutput",
    "betas_for_alpha_bar", "ddim_step", "ddpm_step", "draw_noise", "get_named_beta_schedule", "guided_combine",
    "guided_denoise", "resolve_noise", "sample_loop", "sample_to_features",
    "hml_lower_body_mask", "in_between_mask", "posterior_mean", "predict_eps_from_xstart", "respace_betas",
    "sample_step", "schedule_arrays", "space_timesteps", "takes_guidance",
]
