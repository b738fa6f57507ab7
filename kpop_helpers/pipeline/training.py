"""Pipeline stage 02: fine-tuning in a work folder, and finding (or restoring) the model it trained."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from kpop_helpers.pipeline.assets import BaseModel
from kpop_helpers.pipeline.common import MissingStageOutput, load_result, publish, save_result, stage_progress
from kpop_helpers.pipeline.data_prep import ensure_data
from kpop_helpers.pipeline.results import DataResult, FinetuneResult
from kpop_helpers.pipeline.settings import DEMO_PROMPTS, WorkDirs, settings_for, training_steps
from kpop_helpers.utils import atomic_write_text

logger = logging.getLogger(__name__)


def finetune(data_dir: str | Path, out_dir: str | Path, *, smoke: bool, preset: str | None = None,
             steps: int | None = None, drive_dir: str | Path | None = None, resume: str = "auto",
             base: BaseModel | None = None, batch_size: int | None = None, wandb: str = "off",
             sample_prompts: tuple[str, ...] = (), sample_every: int = 0, on_sample: Any = None,
             run_name: str | None = None, publish_dir: str | Path | None = None,
             log_dir: str | Path | None = None, seed: int = 0,
             progress: bool = True) -> FinetuneResult:
    """Fine-tune (or train from scratch) on `<data_dir>/train.npz` with checkpoints in `out_dir` (mirrored to
    `drive_dir`). resume="auto" continues from the newest checkpoint (local or Drive) of the same run up to
    `steps`; "fresh" starts over (the old checkpoints are moved aside, not deleted).

    smoke: the tiny preset from scratch, 1/100 of the steps (at least 2), short windows, small batches.
    batch_size None: 64 on a GPU, 16 on the CPU (the trainer's default).
    sample_every/on_sample: render the sample prompts every N steps and call on_sample(step, gif_paths).
    publish_dir: copy the EMA weights, curves and result.json there (the Drive work folder) when done.
    log_dir: TensorBoard logs (default `<out_dir>/logs`).
    """
    from kpop_helpers.model import get_preset
    from kpop_helpers.train import TrainConfig, Trainer

    s = settings_for(smoke)
    data, out = Path(data_dir), Path(out_dir)
    if base is None or (smoke and base.init != "scratch"):
        # SMOKE (CI) never downloads the official model; a preset asked for explicitly is kept.
        base = BaseModel("scratch", "scratch", preset or s.preset, "minilm")
    stats_dir = base.stats_dir or (str(data / "stats") if base.init == "scratch" and (data / "stats").is_dir()
                                   else None)
    max_frames = base.max_frames or s.max_frames
    total = training_steps(steps, smoke)
    val = data / "val.npz"
    preset_name = base.preset or s.preset
    # A preset's own diffusion length (tiny 50, small 100) rather than TrainConfig's MDM default of 1000.
    diffusion_steps = get_preset(preset_name).diffusion_steps if base.init == "scratch" else 1000
    cfg = TrainConfig(
        data=str(data / "train.npz"), val_data=str(val) if val.is_file() else None, out=str(out),
        preset=preset_name, init=base.init, diffusion_steps=diffusion_steps, stats=stats_dir,
        text_encoder=base.text_encoder,
        steps=total, batch_size=batch_size or (s.batch_size if smoke else 0), max_frames=max_frames,
        min_frames=min(24, max_frames), window_stride=max(1, max_frames // 2), log_every=max(1, min(10, total // 4)),
        eval_every=max(1, min(s.eval_every, total)), save_every=max(1, min(s.save_every, total)), val_batches=1,
        sample_prompts=tuple(sample_prompts), sample_every=int(sample_every),
        drive_dir=None if drive_dir is None else str(drive_dir), wandb=wandb, seed=seed, resume=resume,
        run_name=run_name, log_dir=None if log_dir is None else str(log_dir))
    with stage_progress("fine-tune", ["set up", "train", "curves"], progress) as bar:
        trainer = Trainer(cfg, progress=progress, on_sample=on_sample)
        resumed_from = int(trainer.step)
        finished = bool(getattr(trainer, "already_finished", False))
        if finished:
            print(f"This run already finished at step {trainer.step} (target {total}): nothing to train. Raise "
                  "STEPS to train further, or set RESUME = 'fresh' to start over.")
        bar.next()
        run = trainer.train()
        bar.next()
        curve = _write_history(trainer, run.history, out)
        bar.next()
    checkpoints = trainer.ckpt.list_checkpoints()
    home = out
    weights, history = str(run.weights), str(out / "history.json")
    if publish_dir is not None:
        home = Path(publish_dir)
        files = [run.weights, Path(run.weights).with_suffix(".json"), out / "history.json", *([curve] if curve else [])]
        copies = publish([f for f in files if Path(f).is_file()], home)
        weights, history = str(copies[0]), str(home / "history.json")
        curve = str(home / Path(curve).name) if curve else None
    result = FinetuneResult(
        run_dir=str(home), weights=weights, checkpoint=run.checkpoint or (
            str(checkpoints[0]["path"]) if checkpoints else None),
        step=int(run.step), resumed_from=resumed_from, preset=cfg.preset if base.init == "scratch" else base.name,
        init=base.init, text_encoder=trainer.encoder.name,
        params=int(sum(p.numel() for p in trainer.bare_model.parameters())),
        train_loss=_last(run.history, "loss"), val_loss=_last(run.history, "val_loss"),
        steps_per_second=float(run.steps_per_second), seconds=bar.seconds, history=history,
        curve=curve, drive_dir=cfg.drive_dir, already_finished=finished,
        log_dir=str(trainer.log_dir))
    save_result(result, out)
    if publish_dir is not None:
        save_result(result, home)
    return result


def finetune_run(work: WorkDirs, *, smoke: bool, base: BaseModel | None = None, steps: int | None = None,
                 resume: str = "auto", batch_size: int | None = None, wandb: str = "off",
                 sample_every: int = 0, show_samples: bool = True, progress: bool = True) -> FinetuneResult:
    """Fine-tune in a work folder: checkpoints on the local disk mirrored to `<work>/checkpoints` (Drive in
    Colab), TensorBoard logs written there directly, the EMA weights, curves and result.json published there,
    a sample dance shown inline every `sample_every` steps (0: at the end only)."""
    data = load_result(DataResult, work.data)
    if data is None or not Path(data.train).is_file():
        raise MissingStageOutput(work.data / "train.npz", "01_setup", work.run_name)
    on_sample = _show_samples if show_samples else None
    drive = work.checkpoints if work.on_drive else None
    return finetune(work.data, work.train_dir, smoke=smoke, base=base, steps=steps, resume=resume,
                    batch_size=batch_size, wandb=wandb, drive_dir=drive, run_name=work.run_name,
                    sample_prompts=DEMO_PROMPTS[:1], sample_every=sample_every,
                    on_sample=on_sample, publish_dir=work.checkpoints if work.on_drive else None,
                    log_dir=work.checkpoints / "logs", progress=progress)


def _show_samples(step: int, gifs: list[Path]) -> None:
    """Show the sample dances inline (notebooks); their paths elsewhere."""
    from kpop_helpers.viz.inline import show_gifs

    print(f"sample dance at step {step}:")
    show_gifs(gifs)


def _last(history: list[dict], key: str) -> float | None:
    values = [row[key] for row in history if row.get(key) is not None]
    return float(values[-1]) if values else None


def _write_history(trainer, history: list[dict], out: Path) -> str | None:
    """history.json and training_curve.png (the whole run, resumed parts included)."""
    from kpop_helpers.viz import plot_training_curves

    atomic_write_text(out / "history.json", json.dumps(history, indent=1) + "\n")
    if not history:
        return None
    fig = plot_training_curves(history, path=out / "training_curve.png")
    fig.clear()
    return str(out / "training_curve.png")


def restore_weights(work: WorkDirs) -> FinetuneResult | None:
    """EMA weights from the newest valid checkpoint in `<work>/checkpoints` (e.g. 02 was cut off before it
    exported them); None when there is no checkpoint."""
    from kpop_helpers.checkpoints import CheckpointManager, export_weights

    if not work.checkpoints.is_dir() or not any(work.checkpoints.glob("checkpoint_*.pt")):
        return None
    manager = CheckpointManager(work.checkpoints, google_drive_sync=False, flush_on_exit_s=None)
    try:
        state = manager.load_latest_checkpoint(model=None)
    finally:
        manager.close()
    if not state or "ema" not in state or "model_config" not in state:
        return None
    stats = state.get("stats") or {}
    step = int(state["step"])
    weights = export_weights(state["ema"], work.weights, config=state["model_config"], mean=stats.get("mean"),
                             std=stats.get("std"), metadata={"text_encoder": state.get("text_encoder"), "step": step,
                                                              "kind": "ema", "restored_from": str(state["path"])})
    config = state.get("train_config") or {}
    print(f"restored the EMA weights of step {step} from {state['path']} -> {weights}")
    result = FinetuneResult(
        run_dir=str(work.checkpoints), weights=str(weights), checkpoint=str(state["path"]), step=step,
        resumed_from=step, preset=str(config.get("preset", "?")), init=str(config.get("init", "?")),
        text_encoder=str(state.get("text_encoder")), params=0, train_loss=state.get("loss"), val_loss=None,
        steps_per_second=0.0, seconds=0.0, history=str(work.checkpoints / "history.json"), curve=None)
    save_result(result, work.checkpoints)
    return result


def ensure_weights(work: WorkDirs, *, smoke: bool = False, progress: bool = True) -> FinetuneResult:
    """The model 02_finetune trained in this work folder, else the newest valid checkpoint's EMA weights there;
    neither: a smoke-size stand-in under `smoke` only, else MissingStageOutput naming 02_finetune."""
    found = load_result(FinetuneResult, work.checkpoints)
    if found is not None and Path(found.weights).is_file():
        return found
    if found is not None and work.weights.is_file():  # written on another machine: the copy in this folder
        found.weights = str(work.weights)
        return found
    restored = restore_weights(work)
    if restored is not None:
        return restored
    if not smoke:
        raise MissingStageOutput(work.weights, "02_finetune", work.run_name)
    logger.warning("no fine-tuned model in %s: training a smoke-size stand-in now (SMOKE only; run 02_finetune "
                   "for a real one)", work.checkpoints)
    print(f"SMOKE: no model in {work.checkpoints}; training a tiny stand-in (never outside SMOKE)")
    ensure_data(work, smoke=True, progress=progress)
    started = time.perf_counter()
    result = finetune(work.data, work.checkpoints, smoke=True, progress=progress)
    result.stand_in = True
    save_result(result, work.checkpoints)
    logger.info("stand-in model trained in %.0f s", time.perf_counter() - started)
    return result
