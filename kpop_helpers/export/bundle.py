"""ModelExporter and the edge folder it builds (`export_all`): every artifact the config asks for, measured
errors, and manifest.json last."""

from __future__ import annotations

import json
import logging
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from kpop_helpers.compress import (
    GenerationSetup, compressed_size_bytes, convert_onnx_fp16, count_parameters, generate_joints, measure_variant,
    onnx_size_bytes, prune_model, quantize_onnx_int8, quantize_torch_int8, recovery_finetune, torch_state_size_bytes,
)
from kpop_helpers.config import EDGE_CONFIG_NAME, EXPORT_FORMATS, load_edge_config
from kpop_helpers.edge.manifest import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, MEAN_FILE, STD_FILE
from kpop_helpers.edge.schedule import sampling_schedule
from kpop_helpers.errors import DataError
from kpop_helpers.export.artifacts import (
    ExportRecord, export_onnx_file, export_torch_program_file, export_torchscript_file, trace_to_file,
)
from kpop_helpers.export.loading import load_model_for_export
from kpop_helpers.export.onnx_wrapper import input_spec
from kpop_helpers.runners import onnx_runner, parity_inputs, torch_runner, torchscript_runner
from kpop_helpers.utils import atomic_write_text, staged_path

logger = logging.getLogger(__name__)
# Embedded for the edge side when the config lists no prompts (mode "precomputed") and used to measure errors.
DEFAULT_PROMPTS = ("a powerful hip-hop dance with big arm waves", "a cute aegyo dance with small bounces")


