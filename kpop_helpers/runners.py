"""Denoiser runners: one numpy call `(x, timesteps, text_emb, uncond) -> x0` for every runtime of the denoiser.

PyTorch (eager, TorchScript, torch.export) and ONNX Runtime artifacts are wrapped into the same callable,
with deterministic inputs of that signature, so that the export's parity checks and the compression
error reports compare runtimes on identical arrays with one measurement (`measure_difference`). Both
`export` and `compress` stand on this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kpop_helpers.sampling import Denoiser

# numpy in, numpy out: (x [B,263,1,T], timesteps [B] int64, text_emb [B,D], uncond [B] bool) -> x0.
Runner = Denoiser  # the one denoiser call (kpop_helpers.sampling.denoiser), here made from every runtime


def example_inputs(cfg: Any, batch: int = 2, frames: int | None = None, seed: int = 0) -> tuple[Tensor, ...]:
    """Deterministic inputs of the export signature (both uncond values present when batch > 1)."""
    frames = int(frames if frames is not None else min(cfg.max_frames, 60))
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((batch, cfg.njoints, cfg.nfeats, frames), dtype=np.float32))
    timesteps = torch.from_numpy(rng.integers(0, cfg.diffusion_steps, size=batch, dtype=np.int64))
    text_emb = torch.from_numpy(rng.standard_normal((batch, cfg.text_dim), dtype=np.float32))
    uncond = torch.from_numpy(np.arange(batch) % 2 == 1)
    if getattr(cfg, "guidance_input", False):  # a guidance student's fifth input: scales across its range
        return x, timesteps, text_emb, uncond, torch.from_numpy(rng.uniform(1.0, 4.0, size=batch).astype(np.float32))
    return x, timesteps, text_emb, uncond


def parity_shapes(cfg: Any) -> list[tuple[int, int]]:
    """(batch, frames) pairs: batches 1 and 3 (the guided batch of the edge loop is 2B) x a short and the max length."""
    long = int(cfg.max_frames)
    short = max(1, min(37, long - 1))
    return [(batch, frames) for batch in (1, 3) for frames in (short, long)]


def parity_inputs(cfg: Any, shapes: Sequence[tuple[int, int]] | None = None,
                  seed: int = 1234) -> list[tuple[np.ndarray, ...]]:
    """Deterministic numpy inputs for each shape."""
    out = []
    for i, (batch, frames) in enumerate(shapes or parity_shapes(cfg)):
        out.append(tuple(t.numpy() for t in example_inputs(cfg, batch, frames, seed=seed + i)))
    return out


def relative_rms(reference: np.ndarray, candidate: np.ndarray) -> float:
    """RMS(candidate - reference) / RMS(reference) (inf when the reference is all zeros and they differ)."""
    reference = np.asarray(reference, dtype=np.float64)
    diff = np.asarray(candidate, dtype=np.float64) - reference
    denom = float(np.sqrt(np.mean(reference ** 2)))
    num = float(np.sqrt(np.mean(diff ** 2)))
    return num / denom if denom > 0 else (0.0 if num == 0 else float("inf"))


@dataclass
class DifferenceCase:
    """Disagreement of two runners on one input: its shape, max abs and relative RMS of the x0 outputs."""

    batch: int
    frames: int
    max_abs: float
    rel_rms: float


@dataclass
class RunnerDifference:
    """Disagreement of a candidate runner with a reference over several inputs: per input and pooled."""

    cases: list[DifferenceCase] = field(default_factory=list)
    max_abs: float = float("nan")  # over every input
    rel_rms: float = float("nan")  # RMS(candidate - reference) / RMS(reference), every input pooled


def measure_difference(reference: Runner, candidate: Runner,
                       inputs: Sequence[tuple[np.ndarray, ...]]) -> RunnerDifference:
    """Run both on every input: max abs and relative RMS per input and pooled (a shape mismatch is inf)."""
    result = RunnerDifference()
    expected, actual = [], []
    for args in inputs:
        want = np.asarray(reference(*args), np.float64)
        got = np.asarray(candidate(*args), np.float64)
        batch, frames = int(args[0].shape[0]), int(args[0].shape[-1])
        if got.shape != want.shape:
            result.cases.append(DifferenceCase(batch, frames, float("inf"), float("inf")))
            continue
        result.cases.append(DifferenceCase(batch, frames, float(np.max(np.abs(got - want))), relative_rms(want, got)))
        expected.append(want.ravel())
        actual.append(got.ravel())
    if any(not np.isfinite(c.max_abs) for c in result.cases):
        result.max_abs = result.rel_rms = float("inf")
    elif expected:
        e, a = np.concatenate(expected), np.concatenate(actual)
        result.max_abs, result.rel_rms = float(np.max(np.abs(a - e))), relative_rms(e, a)
    return result


def torch_runner(module: torch.nn.Module, guidance_input: bool | None = None) -> Runner:
    """Run a PyTorch module (eager, TorchScript or an exported program's module) on numpy inputs.

    guidance_input: whether the module takes the guidance scale as a fifth input (None: `module.guidance_input`).
    """
    eager = hasattr(module, "output_guidance")  # an MDM: its fifth positional argument is frame_mask

    def run(x: np.ndarray, t: np.ndarray, e: np.ndarray, u: np.ndarray, g: np.ndarray | None = None) -> np.ndarray:
        args = [torch.from_numpy(np.ascontiguousarray(a)) for a in (x, t, e, u)]
        with torch.no_grad():
            if g is None:
                out = module(*args)
            elif eager:
                out = module(*args, guidance=torch.from_numpy(np.ascontiguousarray(g, dtype=np.float32)))
            else:
                out = module(*args, torch.from_numpy(np.ascontiguousarray(g, dtype=np.float32)))
        return out.detach().float().numpy()

    run.guidance_input = bool(getattr(module, "guidance_input", False) if guidance_input is None else guidance_input)
    return run


def onnx_runner(path: str | Path, threads: int | None = None) -> Runner:
    """Run an ONNX file in an ONNX Runtime CPU session."""
    from kpop_helpers.edge.runtime import onnx_denoiser
    from kpop_helpers.edge.text import make_session

    return onnx_denoiser(make_session(path, threads))


def torchscript_runner(path: str | Path) -> Runner:
    """Run a TorchScript file loaded with torch.jit.load (deprecated in this torch, like jit.trace; silenced)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    inputs = len(list(module.graph.inputs())) - 1  # less `self`
    return torch_runner(module.eval(), guidance_input=inputs == 5)


def torch_export_runner(path: str | Path) -> Runner:
    """Run a torch.export `.pt2` file loaded with torch.export.load."""
    program = torch.export.load(str(path))
    return torch_runner(program.module(), guidance_input=len(program.graph_signature.user_inputs) == 5)
