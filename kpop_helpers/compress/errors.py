"""How far a compressed variant is from the fp32 model: denoiser output and generated joints, same inputs and noise."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from kpop_helpers.edge.sampler import Denoiser, draw_noise, sample_loop, sample_to_features
from kpop_helpers.edge.schedule import sampling_schedule
from kpop_helpers.runners import measure_difference, parity_inputs
from kpop_helpers.sampling import SamplerSpec


@dataclass
class VariantError:
    """Measured error of one variant against the fp32 PyTorch model (same inputs, same noise).

    denoiser_*: one denoiser call on fixed random inputs (several shapes); joints_*: whole generations
    (sampler/steps/guidance below) de-normalised and converted to joints, in millimetres:
    mpjpe = mean per-joint position error of the joints as generated (global trajectory included),
    max = worst joint of any frame, root_relative = MPJPE after subtracting each frame's pelvis (pose only;
    a small heading change early in a motion moves every later global position, so the global number
    grows with the length of the motion, most of all for untrained models).
    """

    variant: str
    denoiser_max_abs: float
    denoiser_rel_rms: float
    joints_mpjpe_mm: float | None = None
    joints_max_mm: float | None = None
    joints_root_relative_mm: float | None = None
    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    prompts: int | None = None
    frames: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    def summary(self) -> str:
        """One line for logs and reports."""
        joints = "" if self.joints_mpjpe_mm is None else f", joints MPJPE {self.joints_mpjpe_mm:.2f} mm " \
                                                         f"(max {self.joints_max_mm:.2f} mm)"
        return (f"{self.variant}: denoiser max abs {self.denoiser_max_abs:.3e}, rel RMS "
                f"{self.denoiser_rel_rms:.3e}{joints}")


def denoiser_error(reference: Denoiser, candidate: Denoiser,
                   inputs: Sequence[tuple[np.ndarray, ...]]) -> tuple[float, float]:
    """(max abs, relative RMS) of the candidate's x0 over all inputs pooled: `runners.measure_difference`."""
    difference = measure_difference(reference, candidate, inputs)
    return difference.max_abs, difference.rel_rms


@dataclass
class GenerationSetup:
    """What both generations share: text embeddings, statistics, length, sampler and noise seed."""

    text_emb: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    diffusion_steps: int
    frames: int
    sampler: str = "ddim"
    steps: int | None = 10
    guidance: float = 2.5
    seed: int = 0
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        # One check of the sampler settings, as everywhere (SamplerSpec); a bad one raises a DataError naming it.
        spec = SamplerSpec.parse(sampler=self.sampler, steps=self.steps, guidance=self.guidance)
        self.sampler, self.guidance = spec.sampler, spec.guidance


def generate_joints(denoiser: Denoiser, setup: GenerationSetup) -> np.ndarray:
    """Joints [B,T,22,3] from the numpy sampling loop (the edge runtime's loop) with this denoiser."""
    from kpop_helpers.motion.features import features_to_joints

    diffusion = sampling_schedule(setup.diffusion_steps, setup.sampler, setup.steps, setup.schedule)
    noise = draw_noise(setup.seed, setup.text_emb.shape[0], setup.frames, diffusion.num_steps,
                       stochastic=setup.sampler == "ddpm")
    sample = sample_loop(denoiser, setup.text_emb, noise, diffusion, sampler=setup.sampler, guidance=setup.guidance)
    return np.asarray(features_to_joints(sample_to_features(sample, setup.mean, setup.std)), np.float64)


def joints_error_mm(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(mean per-joint position error, max joint error) in millimetres between two [..., 22, 3] arrays (metres)."""
    distance = np.linalg.norm(np.asarray(candidate, np.float64) - np.asarray(reference, np.float64), axis=-1)
    return float(distance.mean() * 1000.0), float(distance.max() * 1000.0)


def root_relative_error_mm(reference: np.ndarray, candidate: np.ndarray) -> float:
    """MPJPE in millimetres after subtracting the pelvis (joint 0) of each frame from both."""
    ref = np.asarray(reference, np.float64)
    cand = np.asarray(candidate, np.float64)
    return joints_error_mm(ref - ref[..., :1, :], cand - cand[..., :1, :])[0]


def measure_variant(name: str, reference: Denoiser, candidate: Denoiser, cfg: Any, *,
                    setup: GenerationSetup | None = None, reference_joints: np.ndarray | None = None,
                    inputs: Sequence[tuple[np.ndarray, ...]] | None = None) -> VariantError:
    """VariantError of `candidate` vs `reference`; the joints part only when a GenerationSetup is given.

    Pass `reference_joints` (from `generate_joints(reference, setup)`) to reuse one reference generation
    across many variants.
    """
    inputs = inputs if inputs is not None else parity_inputs(cfg)
    max_abs, rel = denoiser_error(reference, candidate, inputs)
    error = VariantError(variant=name, denoiser_max_abs=max_abs, denoiser_rel_rms=rel)
    if setup is not None:
        ref_joints = reference_joints if reference_joints is not None else generate_joints(reference, setup)
        joints = generate_joints(candidate, setup)
        error.joints_mpjpe_mm, error.joints_max_mm = joints_error_mm(ref_joints, joints)
        error.joints_root_relative_mm = root_relative_error_mm(ref_joints, joints)
        error.sampler, error.steps, error.guidance = setup.sampler, setup.steps, setup.guidance
        error.prompts, error.frames = int(setup.text_emb.shape[0]), setup.frames
    return error
