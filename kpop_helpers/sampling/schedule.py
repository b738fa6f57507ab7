"""Noise schedules, timestep respacing and the sampling plan, exactly as MDM (improved-diffusion) builds them.

Schedules are float64 numpy. A step picks the float64 coefficients at t and casts the picked values to
float32 (the reference's "float32 rule", which matters for DDIM near t = 0); `DiffusionSchedule.coef`
does that for numpy indices and torch indices alike, so both sides sample from the very same arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.sampling.xp import Array, namespace, row_shape

# Respacing spec: "ddimN", "4,1,3", a list of section counts (an int N = [N]), or None / "" for every step.
RespacingSpec = str | int | Sequence[int] | None

MAX_BETA = 0.999
SCHEDULES = ("cosine", "linear")
SCHEDULE_ARRAYS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2",
)
_RESPACING_EXPECTED = "'ddimN', comma-separated integers such as '4,1,3', or a list of integers"


def betas_for_alpha_bar(num_steps: int, alpha_bar: Callable[[float], float],
                        max_beta: float = MAX_BETA) -> np.ndarray:
    """Betas whose cumulative product follows alpha_bar(s) on s in [0, 1], each capped at max_beta."""
    betas = [min(1.0 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
             for i in range(num_steps)]
    return np.array(betas, dtype=np.float64)


def _cosine_alpha_bar(s: float) -> float:
    # Not normalised by alpha_bar(0): MDM's reference leaves it out and it cancels in the ratios.
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


def get_named_beta_schedule(name: str, num_steps: int) -> np.ndarray:
    """The 'cosine' (Nichol & Dhariwal) or 'linear' (DDPM, scaled to num_steps) beta schedule, float64."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise DataError(f"num_steps must be a positive integer, got {num_steps!r}", field="diffusion_steps",
                        expected="an integer >= 1")
    if name == "cosine":
        return betas_for_alpha_bar(num_steps, _cosine_alpha_bar)
    if name == "linear":
        # Scaled so that any num_steps has roughly the endpoints of the 1000-step DDPM schedule.
        scale = 1000 / num_steps
        return np.linspace(scale * 0.0001, scale * 0.02, num_steps, dtype=np.float64)
    raise DataError(f"unknown noise schedule '{name}'", field="noise_schedule",
                    expected=" or ".join(repr(s) for s in SCHEDULES))


def _section_counts(num_steps: int, spec: RespacingSpec) -> list[int]:
    """Section counts of a non-"ddimN" spec (None / "" = one section keeping every step)."""
    if spec is None or (isinstance(spec, str) and spec.strip() == ""):
        return [num_steps]
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return [int(spec)]
    try:
        counts = [int(part) for part in spec.split(",")] if isinstance(spec, str) else [int(c) for c in spec]
    except (TypeError, ValueError):
        raise DataError(f"respacing spec {spec!r} is not understood", field="respacing",
                        expected=_RESPACING_EXPECTED) from None
    if not counts:
        raise DataError("respacing spec is an empty list", field="respacing", expected="at least one section count")
    return counts


def _ddim_stride_steps(num_steps: int, spec: str) -> list[int]:
    try:
        desired = int(spec[len("ddim"):])
    except ValueError:
        raise DataError(f"respacing spec '{spec}' is not understood", field="respacing",
                        expected="'ddim' followed by an integer, e.g. 'ddim50'") from None
    # The smallest integer stride giving exactly `desired` steps; never reaches num_steps-1 in general.
    for stride in range(1, num_steps):
        if len(range(0, num_steps, stride)) == desired:
            return list(range(0, num_steps, stride))
    raise DataError(f"respacing '{spec}': cannot create exactly {desired} steps out of {num_steps} with an "
                    "integer stride", field="respacing",
                    expected=f"another count, or a section list such as [{desired}]")


def space_timesteps(num_timesteps: int, section_counts: RespacingSpec) -> list[int]:
    """Sorted original timesteps kept by a respacing spec ("ddimN", "4,1,3", [3, 4, 3]; None = all)."""
    if isinstance(section_counts, str) and section_counts.startswith("ddim"):
        return _ddim_stride_steps(num_timesteps, section_counts)
    counts = _section_counts(num_timesteps, section_counts)
    size_per, extra = divmod(num_timesteps, len(counts))
    start = 0
    kept: set[int] = set()
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if count < 0:
            raise DataError(f"respacing section {i} has a negative step count {count}", field="respacing",
                            expected="counts >= 0")
        if size < count:
            raise DataError(f"cannot divide section of {size} steps into {count}", field="respacing",
                            expected=f"at most {size} steps in section {i}")
        stride = 1.0 if count <= 1 else (size - 1) / (count - 1)
        # Repeated float addition and Python's round (ties to even) are part of the reference result.
        position = 0.0
        for _ in range(count):
            kept.add(start + round(position))
            position += stride
        start += size
    return sorted(kept)


