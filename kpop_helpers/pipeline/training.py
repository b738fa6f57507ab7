"""Pipeline stages up to a fine-tuned model: environment and assets, sample data and features, fine-tuning."""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kpop_helpers.data.clip import DataError
from kpop_helpers.pipeline.common import MissingStageOutput, load_result, publish, save_result, stage_progress
from kpop_helpers.pipeline.results import AssetsResult, DataResult, FinetuneResult
from kpop_helpers.pipeline.settings import DEMO_PROMPTS, FULL, WorkDirs, settings_for, training_steps
from kpop_helpers.utils import atomic_write_text

logger = logging.getLogger(__name__)
OFFICIAL_MODEL = "humanml_trans_enc_512"
ASSETS_FILE = "assets.json"


def _versions() -> dict[str, str]:
    import numpy
    import torch

    import kpop_helpers

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "kpop_helpers": kpop_helpers.__version__}


def pretrained_cache_dir() -> Path | None:
    """MyDrive/kpop_pretrained when Drive is mounted (downloaded once, kept across Colab sessions), else None
    (kpop_helpers.pretrained's own cache)."""
    from kpop_helpers.colab import drive_mounted, my_drive

    return my_drive() / "kpop_pretrained" if drive_mounted() else None


def prepare_assets(work_dir: str | Path, *, official: bool | str | None = None, cache_dir: str | Path | None = None,
                   on_failure: str = "stop", progress: bool = True) -> AssetsResult:
    """Check the runtime (GPU, versions), the offline MiniLM text encoder and, when `official` (default: in
    Colab), download the official MDM checkpoint and HumanML3D statistics; writes `<work>/assets.json` with the
    base model 02_finetune starts from.

    official: True/"yes", False/"no", or None/"auto" (in Colab only).
    on_failure: "stop" raises the download error (it says how to download by hand); "scratch" prints it and
    records that fine-tuning starts from scratch instead.
    cache_dir: where downloads go (default: `pretrained_cache_dir()`)."""
    from kpop_helpers.colab import gpu_info, in_colab
    from kpop_helpers.text import get_text_encoder

    work = Path(work_dir)
    colab = in_colab()
    choices = {None: colab, "auto": colab, "yes": True, "no": False, True: True, False: False}
    if official not in choices:
        raise DataError(f"got {official!r}", field="official", expected="'auto', 'yes', 'no' or a bool")
    if on_failure not in ("stop", "scratch"):
        raise DataError(f"got {on_failure!r}", field="on_failure", expected="'stop' or 'scratch'")
    official = choices[official]
    steps = ["environment", "text encoder"] + (["official MDM", "HumanML3D stats"] if official else [])
    notes: list[str] = []
    checkpoint = stats = None
    base = "official" if official else "scratch"
    with stage_progress("assets", steps, progress) as bar:
        gpu = gpu_info()
        if not gpu.get("available"):
            notes.append("no CUDA GPU: fine-tuning runs on the CPU (fine for the tiny/small presets only)")
        bar.next()
        encoder = get_text_encoder("minilm")
        emb = encoder.encode(["a cute aegyo dance with small bounces"])
        if tuple(emb.shape) != (1, encoder.dim):
            raise DataError(f"encoded shape {tuple(emb.shape)}", field="text_encoder",
                            expected=f"(1, {encoder.dim}) from the offline MiniLM encoder")
        bar.next()
        if official:
            from kpop_helpers.pretrained import DownloadError, fetch_humanml_stats, fetch_mdm_checkpoint

            cache_dir = cache_dir if cache_dir is not None else pretrained_cache_dir()
            try:
                checkpoint = str(fetch_mdm_checkpoint(OFFICIAL_MODEL, cache_dir, progress=progress))
                bar.next()
                stats = str(fetch_humanml_stats(cache_dir, progress=progress))
                bar.next()
            except DownloadError as exc:
                if on_failure == "stop":
                    raise
                checkpoint = stats = None
                base = "scratch"
                notes.append("the official MDM could not be downloaded, so 02_finetune trains a preset from "
                             f"scratch (recorded in {work / ASSETS_FILE}). To use it later, follow these steps "
                             f"and run this notebook again: {exc}")
    result = AssetsResult(work_dir=str(work), in_colab=colab, gpu=gpu, text_encoder=encoder.name,
                          text_dim=int(encoder.dim), official_checkpoint=checkpoint, official_stats=stats,
                          versions=_versions(), notes=notes, seconds=bar.seconds, base_model=base)
    work.mkdir(parents=True, exist_ok=True)
    save_result(result, work)
    atomic_write_text(work / ASSETS_FILE, json.dumps({"base_model": base, "official_checkpoint": checkpoint,
                                                      "official_stats": stats}, indent=1) + "\n")
    return result


