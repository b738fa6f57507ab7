"""ModelExporter: the denoiser to ONNX (dynamo), TorchScript and torch.export, each checked for parity in its
real runtime before it is moved into place, and `export_all` for the whole edge folder.

ONNX uses `torch.onnx.export(dynamo=True)`: the legacy TorchScript-based exporter bakes the example's
sequence length into MDM's graph. `torch.jit.trace` is deprecated in this torch; the TorchScript file is
still written for older deployments, next to the supported torch.export `.pt2`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from kpop_helpers.config import EdgeConfig
from kpop_helpers.data.clip import DataError
from kpop_helpers.export.loading import load_model_for_export
from kpop_helpers.export.onnx_wrapper import INPUT_NAMES, OUTPUT_NAMES, ExportableMDM, dynamic_shapes, example_inputs
from kpop_helpers.export.parity import (
    FP32_ATOL, measure_parity, onnx_runner, parity_inputs, require_parity, torch_export_runner,
    torch_runner, torchscript_runner,
)

logger = logging.getLogger(__name__)
DEFAULT_CONFIG = "edge_config.json"
ALL_FORMATS = ("onnx", "torchscript", "torch_export")


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


def commit_file(tmp: Path, final: Path) -> None:
    """fsync a finished temp file and move it into place atomically."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def temp_path(final: Path) -> Path:
    """A hidden temp name in the destination folder (same filesystem, so os.replace is atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def load_edge_config(config_path: str | Path | None) -> EdgeConfig:
    """EdgeConfig from the file; the defaults when the default file name is simply absent."""
    if config_path is None:
        return EdgeConfig()
    path = Path(config_path)
    if not path.is_file() and str(config_path) == DEFAULT_CONFIG:
        logger.info("%s not found; using the default edge configuration", config_path)
        return EdgeConfig()
    return EdgeConfig.load(path)


def export_onnx_file(model: torch.nn.Module, path: str | Path, *, opset: int = 18, atol: float = FP32_ATOL,
                     threads: int | None = None) -> ExportRecord:
    """Export `model` (an MDM) to ONNX with dynamic batch/frames; written only after ORT parity passes."""
    final, start = Path(path), time.perf_counter()
    tmp = temp_path(final)
    cfg = model.cfg
    wrapper = ExportableMDM(model)
    try:
        with quiet_export():
            program = torch.onnx.export(wrapper, example_inputs(cfg), dynamo=True, input_names=list(INPUT_NAMES),
                                        output_names=list(OUTPUT_NAMES), dynamic_shapes=dynamic_shapes(cfg),
                                        opset_version=int(opset), verbose=False)
            strip_debug_metadata(program)
            program.save(str(tmp))
        import onnx

        onnx.checker.check_model(str(tmp))
        report = measure_parity(torch_runner(model.eval()), onnx_runner(tmp, threads), parity_inputs(cfg),
                                runtime="onnxruntime", atol=atol)
        require_parity(report, final)
        commit_file(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ExportRecord(str(final), "onnxruntime", final.stat().st_size, report.to_dict(), time.perf_counter() - start)


def export_torchscript_file(model: torch.nn.Module, path: str | Path, *, atol: float = FP32_ATOL) -> ExportRecord:
    """torch.jit.trace (deprecated in this torch) to `path`, checked with torch.jit.load at other shapes."""
    final, start = Path(path), time.perf_counter()
    tmp = temp_path(final)
    logger.warning("torch.jit.trace is deprecated in torch %s; %s is kept for older runtimes, prefer the ONNX "
                   "or torch.export (.pt2) artifact", torch.__version__, final.name)
    try:
        with quiet_export(), torch.no_grad():
            traced = torch.jit.trace(ExportableMDM(model), example_inputs(model.cfg), check_trace=False)
            torch.jit.save(traced, str(tmp))
        report = measure_parity(torch_runner(model.eval()), torchscript_runner(tmp), parity_inputs(model.cfg),
                                runtime="torchscript", atol=atol)
        require_parity(report, final)
        commit_file(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ExportRecord(str(final), "torchscript", final.stat().st_size, report.to_dict(), time.perf_counter() - start)


def export_torch_program_file(model: torch.nn.Module, path: str | Path, *, atol: float = FP32_ATOL) -> ExportRecord:
    """torch.export with dynamic batch/frames, saved with torch.export.save (.pt2), checked after torch.export.load."""
    final, start = Path(path), time.perf_counter()
    tmp = temp_path(final)
    try:
        with quiet_export():
            program = torch.export.export(ExportableMDM(model), example_inputs(model.cfg),
                                          dynamic_shapes=dynamic_shapes(model.cfg))
            torch.export.save(program, str(tmp))
            report = measure_parity(torch_runner(model.eval()), torch_export_runner(tmp), parity_inputs(model.cfg),
                                    runtime="torch_export", atol=atol)
        require_parity(report, final)
        commit_file(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ExportRecord(str(final), "torch_export", final.stat().st_size, report.to_dict(),
                        time.perf_counter() - start)


class ModelExporter:
    """Exports a trained MDM for edge devices as configured by `edge_config.json`.

    model_path: our `.safetensors` export (config JSON and statistics beside/inside it), a training
    checkpoint `.pt`, or an official MDM `.pt`. `model=` skips loading (e.g. a model already in memory).
    `train_config` (a TrainConfig with data) enables the recovery fine-tune after structured pruning.
    """

    def __init__(self, model_path: str | Path | None, config_path: str | Path | None = DEFAULT_CONFIG, *,
                 model: torch.nn.Module | None = None, stats_dir: str | Path | None = None,
                 text_encoder: Any = None, train_config: Any = None, threads: int | None = None,
                 progress: bool = True):
        if model_path is None and model is None:
            raise DataError("nothing to export", field="model_path", expected="a weights file or model=")
        self.model_path = None if model_path is None else Path(model_path)
        self.config = load_edge_config(config_path)
        self.stats_dir, self.text_encoder, self.train_config = stats_dir, text_encoder, train_config
        self.threads, self.progress = threads, progress
        self._model = model.eval() if model is not None else None
        if self._model is not None and stats_dir is not None:
            from kpop_helpers.motion.stats import MotionStats

            self._model.stats = MotionStats.load(stats_dir)

    def load_model(self) -> torch.nn.Module:
        """The MDM to export (loaded once), in eval mode on the CPU."""
        if self._model is None:
            self._model = load_model_for_export(self.model_path, stats_dir=self.stats_dir).cpu().eval()
        return self._model

    @property
    def model(self) -> torch.nn.Module:
        return self.load_model()

    def export_to_onnx(self, path: str | Path) -> ExportRecord:
        """fp32 ONNX (dynamic batch and frames, opset from the config) with ORT parity max abs <= 1e-4."""
        record = export_onnx_file(self.model, path, opset=self.config.export.opset, threads=self.threads)
        logger.info("ONNX: %s (%.1f MB), parity max abs %.2e", path, record.size_bytes / 1e6, record.parity["max_abs"])
        return record

    def export_to_torchscript(self, path: str | Path) -> ExportRecord:
        """TorchScript (torch.jit.trace, deprecated) with torch.jit.load parity."""
        return export_torchscript_file(self.model, path)

    def export_to_torch_export(self, path: str | Path) -> ExportRecord:
        """torch.export program (.pt2) with torch.export.load parity."""
        return export_torch_program_file(self.model, path)

    def export_all(self, output_dir: str | Path, formats: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
        """Every artifact the config asks for, plus statistics, text encoder and manifest.json; returns the manifest.

        formats: subset of ("onnx", "torchscript", "torch_export"); None = the config's export.formats.
        Compressed variants (int8, fp16, pruned) are ONNX files and need "onnx".
        """
        from kpop_helpers.export.bundle import build_export_folder

        formats = list(formats if formats is not None else self.config.export.formats)
        unknown = [f for f in formats if f not in ALL_FORMATS]
        if unknown or not formats:
            raise DataError(f"unknown formats {unknown or formats}", field="formats", expected=f"from {ALL_FORMATS}")
        return build_export_folder(self, Path(output_dir), formats)

