"""Noise schedules and timestep respacing, exactly as MDM (improved-diffusion) builds them.

Everything here is float64 numpy; the sampler casts picked coefficients to float32 when it uses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

# Respacing spec: "ddimN", "4,1,3", a list of section counts (an int N = [N]), or None / "" for every step.
RespacingSpec = str | int | Sequence[int] | None

MAX_BETA = 0.999


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
    if num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps}")
    if name == "cosine":
        return betas_for_alpha_bar(num_steps, _cosine_alpha_bar)
    if name == "linear":
        # Scaled so that any num_steps has roughly the endpoints of the 1000-step DDPM schedule.
        scale = 1000 / num_steps
        return np.linspace(scale * 0.0001, scale * 0.02, num_steps, dtype=np.float64)
    raise ValueError(f"unknown noise schedule '{name}' (expected 'cosine' or 'linear')")


def _parse_spec(num_steps: int, spec: RespacingSpec) -> list[int] | None:
    """Section counts of a spec, or None when the spec is a 'ddimN' stride (handled separately)."""
    if spec is None or (isinstance(spec, str) and spec.strip() == ""):
        return [num_steps]
    if isinstance(spec, int):
        return [spec]
    if isinstance(spec, str):
        try:
            return [int(part) for part in spec.split(",")]
        except ValueError:
            raise ValueError(f"respacing spec '{spec}' is not understood (expected 'ddimN', "
                             "comma-separated integers such as '4,1,3', or a list of integers)") from None
    counts = [int(c) for c in spec]
    if not counts:
        raise ValueError("respacing spec is an empty list (expected at least one section count)")
    return counts


def _ddim_stride_steps(num_steps: int, spec: str) -> list[int]:
    try:
        desired = int(spec[len("ddim"):])
    except ValueError:
        raise ValueError(f"respacing spec '{spec}' is not understood (expected 'ddim' followed by an "
                         "integer, e.g. 'ddim50')") from None
    # The smallest integer stride giving exactly `desired` steps; never reaches num_steps-1 in general.
    for stride in range(1, num_steps):
        if len(range(0, num_steps, stride)) == desired:
            return list(range(0, num_steps, stride))
    raise ValueError(f"respacing '{spec}': cannot create exactly {desired} steps out of {num_steps} "
                     "with an integer stride (choose another count, or a section list such as "
                     f"[{desired}])")


def space_timesteps(num_timesteps: int, section_counts: RespacingSpec) -> list[int]:
    """Sorted original timesteps kept by a respacing spec ("ddimN", "4,1,3", [3, 4, 3]; None = all)."""
    if isinstance(section_counts, str) and section_counts.startswith("ddim"):
        return _ddim_stride_steps(num_timesteps, section_counts)
    counts = _parse_spec(num_timesteps, section_counts)
    size_per, extra = divmod(num_timesteps, len(counts))
    start = 0
    kept: set[int] = set()
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if count < 0:
            raise ValueError(f"respacing section {i} has a negative step count {count}")
        if size < count:
            raise ValueError(f"cannot divide section of {size} steps into {count}")
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
