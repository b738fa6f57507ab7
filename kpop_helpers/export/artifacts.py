"""One denoiser artifact file: ONNX (dynamo), TorchScript or torch.export, parity-checked in its real runtime
before it is moved into place, plus the writing helpers the text export and the bundle share.

ONNX uses `torch.onnx.export(dynamo=True)`: the legacy TorchScript-based exporter bakes the example's
sequence length into MDM's graph. `torch.jit.trace` is deprecated in this torch; the TorchScript file is
still written for older deployments, next to the supported torch.export `.pt2`.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from kpop_helpers.edge.manifest import input_names
from kpop_helpers.export.onnx_wrapper import OUTPUT_NAMES, ExportableMDM, dynamic_shapes, example_inputs
from kpop_helpers.export.parity import FP32_ATOL, measure_parity, require_parity
from kpop_helpers.runners import onnx_runner, parity_inputs, torch_export_runner, torch_runner, torchscript_runner
from kpop_helpers.utils import staged_path

logger = logging.getLogger(__name__)


@dataclass
class ExportRecord:
    """One written artifact: where, which runtime, how big, how it compares with PyTorch, how long it took."""

    path: str
    runtime: str
    size_bytes: int
    parity: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence exporter chatter (torchvision op registration, TracerWarnings on static shape checks)."""
    names = ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch.export", "torch._export",
             "onnxscript", "onnx_ir")
    noisy = [logging.getLogger(name) for name in names]
    levels = [log.level for log in noisy]
    for log in noisy:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # The parity run at other batch sizes and lengths is what proves the trace/export generalises.
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            yield
    finally:
        for log, level in zip(noisy, levels):
            log.setLevel(level)


def strip_debug_metadata(program: Any) -> None:
    """Drop the dynamo exporter's per-node debug metadata (FX node text, class names, stack traces with local
    paths) from an ONNXProgram before saving: over 1 MB of the official model's file, no effect on compute."""
    graph = program.model.graph
    for node in graph.all_nodes():
        node.metadata_props.clear()
        for value in node.outputs:
            value.metadata_props.clear()
    for value in graph.inputs:
        value.metadata_props.clear()


def trace_to_file(model: torch.nn.Module, path: Path) -> None:
    """torch.jit.trace the export wrapper of `model` (an MDM, possibly quantised) and save it to `path`."""
    with quiet_export(), torch.no_grad():
        traced = torch.jit.trace(ExportableMDM(model), example_inputs(model.cfg), check_trace=False)
        torch.jit.save(traced, str(path))


def export_onnx_file(model: torch.nn.Module, path: str | Path, *, opset: int = 18, atol: float = FP32_ATOL,
                     threads: int | None = None) -> ExportRecord:
    """Export `model` (an MDM) to ONNX with dynamic batch/frames; written only after ORT parity passes."""
    import onnx

    final, start, cfg = Path(path), time.perf_counter(), model.cfg
    with staged_path(final) as tmp:
        with quiet_export():
            program = torch.onnx.export(ExportableMDM(model), example_inputs(cfg), dynamo=True,
                                        input_names=list(input_names(cfg)), output_names=list(OUTPUT_NAMES),
                                        dynamic_shapes=dynamic_shapes(cfg), opset_version=int(opset), verbose=False)
            strip_debug_metadata(program)
            program.save(str(tmp))
        onnx.checker.check_model(str(tmp))
        report = measure_parity(torch_runner(model.eval()), onnx_runner(tmp, threads), parity_inputs(cfg),
                                runtime="onnxruntime", atol=atol)
        require_parity(report, final)
    return ExportRecord(str(final), "onnxruntime", final.stat().st_size, report.to_dict(), time.perf_counter() - start)


def export_torchscript_file(model: torch.nn.Module, path: str | Path, *, atol: float = FP32_ATOL) -> ExportRecord:
    """torch.jit.trace (deprecated in this torch) to `path`, checked with torch.jit.load at other shapes."""
    final, start = Path(path), time.perf_counter()
    logger.warning("torch.jit.trace is deprecated in torch %s; %s is kept for older runtimes, prefer the ONNX "
                   "or torch.export (.pt2) artifact", torch.__version__, final.name)
    with staged_path(final) as tmp:
        trace_to_file(model, tmp)
        report = measure_parity(torch_runner(model.eval()), torchscript_runner(tmp), parity_inputs(model.cfg),
                                runtime="torchscript", atol=atol)
        require_parity(report, final)
    return ExportRecord(str(final), "torchscript", final.stat().st_size, report.to_dict(), time.perf_counter() - start)


def export_torch_program_file(model: torch.nn.Module, path: str | Path, *, atol: float = FP32_ATOL) -> ExportRecord:
    """torch.export with dynamic batch/frames, saved with torch.export.save (.pt2), checked after torch.export.load."""
    final, start = Path(path), time.perf_counter()
    with staged_path(final) as tmp:
        with quiet_export():
            program = torch.export.export(ExportableMDM(model), example_inputs(model.cfg),
                                          dynamic_shapes=dynamic_shapes(model.cfg))
            torch.export.save(program, str(tmp))
            report = measure_parity(torch_runner(model.eval()), torch_export_runner(tmp), parity_inputs(model.cfg),
                                    runtime="torch_export", atol=atol)
        require_parity(report, final)
    return ExportRecord(str(final), "torch_export", final.stat().st_size, report.to_dict(),
                        time.perf_counter() - start)