def respace_betas(base_alphas_cumprod: np.ndarray, use_timesteps: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(new betas, timestep_map) of the schedule that keeps only `use_timesteps` of a base schedule."""
    keep = set(int(i) for i in use_timesteps)
    last = 1.0
    betas: list[float] = []
    timestep_map: list[int] = []
    for i, alpha_cumprod in enumerate(base_alphas_cumprod):
        if i in keep:
            betas.append(1.0 - alpha_cumprod / last)
            last = alpha_cumprod
            timestep_map.append(i)
    return np.array(betas, dtype=np.float64), np.array(timestep_map, dtype=np.int64)


def schedule_arrays(betas: np.ndarray) -> dict[str, np.ndarray]:
    """The 13 float64 arrays of MDM's GaussianDiffusion.__init__ for a beta schedule."""
    alphas = 1.0 - betas
    ac = np.cumprod(alphas, axis=0)
    ac_prev = np.append(1.0, ac[:-1])
    posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
    return {
        "betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev,
        "alphas_cumprod_next": np.append(ac[1:], 0.0), "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac), "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac), "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1),
        "posterior_variance": posterior_variance,
        # Entry 0 of the posterior variance is 0; its log takes entry 1 (t = 0 adds no noise anyway).
        "posterior_log_variance_clipped": np.log(np.append(posterior_variance[1], posterior_variance[1:])),
        "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
    }


class DiffusionSchedule:
    """The sampling plan of MDM's (respaced) GaussianDiffusion: kept timesteps and float64 schedule arrays.

    Every array of SCHEDULE_ARRAYS is an attribute, as are `timestep_map` (the original timestep the
    network sees at each schedule index), `use_timesteps`, `num_steps` (N, the steps sampled) and the base
    schedule (`base_num_steps`, `base_betas`, `base_alphas_cumprod`).
    """

    def __init__(self, num_steps: int = 1000, schedule: str = "cosine", respacing: RespacingSpec = None):
        self.base_betas = get_named_beta_schedule(schedule, num_steps)
        self.base_alphas_cumprod = np.cumprod(1.0 - self.base_betas)
        self.base_num_steps = int(num_steps)
        self.schedule = schedule
        self.respacing = respacing
        self.use_timesteps = np.array(space_timesteps(num_steps, respacing), dtype=np.int64)
        # Like MDM's SpacedDiffusion, betas are always recomputed from the base alphas_cumprod,
        # even when every step is kept (they then equal the named betas to ~1e-16).
        betas, self.timestep_map = respace_betas(self.base_alphas_cumprod, self.use_timesteps)
        if len(betas) < 2:
            raise DataError(f"a diffusion schedule needs at least 2 steps; respacing {respacing!r} of "
                            f"{num_steps} steps keeps {len(betas)}", field="respacing", expected=">= 2 kept steps")
        self.num_steps = len(betas)
        for name, values in schedule_arrays(betas).items():
            setattr(self, name, values)
        self._tables: dict[tuple[str, tuple[str, str]], Array] = {}

    def schedule_arrays(self) -> dict[str, np.ndarray]:
        """The 13 float64 schedule arrays by name, plus the int64 timestep_map."""
        arrays = {name: getattr(self, name) for name in SCHEDULE_ARRAYS}
        arrays["timestep_map"] = self.timestep_map
        return arrays

    def reverse_indices(self) -> range:
        """Schedule indices in sampling order: N-1 down to 0 (step k samples at t = N-1-k)."""
        return range(self.num_steps - 1, -1, -1)

    def table(self, name: str, like: Array) -> Array:
        """Array `name` as float32 (timestep_map: int64) in like's library and on its device, cached."""
        xp = namespace(like)
        key = (name, xp.device_key(like))
        if key not in self._tables:
            dtype = "int64" if name == "timestep_map" else "float32"
            self._tables[key] = xp.asarray(getattr(self, name), like, dtype)
        return self._tables[key]

    def rows(self, name: str, t: Array) -> Array:
        """Array `name` picked at per-row indices t ([B], numpy or torch), cast to float32."""
        # Cast-then-pick equals the reference's pick-then-cast value for value.
        return self.table(name, t)[t]

    def coef(self, name: str, t: Array, ndim: int = 4) -> Array:
        """Array `name` picked at t and cast to float32, shaped [B, 1, ...] to broadcast over ndim dims."""
        picked = self.rows(name, t)
        return picked.reshape(row_shape(picked.shape[0], ndim))

    def model_timesteps(self, t: Array) -> Array:
        """The original timesteps the network sees for schedule indices t (timestep_map[t], unscaled)."""
        return self.table("timestep_map", t)[t]
