"""MDM's diffusion schedule, respacing and reverse steps in numpy only (no torch), for the edge runtime.

This mirrors `kpop_helpers.diffusion` exactly: schedules and respacing are float64; each step picks the
float64 coefficients at t, casts them to float32 and does every array operation in float32, in the
reference's order (the "float32 rule" of the mdm_diffusion fixtures, which matters for DDIM near t = 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAX_BETA = 0.999
RespacingSpec = str | Sequence[int] | None


def cosine_betas(num_steps: int, max_beta: float = MAX_BETA) -> np.ndarray:
    """The cosine (Nichol & Dhariwal) beta schedule as MDM builds it (alpha_bar not normalised), float64."""
    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1.0 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
                     for i in range(num_steps)], dtype=np.float64)


def named_betas(name: str, num_steps: int) -> np.ndarray:
    """'cosine' or 'linear' betas of `num_steps` steps (float64)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps}")
    if name == "cosine":
        return cosine_betas(num_steps)
    if name == "linear":
        scale = 1000 / num_steps
        return np.linspace(scale * 0.0001, scale * 0.02, num_steps, dtype=np.float64)
    raise ValueError(f"unknown noise schedule '{name}' (expected 'cosine' or 'linear')")


def space_timesteps(num_steps: int, spec: RespacingSpec) -> list[int]:
    """Sorted kept timesteps of a respacing spec: "ddimN" (integer stride), "4,1,3" or [3, 4, 3]; None = all."""
    if isinstance(spec, str) and spec.startswith("ddim"):
        try:
            desired = int(spec[len("ddim"):])
        except ValueError:
            raise ValueError(f"respacing spec '{spec}' is not understood (expected e.g. 'ddim50')") from None
        for stride in range(1, num_steps):
            if len(range(0, num_steps, stride)) == desired:
                return list(range(0, num_steps, stride))
        raise ValueError(f"respacing '{spec}': cannot create exactly {desired} steps out of {num_steps} with an "
                         f"integer stride (choose another count, or a section list such as [{desired}])")
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        counts = [num_steps]
    elif isinstance(spec, str):
        try:
            counts = [int(part) for part in spec.split(",")]
        except ValueError:
            raise ValueError(f"respacing spec '{spec}' is not understood") from None
    else:
        counts = [int(c) for c in spec]
        if not counts:
            raise ValueError("respacing spec is an empty list")
    size_per, extra = divmod(num_steps, len(counts))
    start, kept = 0, set()
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if count < 0 or size < count:
            raise ValueError(f"cannot divide section of {size} steps into {count}")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0  # repeated addition + Python round (ties to even), exactly as the reference
        for _ in range(count):
            kept.add(start + round(position))
            position += stride
        start += size
    return sorted(kept)


class NumpyDiffusion:
    """The (respaced) schedule arrays of MDM's GaussianDiffusion, float64, with float32 reverse steps."""

    def __init__(self, num_steps: int, schedule: str = "cosine", respacing: RespacingSpec = None):
        base_alphas_cumprod = np.cumprod(1.0 - named_betas(schedule, num_steps))
        keep = set(space_timesteps(num_steps, respacing))
        last, betas, timestep_map = 1.0, [], []
        for i, alpha_cumprod in enumerate(base_alphas_cumprod):
            if i in keep:
                betas.append(1.0 - alpha_cumprod / last)
                last = alpha_cumprod
                timestep_map.append(i)
        if len(betas) < 2:
            raise ValueError(f"a diffusion schedule needs at least 2 steps; respacing {respacing!r} of "
                             f"{num_steps} steps keeps {len(betas)}")
        self.base_num_steps = int(num_steps)
        self.betas = np.array(betas, dtype=np.float64)
        self.timestep_map = np.array(timestep_map, dtype=np.int64)
        self.num_steps = len(self.betas)
        alphas = 1.0 - self.betas
        ac = np.cumprod(alphas)
        self.alphas_cumprod = ac
        self.alphas_cumprod_prev = np.append(1.0, ac[:-1])
        self.alphas_cumprod_next = np.append(ac[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(ac)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ac)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - ac)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / ac - 1)
        self.posterior_variance = self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - ac)
        # Entry 0 of the posterior variance is 0; its log takes entry 1 (t = 0 adds no noise anyway).
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1],
                                                               self.posterior_variance[1:]))
        self.posterior_mean_coef1 = self.betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - ac)

    def coef(self, name: str, t: np.ndarray) -> np.ndarray:
        """Array `name` picked at per-row t, cast to float32, shaped [B, 1, 1, 1]."""
        return getattr(self, name)[t].astype(np.float32).reshape(-1, 1, 1, 1)

    def predict_eps(self, x: np.ndarray, pred_xstart: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The noise implied by an x0 prediction: (sqrt(1/abar) x_t - x0) / sqrt(1/abar - 1), float32."""
        return ((self.coef("sqrt_recip_alphas_cumprod", t) * x - pred_xstart)
                / self.coef("sqrt_recipm1_alphas_cumprod", t))

    def ddpm_step(self, x: np.ndarray, pred_xstart: np.ndarray, t: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Ancestral step x_t -> x_{t-1} (FIXED_SMALL variance); rows at t = 0 get no noise."""
        mean = self.coef("posterior_mean_coef1", t) * pred_xstart + self.coef("posterior_mean_coef2", t) * x
        std = np.exp(np.float32(0.5) * self.coef("posterior_log_variance_clipped", t))
        nonzero = (t != 0).astype(np.float32).reshape(-1, 1, 1, 1)
        return mean + nonzero * std * noise

    def ddim_step(self, x: np.ndarray, pred_xstart: np.ndarray, t: np.ndarray, eta: float = 0.0,
                  noise: np.ndarray | None = None) -> np.ndarray:
        """DDIM step x_t -> x_{t_prev}; every operation in float32 from float32-cast coefficients."""
        eps = self.predict_eps(x, pred_xstart, t)
        ab = self.coef("alphas_cumprod", t)
        abp = self.coef("alphas_cumprod_prev", t)
        one = np.float32(1.0)
        sigma = np.float32(eta) * np.sqrt((one - abp) / (one - ab)) * np.sqrt(one - ab / abp)
        mean_pred = pred_xstart * np.sqrt(abp) + np.sqrt(one - abp - sigma ** 2) * eps
        if noise is None or eta == 0.0:
            return mean_pred
        nonzero = (t != 0).astype(np.float32).reshape(-1, 1, 1, 1)
        return mean_pred + nonzero * sigma * noise


def sampling_schedule(diffusion_steps: int, sampler: str, steps: int | None,
                      schedule: str = "cosine") -> NumpyDiffusion:
    """The schedule `kpop_helpers.generate` samples with: DDIM "ddim{steps}", DDPM section list [steps]."""
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
    if steps is not None and not 2 <= int(steps) <= diffusion_steps:
        raise ValueError(f"steps must lie in 2..{diffusion_steps} (the model's diffusion_steps), got {steps}")
    if steps is None or int(steps) == diffusion_steps:
        respacing: RespacingSpec = None
    elif sampler == "ddpm":
        respacing = [int(steps)]
    else:
        respacing = f"ddim{int(steps)}"
    return NumpyDiffusion(diffusion_steps, schedule, respacing)
