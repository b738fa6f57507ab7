"""Pipeline stages after fine-tuning: compression errors, the edge export with parity, and the benchmark."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.config import EDGE_CONFIG_NAME, EdgeConfig
from kpop_helpers.pipeline.common import (
    MissingStageOutput, json_ready, load_result, markdown_table, publish, save_result, stage_progress,
)
from kpop_helpers.pipeline.results import BenchmarkResult, CompressionResult, ExportResult
from kpop_helpers.pipeline.settings import DEMO_PROMPTS, PipelineSettings, WorkDirs, settings_for
from kpop_helpers.utils import atomic_write_text

logger = logging.getLogger(__name__)
ERROR_COLUMNS = (("variant", "variant"), ("params", "params"), ("size_mb", "size (MB)"),
                 ("denoiser_max_abs", "denoiser max abs"), ("denoiser_rel_rms", "denoiser rel RMS"),
                 ("joints_mpjpe_mm", "joints MPJPE (mm)"), ("joints_root_relative_mm", "pose-only MPJPE (mm)"),
                 ("note", "note"))
FEW_STEP_COLUMNS = (("steps", "DDIM steps"), ("reference_steps", "vs DDIM steps"),
                    ("joints_mpjpe_mm", "joints MPJPE (mm)"), ("joints_max_mm", "max (mm)"),
                    ("sample_rel_rms", "sample rel RMS"), ("time_s", "time (s)"), ("skipped", "skipped"))
EXPORT_COLUMNS = (("variant", "variant"), ("file", "file"), ("runtime", "runtime"), ("precision", "precision"),
                  ("pruning", "pruning"), ("size_mb", "size (MB)"), ("parity_max_abs", "parity max abs"),
                  ("parity_passed", "parity passed"), ("denoiser_rel_rms", "denoiser rel RMS"),
                  ("joints_mpjpe_mm", "joints MPJPE (mm)"), ("joints_root_relative_mm", "pose-only MPJPE (mm)"))


def find_edge_config(name: str = EDGE_CONFIG_NAME) -> Path | None:
    """The repository's edge_config.json seen from the current folder or notebooks/; None: use the defaults."""
    for folder in (Path.cwd(), Path.cwd().parent):
        if (folder / name).is_file():
            return folder / name
    return None


def edge_config_path(work: WorkDirs) -> Path | None:
    """The work folder's edge_config.json (written by notebook 03), else the repository's, else None (defaults)."""
    own = work.root / EDGE_CONFIG_NAME
    return own if own.is_file() else find_edge_config()


def write_edge_config(path: str | Path, *, base: str | Path | None = None, int8: bool | None = None,
                      fp16: bool | None = None, pruning: bool | None = None, pruning_kind: str | None = None,
                      sparsity: float | None = None, recovery_steps: int | None = None,
                      sampler: str | None = None, sampling_steps: int | None = None,
                      guidance: float | None = None) -> Path:
    """Write `base` (default: the repository's edge_config.json, else the defaults) with the given changes."""
    from kpop_helpers.export import load_edge_config

    cfg = load_edge_config(base if base is not None else find_edge_config())
    q, p, s = cfg.quantization, cfg.pruning, cfg.sampling
    for target, key, value in ((q, "enabled", int8), (q, "fp16", fp16), (p, "enabled", pruning),
                               (p, "kind", pruning_kind), (p, "sparsity", sparsity),
                               (p, "recovery_steps", recovery_steps),
                               (s, "sampler", sampler), (s, "steps", sampling_steps), (s, "guidance", guidance)):
        if value is not None:
            setattr(target, key, type(getattr(target, key))(value))
    cfg.validate(str(path))
    cfg.save(path)
    return Path(path)


def _stage_config(config_path: str | Path | None, smoke: bool, folder: Path) -> tuple[EdgeConfig, Path]:
    """The edge config as this stage uses it (smoke caps the recovery steps), saved into `folder`."""
    from kpop_helpers.export import load_edge_config

    cfg = load_edge_config(config_path if config_path is not None else find_edge_config())
    if smoke:
        cfg.pruning.recovery_steps = min(cfg.pruning.recovery_steps, settings_for(True).recovery_steps)
    folder.mkdir(parents=True, exist_ok=True)
    used = folder / EDGE_CONFIG_NAME
    cfg.save(used)
    return cfg, used