class ModelExporter:
    """Exports a trained MDM for edge devices as configured by `edge_config.json`.

    model_path: our `.safetensors` export (config JSON and statistics beside/inside it), a training
    checkpoint `.pt`, or an official MDM `.pt`. `model=` skips loading (e.g. a model already in memory).
    `train_config` (a TrainConfig with data) enables the recovery fine-tune after structured pruning.
    """

    def __init__(self, model_path: str | Path | None, config_path: str | Path | None = EDGE_CONFIG_NAME, *,
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
        formats = list(formats if formats is not None else self.config.export.formats)
        unknown = [f for f in formats if f not in EXPORT_FORMATS]
        if unknown or not formats:
            raise DataError(f"unknown formats {unknown or formats}", field="formats", expected=f"from {EXPORT_FORMATS}")
        return build_export_folder(self, Path(output_dir), formats)


class _Context:
    """What every variant is compared against: the fp32 PyTorch model on fixed inputs and fixed noise."""

    def __init__(self, exporter: ModelExporter, out_dir: Path, text_emb: np.ndarray):
        self.exporter, self.out_dir, self.cfg = exporter, out_dir, exporter.config
        self.model = exporter.model
        stats = self.model.stats
        s = self.cfg.sampling
        self.setup = GenerationSetup(text_emb=text_emb, mean=np.asarray(stats.mean), std=np.asarray(stats.std),
                                     diffusion_steps=int(self.model.cfg.diffusion_steps),
                                     frames=int(self.model.cfg.max_frames), sampler=s.sampler, steps=s.steps,
                                     guidance=s.guidance, schedule=self.model.cfg.noise_schedule)
        self.reference = torch_runner(self.model)
        self.inputs = parity_inputs(self.model.cfg)
        self.reference_joints = generate_joints(self.reference, self.setup)

    def error(self, name: str, candidate: Any) -> dict[str, Any]:
        return measure_variant(name, self.reference, candidate, self.model.cfg, setup=self.setup,
                               reference_joints=self.reference_joints, inputs=self.inputs).to_dict()


def _entry(file: Path, runtime: str, precision: str, pruning: str | None, params: int, **extra: Any) -> dict[str, Any]:
    return {"file": file.name, "runtime": runtime, "precision": precision, "pruning": pruning,
            "size_bytes": onnx_size_bytes(file) if file.suffix == ".onnx" else file.stat().st_size, "params": params,
            **extra}


def _int8(ctx: _Context, name: str, src: Path, dst: Path, cfg: Any, params: int, pruning: str | None) -> dict[str, Any]:
    q = ctx.cfg.quantization
    result = quantize_onnx_int8(src, dst, cfg, per_channel=q.per_channel, reduce_range=q.reduce_range,
                                threads=ctx.exporter.threads)
    return _entry(dst, "onnxruntime", "int8", pruning, params, quantization=result.to_dict(),
                  error=ctx.error(name, onnx_runner(dst, ctx.exporter.threads)))


def _pruned_variants(ctx: _Context, fp32_onnx: Path) -> dict[str, dict[str, Any]]:
    from kpop_helpers.model import save_mdm

    p, model = ctx.cfg.pruning, ctx.model
    pruned, report = prune_model(model, p.kind, p.sparsity)
    before = ctx.error(f"pruned_{p.kind}_before_recovery", torch_runner(pruned.eval()))
    recovery: dict[str, Any] = {"requested_steps": p.recovery_steps, "done": False}
    if p.kind != "unstructured" and p.recovery_steps > 0:
        if ctx.exporter.train_config is None:
            warnings.warn(f"pruning '{p.kind}' asks for {p.recovery_steps} recovery steps but no training data was "
                          "given (--train-data); the pruned model is exported without recovery", RuntimeWarning)
            recovery["reason"] = "no training data given"
        else:
            import tempfile

            # The trainer's checkpoints are scratch here: the recovered weights are saved below.
            with tempfile.TemporaryDirectory(prefix=".recovery_", dir=ctx.out_dir) as scratch:
                pruned, result = recovery_finetune(pruned, ctx.exporter.train_config, steps=p.recovery_steps,
                                                   stats=model.stats, out_dir=scratch, progress=ctx.exporter.progress)
            recovery.update(done=True, train_loss=result.train_loss, val_loss=result.val_loss,
                            seconds=result.wall_seconds)
    pruned = pruned.cpu().eval()
    pruned.stats, pruned.text_encoder_name = model.stats, model.text_encoder_name
    name = f"pruned_{p.kind}"
    weights = save_mdm(pruned, ctx.out_dir / f"model_{name}.safetensors")
    onnx_path = ctx.out_dir / f"model_{name}.onnx"
    record = export_onnx_file(pruned, onnx_path, opset=ctx.cfg.export.opset, threads=ctx.exporter.threads)
    params = count_parameters(pruned)
    entry = _entry(onnx_path, "onnxruntime", "fp32", p.kind, params, parity=record.parity,
                   error=ctx.error(name, onnx_runner(onnx_path, ctx.exporter.threads)),
                   error_before_recovery=before, recovery=recovery, prune_report=report.to_dict(),
                   weights=weights.name, model_config=pruned.cfg.to_dict())
    if p.kind == "unstructured":
        entry["compressed_size_bytes"] = compressed_size_bytes(onnx_path)
        entry["fp32_compressed_size_bytes"] = compressed_size_bytes(fp32_onnx)
    out = {name: entry}
    if ctx.cfg.quantization.enabled and ctx.cfg.quantization.backend == "onnxruntime":
        out[f"{name}_int8"] = _int8(ctx, f"{name}_int8", onnx_path, ctx.out_dir / f"model_{name}_int8.onnx",
                                    pruned.cfg, params, p.kind)
    return out


def _torch_int8(ctx: _Context) -> dict[str, Any]:
    """torch.ao dynamic int8, traced to TorchScript (the only file format that keeps its packed weights)."""
    quantized, coverage = quantize_torch_int8(ctx.model)
    path = ctx.out_dir / "model_int8_torch_scripted.pt"
    with staged_path(path) as tmp:
        trace_to_file(quantized, tmp)
    return _entry(path, "torchscript", "int8", None, count_parameters(ctx.model), coverage=coverage.to_dict(),
                  state_dict_bytes=torch_state_size_bytes(quantized),
                  error=ctx.error("torch_int8", torchscript_runner(path)))


def _text_section(ctx: _Context, encoder: Any) -> dict[str, Any]:
    from kpop_helpers.export.text_export import export_text_encoder, save_prompt_embeddings

    model, e = ctx.model, ctx.cfg.export
    info: dict[str, Any] = {"name": model.text_encoder_name, "dim": int(model.cfg.text_dim), "mode": e.text_encoder}
    if e.text_encoder == "none" or encoder is None:
        info["mode"] = "none"
        return info
    if e.text_encoder == "onnx":
        try:
            result = export_text_encoder(encoder, ctx.out_dir, opset=e.opset, threads=ctx.exporter.threads)
            info.update(onnx=result.onnx, data=result.data, tokenizer=result.tokenizer, max_length=result.max_length,
                        size_bytes=result.size_bytes, parity={"max_abs": result.max_abs, "atol": result.atol,
                                                              "tokens_identical": result.tokens_identical})
            if e.text_quantization == "int8":
                info["int8"] = _int8_text(ctx, info)
        except DataError as exc:
            warnings.warn(f"{exc}; precomputing the prompt embeddings instead", RuntimeWarning)
            info["mode"] = "precomputed"
    if e.prompts or info["mode"] == "precomputed":
        path = save_prompt_embeddings(encoder, e.prompts or DEFAULT_PROMPTS, ctx.out_dir)
        info["prompt_embeddings"] = path.name
    return info


def _int8_text(ctx: _Context, info: dict[str, Any]) -> dict[str, Any]:
    """The int8 text tower beside the fp32 one, or why there is none (the export goes on with fp32 text)."""
    from kpop_helpers.compress.text_quant import TextQuantError, quantize_text_onnx

    try:
        return quantize_text_onnx(ctx.out_dir, tokenizer=info["tokenizer"], max_length=info["max_length"],
                                  name=str(info["name"]), dim=int(info["dim"]), threads=ctx.exporter.threads).to_dict()
    except TextQuantError as exc:
        warnings.warn(str(exc), RuntimeWarning)
        return {"error": str(exc)}


def _text_encoder_and_embeddings(exporter: ModelExporter, model: torch.nn.Module) -> tuple[Any, np.ndarray, str]:
    prompts = list(exporter.config.export.prompts[:4] or DEFAULT_PROMPTS)
    try:
        encoder = exporter.text_encoder
        if encoder is None:
            from kpop_helpers.text import get_text_encoder

            encoder = get_text_encoder(model.text_encoder_name)
        return encoder, encoder.encode(prompts).detach().cpu().numpy().astype(np.float32), "text encoder"
    except Exception as exc:  # offline CLIP etc.: errors are still measured, on fixed random unit vectors
        if exporter.config.export.text_encoder != "none":
            raise
        logger.warning("text encoder unavailable (%s); measuring errors with random unit embeddings", exc)
        emb = np.random.default_rng(0).standard_normal((len(prompts), model.cfg.text_dim)).astype(np.float32)
        return None, emb / np.linalg.norm(emb, axis=1, keepdims=True), "random unit vectors"


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    import kpop_helpers

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__, "kpop_helpers": kpop_helpers.__version__, "python": platform.python_version()}