def recorded_base_model(work_dir: str | Path) -> str | None:
    """The base model 01_setup chose for this run ("official" or "scratch"), None when 01 has not run."""
    path = Path(work_dir) / ASSETS_FILE
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc})", path=path, expected="assets.json written by 01_setup") from exc
    choice = recorded.get("base_model") or ("official" if recorded.get("official_checkpoint") else None)
    if choice not in (None, "official", "scratch"):
        raise DataError(f"base_model is {choice!r}", path=path, field="base_model", expected="'official' or 'scratch'")
    return choice


def prepare_data(out_dir: str | Path, *, smoke: bool, num_clips: int | None = None, seed: int = 0,
                 progress: bool = True) -> DataResult:
    """Build the SYNTHETIC sample set, convert its training clips to HumanML3D features and store their
    Mean/Std (`<out>/stats`) for training from scratch. smoke: at most 18 clips."""
    from kpop_helpers.data.io import load_clips
    from kpop_helpers.data.sample import build_sample_dataset
    from kpop_helpers.motion.stats import compute_stats
    from kpop_helpers.train.dataset import clips_to_features

    out = Path(out_dir)
    count = int(num_clips or settings_for(smoke).num_clips)
    if smoke:
        count = min(count, settings_for(True).num_clips)
    with stage_progress("prepare data", ["sample clips", "features", "statistics"], progress) as bar:
        summary = build_sample_dataset(out, num_clips=count, seed=seed, progress=False)
        bar.next()
        clips, _ = load_clips(out / "train.npz", progress=False)
        features = clips_to_features(clips, progress=False)
        bar.next()
        # The floor keeps blocks that never vary in a small set (e.g. always-planted feet) from dividing by 0.
        stats_dir = compute_stats(features, std_floor=1e-3).save(out / "stats")
        bar.next()
    val = out / "val.npz"
    result = DataResult(data_dir=str(out), train=str(out / "train.npz"), val=str(val) if val.is_file() else None,
                        metadata=str(out / "metadata.json"), stats_dir=str(stats_dir),
                        num_clips=int(summary["num_clips"]), num_train=int(summary["num_train"]),
                        num_val=int(summary["num_val"]), feature_frames=int(sum(len(f) for f in features)),
                        seconds=bar.seconds)
    save_result(result, out)
    return result


def prepare_own_data(source: str | Path, out_dir: str | Path, *, val_every: int = 10,
                     progress: bool = True) -> tuple[DataResult, str]:
    """Your own clips (a .json/.npz/.bvh file or folder, e.g. MyDrive/kpop_work/data) read with
    load_clips(on_error="skip"): every `val_every`-th clip held out, features and Mean/Std as for the sample set.
    Returns (result, the load report as text)."""
    from kpop_helpers.data.io import load_clips, save_npz
    from kpop_helpers.motion.stats import compute_stats
    from kpop_helpers.train.dataset import clips_to_features

    source, out = Path(source), Path(out_dir)
    if not source.exists():
        raise DataError("not found", path=source, expected="a folder or file of .json/.npz/.bvh clips")
    with stage_progress("your data", ["load", "features", "statistics"], progress) as bar:
        clips, report = load_clips(source, on_error="skip", fps=20, progress=progress)
        if len(clips) < 2:
            raise DataError(f"{len(clips)} usable clips\n{report.summary()}", path=source,
                            expected="at least 2 clips (one for training, one held out)")
        val = [c for i, c in enumerate(clips) if i % val_every == val_every - 1] or clips[-1:]
        train = [c for c in clips if not any(c is v for v in val)] or clips[:1]
        save_npz(out / "train.npz", train)
        save_npz(out / "val.npz", val)
        bar.next()
        features = clips_to_features(train, progress=False)
        bar.next()
        stats_dir = compute_stats(features, std_floor=1e-3).save(out / "stats")
        bar.next()
    atomic_write_text(out / "metadata.json", json.dumps({"source": str(source), "files": report.files,
                                                         "num_train": len(train), "num_val": len(val),
                                                         "skipped": report.summary().splitlines()[1:]},
                                                        indent=1) + "\n")
    result = DataResult(data_dir=str(out), train=str(out / "train.npz"), val=str(out / "val.npz"),
                        metadata=str(out / "metadata.json"), stats_dir=str(stats_dir), num_clips=len(clips),
                        num_train=len(train), num_val=len(val), feature_frames=int(sum(len(f) for f in features)),
                        seconds=bar.seconds, synthetic=False)
    save_result(result, out)
    return result, report.summary()


