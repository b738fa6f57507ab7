"""MDM's reverse steps and classifier-free guidance, written once for numpy arrays and torch tensors.

Numerics follow the reference (GuyTevet/motion-diffusion-model, FIXED_SMALL variance, x0 prediction, no
clamping): coefficients are picked from the float64 schedule at t and cast to float32, and every array
operation is float32 in the reference's order. Python scalars (eta, 0.5, 1) stay "weak" in both
libraries, so they never promote a float32 array to float64.
"""

from __future__ import annotations

from dataclasses import dataclass

from kpop_helpers.errors import DataError
from kpop_helpers.sampling.schedule import DiffusionSchedule
from kpop_helpers.sampling.xp import Array, namespace, row_shape


@dataclass
class StepOutput:
    """One reverse step: the new sample, the x0 it used and, per sampler, the posterior mean or the eps."""

    sample: Array
    pred_xstart: Array
    mean: Array | None = None
    eps: Array | None = None


def _nonzero(t: Array, like: Array) -> Array:
    """1.0 for rows with t != 0, 0.0 at t = 0 (the last step adds no noise), shaped [B, 1, ...]."""
    return namespace(like).float32(t != 0).reshape(row_shape(like.shape[0], like.ndim))


def predict_eps_from_xstart(schedule: DiffusionSchedule, x: Array, t: Array, pred_xstart: Array) -> Array:
    """The noise implied by an x0 prediction: (sqrt(1/abar) x_t - x0) / sqrt(1/abar - 1)."""
    return ((schedule.coef("sqrt_recip_alphas_cumprod", t, x.ndim) * x - pred_xstart)
            / schedule.coef("sqrt_recipm1_alphas_cumprod", t, x.ndim))


def posterior_mean(schedule: DiffusionSchedule, x: Array, t: Array, pred_xstart: Array) -> Array:
    """Mean of q(x_{t-1} | x_t, x0): c1[t] * x0 + c2[t] * x_t."""
    return (schedule.coef("posterior_mean_coef1", t, x.ndim) * pred_xstart
            + schedule.coef("posterior_mean_coef2", t, x.ndim) * x)


def ddpm_step(schedule: DiffusionSchedule, x: Array, t: Array, pred_xstart: Array, noise: Array) -> StepOutput:
    """Ancestral step x_t -> x_{t-1} (FIXED_SMALL variance); rows at t = 0 get no noise (sample = mean)."""
    mean = posterior_mean(schedule, x, t, pred_xstart)
    std = namespace(x).exp(0.5 * schedule.coef("posterior_log_variance_clipped", t, x.ndim))
    # The reference's order: (mask * std) * noise, then added to the mean.
    return StepOutput(sample=mean + _nonzero(t, x) * std * noise, pred_xstart=pred_xstart, mean=mean)


def ddim_step(schedule: DiffusionSchedule, x: Array, t: Array, pred_xstart: Array, eta: float = 0.0,
              noise: Array | None = None) -> StepOutput:
    """DDIM step x_t -> x_{t_prev} (eta = 0: deterministic); float32 from float32-cast coefficients."""
    eta = float(eta)  # a numpy float64 eta would promote the float32 arithmetic
    if not 0.0 <= eta <= 1.0:
        raise DataError(f"eta must lie in [0, 1], got {eta}", field="eta", expected="0 <= eta <= 1")
    xp = namespace(x)
    eps = predict_eps_from_xstart(schedule, x, t, pred_xstart)
    alpha_bar = schedule.coef("alphas_cumprod", t, x.ndim)
    alpha_bar_prev = schedule.coef("alphas_cumprod_prev", t, x.ndim)
    # All in float32 from float32-cast coefficients: a float64 version differs by ~1e-3 near t = 0.
    sigma = eta * xp.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * xp.sqrt(1 - alpha_bar / alpha_bar_prev)
    sample = pred_xstart * xp.sqrt(alpha_bar_prev) + xp.sqrt(1 - alpha_bar_prev - sigma ** 2) * eps
    if noise is not None and eta > 0.0:  # sigma = 0 otherwise: the noise term is exactly 0
        sample = sample + _nonzero(t, x) * sigma * noise
    return StepOutput(sample=sample, pred_xstart=pred_xstart, eps=eps)


def sample_step(schedule: DiffusionSchedule, sampler: str, x: Array, t: Array, pred_xstart: Array,
                noise: Array | None, eta: float = 0.0) -> StepOutput:
    """The step of `sampler` ("ddpm" | "ddim"): what every sampling loop calls after the model."""
    if sampler == "ddpm":
        if noise is None:
            raise DataError("a DDPM step needs noise", field="noise", expected="an array of the sample's shape")
        return ddpm_step(schedule, x, t, pred_xstart, noise)
    if sampler == "ddim":
        return ddim_step(schedule, x, t, pred_xstart, eta, noise)
    raise DataError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}", field="sampler",
                    expected="'ddpm' or 'ddim'")


def guidance_rows(scale: float | Array, like: Array, batch: int) -> Array:
    """The guidance scale as one float32 value per row [batch], in `like`'s library and device.

    `scale`: a number or one value per row; anything else raises DataError naming the field.
    """
    xp = namespace(like)
    rows = xp.asarray(scale, like, "float32").reshape(-1)
    if rows.shape[0] not in (1, batch):
        raise DataError(f"guidance scale must be a number or have shape [{batch}], got {tuple(rows.shape)}",
                        field="guidance", expected=f"a number or one value per row ({batch})")
    return rows if rows.shape[0] == batch else xp.concat([rows] * batch)


def guided_combine(out_cond: Array, out_uncond: Array, scale: float | Array) -> Array:
    """Classifier-free guidance: out_uncond + scale * (out_cond - out_uncond), scalar or per-row [B] scale."""
    batch = out_cond.shape[0]
    scale = guidance_rows(scale, out_cond, batch).reshape(row_shape(batch, out_cond.ndim))
    return out_uncond + scale * (out_cond - out_uncond)