def _run_stage(stage: str, ctx: _Context, params: int) -> dict[str, dict[str, Any]]:
    """Write the artifacts of one stage; returns their manifest entries by variant name."""
    exporter, out_dir, model, q = ctx.exporter, ctx.out_dir, ctx.model, ctx.cfg.quantization
    fp32 = out_dir / "model.onnx"
    if stage == "onnx":
        record = exporter.export_to_onnx(fp32)
        return {"fp32": _entry(fp32, "onnxruntime", "fp32", None, params, parity=record.parity,
                               error=ctx.error("fp32", onnx_runner(fp32, exporter.threads)))}
    if stage == "int8" and q.backend == "onnxruntime":
        return {"int8": _int8(ctx, "int8", fp32, out_dir / "model_int8.onnx", model.cfg, params, None)}
    if stage == "int8":
        return {"torch_int8": _torch_int8(ctx)}
    if stage == "fp16":
        result = convert_onnx_fp16(fp32, out_dir / "model_fp16.onnx")
        path = Path(result.path)
        return {"fp16": _entry(path, "onnxruntime", "fp16", None, params, fp16=result.to_dict(),
                               error=ctx.error("fp16", onnx_runner(path, exporter.threads)))}
    if stage == "pruning":
        return _pruned_variants(ctx, fp32)
    if stage == "torchscript":
        record = exporter.export_to_torchscript(out_dir / "model_scripted.pt")
        return {"torchscript": _entry(Path(record.path), "torchscript", "fp32", None, params, parity=record.parity,
                                      deprecated="torch.jit.trace is deprecated in this torch")}
    if stage == "torch_export":
        record = exporter.export_to_torch_export(out_dir / "model.pt2")
        return {"torch_export": _entry(Path(record.path), "torch_export", "fp32", None, params,
                                       parity=record.parity)}
    raise ValueError(f"unknown export stage {stage!r}")