@dataclass(frozen=True)
class BaseModel:
    """What fine-tuning starts from: a preset from scratch, or the official MDM with its statistics."""

    name: str  # "scratch" | "official"
    init: str  # TrainConfig.init: "scratch" or a weights path
    preset: str | None
    text_encoder: str
    stats_dir: str | None = None
    max_frames: int | None = None
    reason: str = ""  # why this base model (printed by 02_finetune)


def base_model(choice: str, work_dir: str | Path, *, preset: str | None = None,
               cache_dir: str | Path | None = None) -> BaseModel:
    """"scratch": `preset` from scratch with the offline MiniLM encoder; "official": the official MDM (CLIP text,
    HumanML3D statistics) that notebook 01 downloaded, downloading it now if the files are gone (a reset
    runtime); "auto": what 01_setup chose for this work folder (assets.json), else official in Colab and scratch
    elsewhere."""
    from kpop_helpers.colab import in_colab

    if choice not in ("auto", "scratch", "official"):
        raise DataError(f"got {choice!r}", field="base model", expected="'auto', 'scratch' or 'official'")
    reason = f"BASE_MODEL = {choice!r}"
    if choice == "auto":
        recorded = recorded_base_model(work_dir)
        if recorded is not None:
            choice, reason = recorded, f"chosen in 01_setup ({Path(work_dir) / ASSETS_FILE})"
        else:
            choice = "official" if in_colab() else "scratch"
            reason = "01_setup has not recorded a choice: " + ("official in Colab" if in_colab() else
                                                              "scratch outside Colab")
    if choice == "scratch":
        return BaseModel("scratch", "scratch", preset or FULL.preset, "minilm", reason=reason)
    assets = Path(work_dir) / ASSETS_FILE
    recorded = json.loads(assets.read_text()) if assets.is_file() else {}
    checkpoint, stats = recorded.get("official_checkpoint"), recorded.get("official_stats")
    if not (checkpoint and Path(checkpoint).is_file() and stats and Path(stats).is_dir()):
        from kpop_helpers.pretrained import fetch_humanml_stats, fetch_mdm_checkpoint

        cache_dir = cache_dir if cache_dir is not None else pretrained_cache_dir()
        checkpoint = str(fetch_mdm_checkpoint(OFFICIAL_MODEL, cache_dir))
        stats = str(fetch_humanml_stats(cache_dir))
    # The official model covers HumanML3D's 196-frame windows.
    return BaseModel("official", checkpoint, None, "clip", stats, 196, reason=reason)


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
    samples shown inline every N steps."""
    data = load_result(DataResult, work.data)
    if data is None or not Path(data.train).is_file():
        raise MissingStageOutput(work.data / "train.npz", "01_setup", work.run_name)
    on_sample = _show_samples if show_samples else None
    drive = work.checkpoints if work.on_drive else None
    return finetune(work.data, work.train_dir, smoke=smoke, base=base, steps=steps, resume=resume,
                    batch_size=batch_size, wandb=wandb, drive_dir=drive, run_name=work.run_name,
                    sample_prompts=DEMO_PROMPTS[:1] if sample_every else (), sample_every=sample_every,
                    on_sample=on_sample, publish_dir=work.checkpoints if work.on_drive else None,
                    log_dir=work.checkpoints / "logs", progress=progress)


def _show_samples(step: int, gifs: list[Path]) -> None:
    """Show the sample dances inline (notebooks); a printed path elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(f"step {step}: samples {', '.join(map(str, gifs))}")
        return
    print(f"sample dance at step {step}:")
    for gif in gifs:
        display(Image(filename=str(gif)))


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


def ensure_data(work: WorkDirs, *, smoke: bool = False, progress: bool = True) -> DataResult:
    """The data 01_setup prepared in this work folder; missing: a fresh smoke-size sample set under `smoke`,
    else MissingStageOutput naming the file and 01_setup."""
    found = load_result(DataResult, work.data)
    if found is not None and Path(found.train).is_file() and Path(found.stats_dir).is_dir():
        return found
    if not smoke:
        raise MissingStageOutput(work.data / "train.npz", "01_setup", work.run_name)
    logger.warning("no prepared data in %s: building the smoke-size sample set now (SMOKE only)", work.data)
    return prepare_data(work.data, smoke=True, progress=progress)


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
