"""The full benchmark of the official-size MDM architecture on this CPU, from nothing to benchmarks/results/.

    .venv/bin/python benchmarks/run_full_benchmark.py [--work /tmp/kpop_full] [--train-steps 3000]

1. the synthetic sample data (python -m kpop_helpers.data.sample) unless data/sample/ exists;
2. training of PRESETS["humanml_trans_enc_512"] with the MiniLM encoder to --train-steps, resumed from the
   work folder's checkpoints when an earlier run was interrupted (or reused when it already got there), so
   the quality numbers come from a model that has learned the data, not from a few hundred steps;
3. three export folders from the same weights (each edge_config allows one quantisation backend and one
   pruning kind): ORT int8 + fp16 + FFN pruning + TorchScript + torch.export; torch int8 + unstructured
   pruning; width pruning. Structured pruning gets its recovery fine-tune on the training clips;
4. `python -m kpop_helpers.bench` over all of it, threads 1 and 2, every artifact with each of
   --artifact-samplers. The number of quality prompts is chosen from the measured guided step time so that
   the 1000-step reference procedure's samples fit --reference-minutes;
5. the target check (<out>/target): the reference and the DDPM candidates with --target-draws noise draws of
   the same prompts, so the 15 % quality target is judged on a mean over draws with its noise band.

Every choice (steps, step time, prompts) is written to <out>/full_run.json and into the protocol notes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from kpop_helpers.utils import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("run_full_benchmark")


def build_data(data_dir: Path) -> dict:
    """The sample set (train.npz / val.npz), built once."""
    if (data_dir / "train.npz").is_file() and (data_dir / "val.npz").is_file():
        return {"data": str(data_dir), "built": False}
    from kpop_helpers.data.sample import build_sample_dataset

    summary = build_sample_dataset(data_dir)
    return {"data": str(data_dir), "built": True, "clips": summary["num_clips"]}


def train(data_dir: Path, out: Path, steps: int, batch_size: int) -> dict:
    """Train the official-size architecture to `steps` (resuming an interrupted run); returns what it did."""
    from kpop_helpers.train import TrainConfig, Trainer

    weights = out / "model_ema.safetensors"
    meta = out / "model_ema.json"
    if weights.is_file() and meta.is_file():
        trained = json.loads(meta.read_text()).get("metadata", {}).get("step", 0)
        if trained >= steps:
            return {"weights": str(weights), "steps": trained, "reused": True, **_latest_metrics(out)}
    # EMA 0.99 (not MDM's 0.9999): after a few thousand steps a slower average would still be mostly the
    # random initialisation, and the exported (EMA) weights would be undertrained.
    cfg = TrainConfig(data=str(data_dir / "train.npz"), val_data=str(data_dir / "val.npz"), out=str(out),
                      preset="humanml_trans_enc_512", text_encoder="minilm", steps=steps, batch_size=batch_size,
                      lr=2e-4, warmup_steps=20, ema_decay=0.99, eval_every=500, save_every=500,
                      sample_prompts=(), wandb="off", resume="auto", seed=0)
    trainer = Trainer(cfg, progress=True)
    resumed_from = trainer.step
    logger.info("training to step %d (from step %d, batch %d)", steps, resumed_from, trainer.batch_size)
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    return {"weights": result.weights, "steps": steps, "resumed_from": resumed_from,
            "step_s": seconds / max(1, steps - resumed_from), "batch_size": trainer.batch_size,
            "train_loss": result.train_loss, "val_loss": result.val_loss, "seconds": seconds,
            "params": trainer.bare_model.num_parameters()}


def _latest_metrics(out: Path) -> dict:
    """Losses of the newest checkpoint in a training folder (its sidecar), so a reused model is still described."""
    manifest = out / "latest.json"
    if not manifest.is_file():
        return {}
    latest = json.loads(manifest.read_text()).get("latest") or {}
    sidecar = out / Path(latest.get("file", "")).with_suffix(".json").name
    metrics = json.loads(sidecar.read_text()).get("metrics", {}) if sidecar.is_file() else {}
    return {k: metrics[k] for k in ("train_loss", "val_loss") if k in metrics}


EXPORTS = {
    # one quantisation backend and one pruning kind per edge_config
    "export_ort": {"optimization": {"quantization": {"backend": "onnxruntime", "fp16": True},
                                    "pruning": {"kind": "ffn", "sparsity": 0.3, "recovery_steps": 150}},
                   "export": {"formats": ["onnx", "torchscript", "torch_export"], "text_encoder": "none"}},
    "export_torch": {"optimization": {"quantization": {"backend": "torch", "fp16": False},
                                      "pruning": {"kind": "unstructured", "sparsity": 0.3}},
                     "export": {"formats": ["onnx"], "text_encoder": "none"}},
    "export_width": {"optimization": {"quantization": {"enabled": False, "fp16": False},
                                      "pruning": {"kind": "width", "sparsity": 0.25, "recovery_steps": 300}},
                     "export": {"formats": ["onnx"], "text_encoder": "none"}},
}


def export(weights: Path, work: Path, data_dir: Path, batch_size: int) -> dict:
    """The three export folders (reused when their manifest exists); pruned models recover on the training clips."""
    from kpop_helpers.config import EdgeConfig
    from kpop_helpers.export import ModelExporter
    from kpop_helpers.train import TrainConfig

    recovery = TrainConfig(data=str(data_dir / "train.npz"), val_data=str(data_dir / "val.npz"),
                           batch_size=batch_size, lr=1e-4, warmup_steps=10, seed=0)
    done = {}
    for name, raw in EXPORTS.items():
        folder = work / name
        if not (folder / "manifest.json").is_file():
            edge_path = work / f"{name}.edge_config.json"
            EdgeConfig.from_dict({**raw, "sampling": {"sampler": "ddim", "steps": 10}}).save(edge_path)
            start = time.perf_counter()
            ModelExporter(weights, edge_path, train_config=recovery, progress=True).export_all(folder)
            logger.info("%s exported in %.0f s", name, time.perf_counter() - start)
        manifest = json.loads((folder / "manifest.json").read_text())
        done[name] = {"folder": str(folder), "variants": sorted(manifest["variants"]),
                      "seconds": manifest.get("export_seconds")}
    return done


def guided_step_seconds(weights: Path, prompts: int, threads: int = 2, frames: int = 196) -> float:
    """Median time of one guided forward for `prompts` prompts (batch 2 x prompts), to size the quality set."""
    import torch

    from kpop_helpers.bench.variants import load_torch_model

    torch.set_num_threads(threads)
    model = load_torch_model(weights)
    batch = 2 * prompts
    x = torch.randn(batch, 263, 1, frames)
    t = torch.full((batch,), 500)
    emb = torch.randn(batch, model.cfg.text_dim)
    uncond = torch.arange(batch) >= prompts
    times = []
    with torch.no_grad():
        for _ in range(5):
            start = time.perf_counter()
            model(x, t, emb, uncond)
            times.append(time.perf_counter() - start)
    return float(np.median(times[2:]))


def target_check(config, out: Path, draws: int, variants: tuple[str, ...], resume: bool) -> dict:
    """The reference and the DDPM candidates again with `draws` noise draws, into out (benchmarks/results/target).

    The same work folder as the main run: draw 0 is the main run's sample set (same noise, same digests), so
    only draws 1.. are generated. Guided batch, 2 threads: the setting of the target.
    """
    import dataclasses

    from kpop_helpers.bench import run_benchmark

    if not resume:
        (out / "results.json").unlink(missing_ok=True)  # a fresh check; the work folder's draws stay reusable
    work = config.work_dir or str(Path(config.out) / ".work")  # the main run's, whatever the output folder
    target = dataclasses.replace(config, out=str(out), work_dir=work, draws=draws, threads=(2,), batches=(2,),
                                 only=variants,
                                 eager_samplers=("ddpm20", "ddpm10"), artifact_samplers=("ddpm20", "ddpm10"),
                                 resume=True, compare=None)
    results = run_benchmark(target)
    return {"rows": len(results["rows"]), "draws": draws, "variants": sorted({r["variant"] for r in results["rows"]})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/kpop_full", help="training run, exports and bench work files")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--data", default=str(REPO / "data" / "sample"))
    p.add_argument("--train-steps", type=int, default=3000, help="training steps of the benchmarked model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--reference-minutes", type=float, default=22.0,
                   help="time allowed for the reference procedure's quality samples (sizes the prompt count)")
    p.add_argument("--min-prompts", type=int, default=4)
    p.add_argument("--max-prompts", type=int, default=16)
    p.add_argument("--eager-samplers", nargs="+", default=["ddim50", "ddim20", "ddim10", "ddpm20", "ddpm10"],
                   help="samplers of the fp32 eager model besides the 1000-step reference")
    p.add_argument("--artifact-samplers", nargs="+", default=["ddim10", "ddpm10", "ddpm20"],
                   help="sampler(s) every exported artifact runs")
    p.add_argument("--timed-steps", type=int, default=12, help="timed steps per latency measurement")
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--target-draws", type=int, default=4,
                   help="noise draws of the target check (0: skip it); each draw of the reference costs about "
                        "--reference-minutes")
    p.add_argument("--target-variants", nargs="+",
                   default=["fp32_ddpm20", "fp32_ddpm10", "ort_int8_ddpm20", "ort_int8_ddpm10", "ort_fp16_ddpm20"],
                   help="variants (name parts) of the target check besides the reference")
    p.add_argument("--resume", action="store_true", help="resume an interrupted benchmark stage")
    p.add_argument("--compare", help="an earlier results.json: also write compare.md (new/old ratios)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    record: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_start": list(os.getloadavg())}
    stage = time.perf_counter()

    def note(name: str, value: dict) -> None:
        nonlocal stage
        value["stage_seconds"] = round(time.perf_counter() - stage, 1)
        stage = time.perf_counter()
        record[name] = value
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "full_run.json", json.dumps(record, indent=1, default=str) + "\n")
        logger.info("%s: %s", name, value)

    note("data", build_data(Path(args.data)))
    trained = train(Path(args.data), work / "train", args.train_steps, args.batch_size)
    note("train", trained)
    weights = Path(trained["weights"])
    note("export", export(weights, work, Path(args.data), args.batch_size))

    # The reference's quality samples (all prompts in one guided batch, 1000 steps) dominate the run.
    steps = 1000
    step_s = guided_step_seconds(weights, args.max_prompts)
    per_prompt = step_s / args.max_prompts
    prompts = int(np.clip(math.floor(args.reference_minutes * 60 / (steps * per_prompt)), args.min_prompts,
                          args.max_prompts))
    note("sizing", {f"guided_step_s_batch{2 * args.max_prompts}_2_threads": step_s, "prompts": prompts,
                    "reference_quality_minutes_estimate": round(prompts * steps * per_prompt / 60, 1)})

    from kpop_helpers.bench import BenchConfig, run_benchmark
    from kpop_helpers.bench.protocol import DEFAULT_PROMPTS

    config = BenchConfig(out=str(out), model=str(weights), export_dirs=tuple(str(work / n) for n in EXPORTS),
                         work_dir=str(work / "bench"), reference_data=str(Path(args.data) / "val.npz"),
                         prompts=DEFAULT_PROMPTS[:prompts], threads=(1, 2), max_gen_seconds=30.0, resume=args.resume,
                         eager_samplers=tuple(args.eager_samplers), artifact_samplers=tuple(args.artifact_samplers),
                         timed_steps=args.timed_steps, warmup_steps=args.warmup_steps, compare=args.compare,
                         notes=json.dumps({k: record[k] for k in ("train", "sizing")}, default=str))
    results = run_benchmark(config)
    note("benchmark", {"rows": len(results["rows"]), "errors": sum(1 for r in results["rows"] if r.get("error"))})
    if args.target_draws > 0:
        note("target", target_check(config, out / "target", args.target_draws, tuple(args.target_variants),
                                    args.resume))
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    record["loadavg_end"] = list(os.getloadavg())
    atomic_write_text(out / "full_run.json", json.dumps(record, indent=1, default=str) + "\n")
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