def build_export_folder(exporter: ModelExporter, out_dir: Path, formats: list[str]) -> dict[str, Any]:
    """Write every artifact into `out_dir` and manifest.json last (a folder without it is incomplete)."""
    model, cfg = exporter.model, exporter.config
    if getattr(model, "stats", None) is None:
        raise DataError("the model has no normalisation statistics", path=exporter.model_path, field="stats",
                        expected="Mean/Std in the weights file, Mean.npy/Std.npy beside it, or --stats DIR")
    try:
        sampling_schedule(int(model.cfg.diffusion_steps), cfg.sampling.sampler, cfg.sampling.steps)
    except ValueError as exc:
        raise DataError(str(exc), field="sampling.steps", expected="a step count this model's schedule allows") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    encoder, text_emb, error_text = _text_encoder_and_embeddings(exporter, model)
    ctx = _Context(exporter, out_dir, text_emb)
    params = count_parameters(model)
    variants: dict[str, dict[str, Any]] = {}
    q, p = cfg.quantization, cfg.pruning
    onnx = "onnx" in formats
    # ORT variants are derived from model.onnx; torch int8 is a TorchScript file and needs no ONNX.
    wanted = {"onnx": onnx, "int8": q.enabled and (onnx or q.backend == "torch"), "fp16": onnx and q.fp16,
              "pruning": onnx and p.enabled, "torchscript": "torchscript" in formats,
              "torch_export": "torch_export" in formats, "text": True}
    stages = [stage for stage, yes in wanted.items() if yes]
    text_info: dict[str, Any] = {}
    stage_seconds: dict[str, float] = {"reference": round(time.perf_counter() - start, 2)}
    for stage in tqdm(stages, desc="export", disable=not exporter.progress):
        stage_start = time.perf_counter()
        if stage == "text":
            text_info = _text_section(ctx, encoder)
        else:
            variants.update(_run_stage(stage, ctx, params))
        stage_seconds[stage] = round(time.perf_counter() - stage_start, 2)
    model.stats.save(out_dir)
    s = cfg.sampling
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "export_seconds": round(time.perf_counter() - start, 2),
        "source": {"model_path": None if exporter.model_path is None else str(exporter.model_path)},
        "model_config": model.cfg.to_dict(), "params": params,
        "stats": {"mean_file": MEAN_FILE, "std_file": STD_FILE, "mean": np.asarray(model.stats.mean).tolist(),
                  "std": np.asarray(model.stats.std).tolist()},
        "text_encoder": text_info, "inputs": input_spec(model.cfg),
        "sampling": {"sampler": s.sampler, "steps": s.steps, "guidance": s.guidance, "eta": s.eta,
                     "schedule": model.cfg.noise_schedule, "diffusion_steps": int(model.cfg.diffusion_steps),
                     "max_frames": int(model.cfg.max_frames), "noise": "numpy default_rng(seed)"},
        "error_protocol": {"reference": "fp32 PyTorch eager", "denoiser_inputs": "fixed random, batches 1 and 3, "
                           "a short and the max length", "generation": {"prompts": int(text_emb.shape[0]),
                           "text": error_text, "frames": ctx.setup.frames, "sampler": s.sampler, "steps": s.steps,
                           "guidance": s.guidance, "seed": ctx.setup.seed}},
        "edge_config": cfg.to_dict(), "variants": variants, "versions": _versions(), "stage_seconds": stage_seconds,
    }
    atomic_write_text(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    logger.info("export folder %s written in %.1f s: %s", out_dir, time.perf_counter() - start, sorted(variants))
    return manifest