def recovery_train_config(train_data: str | Path, out_dir: str | Path, s: PipelineSettings):
    """TrainConfig for the short fine-tune after structured pruning (data, windows and batch of the stage size)."""
    from kpop_helpers.train import TrainConfig

    data = Path(train_data)
    val = data.with_name("val.npz")
    return TrainConfig(data=str(data), val_data=str(val) if val.is_file() else None, out=str(out_dir),
                       batch_size=s.batch_size, max_frames=s.max_frames, min_frames=min(24, s.max_frames),
                       window_stride=max(1, s.max_frames // 2), val_batches=1, wandb="off", log_every=10)


def _fp16_runner(model):
    import torch

    half = copy.deepcopy(model).half().eval()

    def run(x, t, e, u):
        with torch.no_grad():
            out = half(torch.from_numpy(x).half(), torch.from_numpy(t), torch.from_numpy(e).half(), torch.from_numpy(u))
        return out.float().numpy()

    return run


def compress(weights_path: str | Path, out_dir: str | Path, *, config_path: str | Path | None = None, smoke: bool,
             train_data: str | Path | None = None, scratch_dir: str | Path | None = None,
             progress: bool = True) -> CompressionResult:
    """Compress the model in memory as edge_config.json asks (torch int8, fp16, pruning with recovery) and
    measure each variant and few-step DDIM against the fp32 model on the same prompts and noise.
    scratch_dir: where the recovery fine-tune keeps its checkpoints (default: out_dir)."""
    from kpop_helpers.compress import (
        GenerationSetup, count_parameters, few_step_errors, generate_joints, measure_variant, prune_model,
        quantize_torch_int8, recovery_finetune, torch_state_size_bytes,
    )
    from kpop_helpers.export import load_model_for_export
    from kpop_helpers.runners import torch_runner
    from kpop_helpers.text import get_text_encoder

    s, out = settings_for(smoke), Path(out_dir)
    cfg, used = _stage_config(config_path, smoke, out)
    q, p = cfg.quantization, cfg.pruning
    steps = ["load", "fp32 reference"] + (["int8"] if q.enabled else []) + (["fp16"] if q.fp16 else []) \
        + (["pruning", "recovery"] if p.enabled else []) + ["few-step sampling", "tables"]
    rows: list[dict[str, Any]] = []
    with stage_progress("compress", steps, progress) as bar:
        model = load_model_for_export(weights_path).float().eval()
        encoder = get_text_encoder(model.text_encoder_name)
        prompts = list(cfg.export.prompts[:4] or DEMO_PROMPTS[:2])
        text_emb = encoder.encode(prompts).detach().float().cpu().numpy()
        mean, std = np.asarray(model.stats.mean, np.float32), np.asarray(model.stats.std, np.float32)
        setup = GenerationSetup(text_emb=text_emb, mean=mean, std=std, diffusion_steps=int(model.cfg.diffusion_steps),
                                frames=min(s.error_frames, int(model.cfg.max_frames)), sampler=cfg.sampling.sampler,
                                steps=cfg.sampling.steps, guidance=cfg.sampling.guidance,
                                schedule=model.cfg.noise_schedule)
        bar.next()
        reference = torch_runner(model)
        reference_joints = generate_joints(reference, setup)

        def row(name: str, module: Any, runner: Any, note: str = "", size: int | None = None) -> dict[str, Any]:
            error = measure_variant(name, reference, runner, model.cfg, setup=setup, reference_joints=reference_joints)
            return {**error.to_dict(), "params": count_parameters(module),
                    "size_mb": (size if size is not None else torch_state_size_bytes(module)) / 1e6, "note": note}

        rows.append(row("fp32", model, reference, "reference (PyTorch eager)"))
        bar.next()
        if q.enabled:
            quantized, coverage = quantize_torch_int8(model)
            rows.append(row("int8 (torch dynamic)", quantized, torch_runner(quantized),
                            f"{coverage.fraction:.0%} of linear weights int8 (the export has the ORT int8 model)",
                            torch_state_size_bytes(quantized)))
            bar.next()
        if q.fp16:
            rows.append(row("fp16 weights", model, _fp16_runner(model), "half-precision weights and activations",
                            torch_state_size_bytes(model) // 2))
            bar.next()
        if p.enabled:
            pruned, report = prune_model(model, p.kind, p.sparsity)
            rows.append(row(f"pruned_{p.kind}", pruned, torch_runner(pruned.eval()), report.note or "before recovery"))
            bar.next()
            if p.kind != "unstructured" and p.recovery_steps > 0 and train_data is not None:
                tuned, _ = recovery_finetune(pruned, recovery_train_config(train_data, Path(scratch_dir or out) / "recovery", s),
                                             steps=p.recovery_steps, stats=model.stats, progress=progress)
                tuned = tuned.cpu().eval()
                rows.append(row(f"pruned_{p.kind} + {p.recovery_steps} recovery steps", tuned, torch_runner(tuned)))
            bar.next()
        few = few_step_errors(reference, text_emb, mean, std, diffusion_steps=int(model.cfg.diffusion_steps),
                              frames=setup.frames, guidance=cfg.sampling.guidance,
                              steps=[n for n in s.few_steps if n < int(model.cfg.diffusion_steps)])
        bar.next()
        few_rows = [f.to_dict() for f in few]
        setup_info = {"prompts": prompts, "frames": setup.frames, "sampler": setup.sampler, "steps": setup.steps,
                      "guidance": setup.guidance, "seed": setup.seed, "weights": str(weights_path)}
        text = (f"Errors against the fp32 model: {len(prompts)} prompts, {setup.frames} frames, "
                f"{setup.sampler}{setup.steps}, guidance {setup.guidance:g}, the same noise for every variant.\n\n"
                + markdown_table(rows, ERROR_COLUMNS) + "\nFew-step DDIM against the full schedule (same noise):\n\n"
                + markdown_table(few_rows, FEW_STEP_COLUMNS))
        atomic_write_text(out / "compression.md", text)
        atomic_write_text(out / "compression.json", json.dumps(json_ready(
            {"setup": setup_info, "variants": rows, "few_steps": few_rows}), indent=1) + "\n")
        bar.next()
    result = CompressionResult(out_dir=str(out), config_path=str(used), variants=json_ready(rows),
                               few_steps=json_ready(few_rows), setup=setup_info, markdown=str(out / "compression.md"),
                               seconds=bar.seconds)
    save_result(result, out)
    return result


def export_rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One table row per exported variant: file, size, parity (where measured) and errors vs fp32 PyTorch."""
    rows = []
    for name, entry in manifest.get("variants", {}).items():
        parity, error = entry.get("parity") or {}, entry.get("error") or {}
        rows.append({"variant": name, "file": entry.get("file"), "runtime": entry.get("runtime"),
                     "precision": entry.get("precision"), "pruning": entry.get("pruning"),
                     "size_mb": (entry.get("size_bytes") or 0) / 1e6, "params": entry.get("params"),
                     "parity_max_abs": parity.get("max_abs"), "parity_atol": parity.get("atol"),
                     "parity_passed": parity.get("passed"), "denoiser_max_abs": error.get("denoiser_max_abs"),
                     "denoiser_rel_rms": error.get("denoiser_rel_rms"), "joints_mpjpe_mm": error.get("joints_mpjpe_mm"),
                     "joints_root_relative_mm": error.get("joints_root_relative_mm")})
    return rows


def compress_and_export(weights_path: str | Path, export_dir: str | Path, *, config_path: str | Path | None = None,
                        smoke: bool, train_data: str | Path | None = None, formats: list[str] | None = None,
                        scratch_dir: str | Path | None = None, progress: bool = True) -> ExportResult:
    """Write the edge folder (ONNX fp32/int8/fp16/pruned, TorchScript, text encoder, Mean/Std, manifest.json with
    parity numbers and errors) as edge_config.json asks; `train_data` enables recovery after pruning, whose
    checkpoints go to `scratch_dir` (default: beside the export)."""
    from kpop_helpers.export import ModelExporter

    s, out = settings_for(smoke), Path(export_dir)
    cfg, used = _stage_config(config_path, smoke, out)
    with stage_progress("compress + export", ["load", "export", "tables"], progress) as bar:
        recovery = None
        if train_data is not None and cfg.pruning.enabled and cfg.pruning.recovery_steps > 0:
            recovery = recovery_train_config(train_data, Path(scratch_dir or out.parent) / f"{out.name}_recovery", s)
        exporter = ModelExporter(weights_path, used, train_config=recovery, progress=progress)
        exporter.load_model()
        bar.next()
        manifest = exporter.export_all(out, formats)
        bar.next()
        rows = export_rows(manifest)
        text = manifest.get("text_encoder", {})
        atomic_write_text(out / "parity.md", markdown_table(rows, EXPORT_COLUMNS))
        bar.next()
    result = ExportResult(export_dir=str(out), manifest=str(out / "manifest.json"), config_path=str(used),
                          variants=json_ready(rows), text_encoder=json_ready({k: v for k, v in text.items()
                                                                             if k != "prompt_embeddings"}),
                          seconds=bar.seconds)
    save_result(result, out)
    return result


def run_benchmark(export_dir: str | Path, model_path: str | Path, out_dir: str | Path, *, smoke: bool,
                  reference_data: str | Path | None = None, draws: int = 1, scratch_dir: str | Path | None = None,
                  progress: bool = True) -> BenchmarkResult:
    """Run the one-protocol benchmark (kpop_helpers.bench) on the fp32 model and every exported artifact;
    smoke: 3 prompts, short dances, one thread, few timed steps.

    reference_data: held-out clips for the quality metrics (default: the sample set's val split, built in out_dir).
    draws: noise draws of the quality set; scores become the mean over draws with their spread (each draw costs
    one more pass of the full-schedule reference, the longest part of the run).
    scratch_dir: where the benchmark runs with its caches and reference noise (large, rebuildable); the tables
    and plots are then copied to out_dir (default: run in out_dir).
    """
    from kpop_helpers.bench import DEFAULT_PROMPTS, BenchConfig
    from kpop_helpers.bench import run_benchmark as bench_run
    from kpop_helpers.edge.manifest import read_manifest

    s, final = settings_for(smoke), Path(out_dir)
    out = Path(scratch_dir) if scratch_dir is not None else final
    options = dict(s.bench)
    count = int(options.pop("prompts_count"))
    max_frames = int(read_manifest(export_dir)["model_config"].get("max_frames", 196))
    options["frames"] = min(int(options["frames"]), max_frames)
    if reference_data is None:
        # The sample set's held-out clips, built inside out_dir (never the repository's data/ folder).
        reference_data = out / "reference_data" / "val.npz"
        if not reference_data.is_file():
            from kpop_helpers.data.sample import build_sample_dataset

            build_sample_dataset(reference_data.parent, num_clips=s.num_clips, progress=False)
    config = BenchConfig(out=str(out), export_dirs=(str(export_dir),), model=str(model_path),
                         reference_data=str(reference_data), prompts=tuple(DEFAULT_PROMPTS[:count]), smoke=smoke,
                         draws=draws, progress=progress, **options)
    with stage_progress("benchmark", ["measure", "report"], progress) as bar:
        results = bench_run(config)
        bar.next()
        plots = [name for name in ("pareto.png", "latency.png", "sizes.png") if (out / name).is_file()]
        tables = [name for name in ("results.json", "results.md", "results.csv") if (out / name).is_file()]
        publish([out / name for name in tables + plots], final)
        bar.next()
    rows = results.get("rows", [])
    result = BenchmarkResult(out_dir=str(final), results_json=str(final / "results.json"),
                             results_md=str(final / "results.md"), plots=[str(final / p) for p in plots], rows=len(rows),
                             errors=sum(1 for r in rows if r.get("error")), seconds=bar.seconds)
    save_result(result, out)
    return result


def ensure_export(work: WorkDirs, *, smoke: bool = False, config_path: str | Path | None = None,
                  progress: bool = True) -> ExportResult:
    """The edge folder 04_export wrote in this work folder; missing: a fresh one under `smoke` only, else
    MissingStageOutput naming manifest.json and 04_export."""
    from kpop_helpers.pipeline.data_prep import ensure_data
    from kpop_helpers.pipeline.training import ensure_weights

    found = load_result(ExportResult, work.export)
    if found is not None and Path(found.manifest).is_file():
        return found
    if not smoke:
        raise MissingStageOutput(work.export / "manifest.json", "04_export", work.run_name)
    logger.warning("no export in %s: exporting the smoke-size model now (SMOKE only)", work.export)
    weights = ensure_weights(work, smoke=smoke, progress=progress)
    data = ensure_data(work, smoke=smoke, progress=progress)
    return compress_and_export(weights.weights, work.export, config_path=config_path, smoke=smoke,
                               train_data=data.train, scratch_dir=work.local, progress=progress)
