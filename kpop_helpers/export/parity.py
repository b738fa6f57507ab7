"""Parity of an exported artifact against the PyTorch model: same inputs, measured max abs and relative RMS.

Every artifact is run in its real runtime (ONNX Runtime session, torch.jit.load, torch.export.load) at two
batch sizes and two lengths (the longest is max_frames), so dynamic axes are exercised and a trace that
baked in a shape fails here rather than on a user's device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The runners and their inputs live one floor down (compress uses them too); re-exported here, their old home.
from kpop_helpers.runners import (
    DifferenceCase, Runner, measure_difference, onnx_runner, parity_inputs, parity_shapes, relative_rms,
    torch_export_runner, torch_runner, torchscript_runner,
)

__all__ = [
    "FP32_ATOL", "ParityCase", "ParityError", "ParityReport", "Runner", "measure_parity", "onnx_runner",
    "parity_inputs", "parity_shapes", "relative_rms", "require_parity", "torch_export_runner", "torch_runner",
    "torchscript_runner",
]

FP32_ATOL = 1e-4


class ParityError(RuntimeError):
    """An exported artifact disagrees with PyTorch beyond the tolerance; the message holds the numbers."""

    def __init__(self, report: "ParityReport", path: str | Path | None = None):
        where = f" ({path})" if path else ""
        super().__init__(f"{report.runtime} export failed parity{where}: {report.summary()}; the artifact was "
                         "not written")
        self.report = report


ParityCase = DifferenceCase  # one input's error: the runners' measurement (kept under its old name)


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


def measure_parity(reference: Runner, candidate: Runner, inputs: Sequence[tuple[np.ndarray, ...]], *,
                   runtime: str, atol: float = FP32_ATOL) -> ParityReport:
    """`runners.measure_difference` per shape, as a ParityReport with this runtime's tolerance."""
    return ParityReport(runtime=runtime, atol=float(atol), cases=measure_difference(reference, candidate, inputs).cases)


def require_parity(report: ParityReport, path: str | Path | None = None) -> ParityReport:
    """Return the report, or raise ParityError with its numbers."""
    if not report.passed:
        raise ParityError(report, path)
    return report
