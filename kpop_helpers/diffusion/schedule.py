"""Noise schedules and timestep respacing, exactly as MDM builds them: re-exported from the sampling core.

`kpop_helpers.sampling.schedule` holds the one implementation (torch-free, shared with the edge runtime);
these names stay importable from here for existing callers.
"""

from __future__ import annotations

from kpop_helpers.sampling.schedule import (
    MAX_BETA,
    RespacingSpec,
    betas_for_alpha_bar,
    get_named_beta_schedule,
    respace_betas,
    space_timesteps,
)

__all__ = ["MAX_BETA", "RespacingSpec", "betas_for_alpha_bar", "get_named_beta_schedule", "respace_betas",
           "space_timesteps"]
