"""Parity of an exported artifact against the PyTorch model: same inputs, measured max abs and relative RMS.

Every artifact is run in its real runtime (ONNX Runtime session, torch.jit.load, torch.export.load) at two
batch sizes and two lengths (the longest is max_frames), so dynamic axes are exercised and a trace that
baked in a shape fails here rather than on a user's device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kpop_helpers.export.onnx_wrapper import example_inputs

# numpy in, numpy out: (x, timesteps, text_emb, uncond) -> x0.
Runner = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
FP32_ATOL = 1e-4


class ParityError(RuntimeError):
    """An exported artifact disagrees with PyTorch beyond the tolerance; the message holds the numbers."""

    def __init__(self, report: "ParityReport", path: str | Path | None = None):
        where = f" ({path})" if path else ""
        super().__init__(f"{report.runtime} export failed parity{where}: {report.summary()}; the artifact was "
                         "not written")
        self.report = report


@dataclass
class ParityCase:
    """Error of one input shape."""

    batch: int
    frames: int
    max_abs: float
    rel_rms: float


@dataclass
class ParityReport:
    """Measured disagreement of a runtime with PyTorch over several shapes."""

    runtime: str
    atol: float
    cases: list[ParityCase] = field(default_factory=list)

    @property
    def max_abs(self) -> float:
        return max((c.max_abs for c in self.cases), default=float("nan"))

    @property
    def rel_rms(self) -> float:
        return max((c.rel_rms for c in self.cases), default=float("nan"))

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(np.isfinite(c.max_abs) and c.max_abs <= self.atol for c in self.cases)

    def summary(self) -> str:
        """One line with the worst numbers and each shape."""
        shapes = ", ".join(f"B={c.batch} T={c.frames}: {c.max_abs:.2e}" for c in self.cases)
        return f"max abs {self.max_abs:.3e} (tolerance {self.atol:.1e}), rel RMS {self.rel_rms:.3e} [{shapes}]"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers for manifest.json."""
        return {"runtime": self.runtime, "atol": self.atol, "passed": self.passed, "max_abs": self.max_abs,
                "rel_rms": self.rel_rms, "cases": [asdict(c) for c in self.cases]}


def relative_rms(reference: np.ndarray, candidate: np.ndarray) -> float:
    """RMS(candidate - reference) / RMS(reference) (inf when the reference is all zeros and they differ)."""
    reference = np.asarray(reference, dtype=np.float64)
    diff = np.asarray(candidate, dtype=np.float64) - reference
    denom = float(np.sqrt(np.mean(reference ** 2)))
    num = float(np.sqrt(np.mean(diff ** 2)))
    return num / denom if denom > 0 else (0.0 if num == 0 else float("inf"))


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


def torch_runner(module: torch.nn.Module) -> Runner:
    """Run a PyTorch module (eager, TorchScript or an exported program's module) on numpy inputs."""
    def run(x: np.ndarray, t: np.ndarray, e: np.ndarray, u: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = module(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(t)),
                         torch.from_numpy(np.ascontiguousarray(e)), torch.from_numpy(np.ascontiguousarray(u)))
        return out.detach().float().numpy()

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
    return torch_runner(module.eval())


def torch_export_runner(path: str | Path) -> Runner:
    """Run a torch.export `.pt2` file loaded with torch.export.load."""
    return torch_runner(torch.export.load(str(path)).module())


def measure_parity(reference: Runner, candidate: Runner, inputs: Sequence[tuple[np.ndarray, ...]], *,
                   runtime: str, atol: float = FP32_ATOL) -> ParityReport:
    """Run both on every input and record max abs / relative RMS per shape."""
    report = ParityReport(runtime=runtime, atol=float(atol))
    for args in inputs:
        expected, actual = reference(*args), candidate(*args)
        if actual.shape != expected.shape:
            report.cases.append(ParityCase(int(args[0].shape[0]), int(args[0].shape[-1]), float("inf"), float("inf")))
            continue
        report.cases.append(ParityCase(batch=int(args[0].shape[0]), frames=int(args[0].shape[-1]),
                                       max_abs=float(np.max(np.abs(actual - expected))),
                                       rel_rms=relative_rms(expected, actual)))
    return report


def require_parity(report: ParityReport, path: str | Path | None = None) -> ParityReport:
    """Return the report, or raise ParityError with its numbers."""
    if not report.passed:
        raise ParityError(report, path)
    return report
