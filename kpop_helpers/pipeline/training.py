"""Pipeline stages up to a fine-tuned model: environment and assets, sample data and features, fine-tuning."""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from kpop_helpers.data.clip import DataError
from kpop_helpers.pipeline.common import load_result, save_result, stage_progress
from kpop_helpers.pipeline.results import AssetsResult, DataResult, FinetuneResult
from kpop_helpers.pipeline.settings import FULL, WorkDirs, settings_for, training_steps
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
    from kpop_helpers.colab import MY_DRIVE, drive_mounted

    return MY_DRIVE / "kpop_pretrained" if drive_mounted() else None


def prepare_assets(work_dir: str | Path, *, official: bool | str | None = None, cache_dir: str | Path | None = None,
                   progress: bool = True) -> AssetsResult:
    """Check the runtime (GPU, versions), the offline MiniLM text encoder and, when `official` (default: in
    Colab), download the official MDM checkpoint and HumanML3D statistics; writes `<work>/assets.json`.

    official: True/"yes", False/"no", or None/"auto" (in Colab only).
    cache_dir: where downloads go (default: `pretrained_cache_dir()`)."""
    from kpop_helpers.colab import gpu_info, in_colab
    from kpop_helpers.text import get_text_encoder

    work = Path(work_dir)
    colab = in_colab()
    choices = {None: colab, "auto": colab, "yes": True, "no": False, True: True, False: False}
    if official not in choices:
        raise DataError(f"got {official!r}", field="official", expected="'auto', 'yes', 'no' or a bool")
    official = choices[official]
    steps = ["environment", "text encoder"] + (["official MDM", "HumanML3D stats"] if official else [])
    notes: list[str] = []
    checkpoint = stats = None
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
            from kpop_helpers.pretrained import fetch_humanml_stats, fetch_mdm_checkpoint

            cache_dir = cache_dir if cache_dir is not None else pretrained_cache_dir()
            checkpoint = str(fetch_mdm_checkpoint(OFFICIAL_MODEL, cache_dir, progress=progress))
            bar.next()
            stats = str(fetch_humanml_stats(cache_dir, progress=progress))
            bar.next()
    result = AssetsResult(work_dir=str(work), in_colab=colab, gpu=gpu, text_encoder=encoder.name,
                          text_dim=int(encoder.dim), official_checkpoint=checkpoint, official_stats=stats,
                          versions=_versions(), notes=notes, seconds=bar.seconds)
    work.mkdir(parents=True, exist_ok=True)
    save_result(result, work)
    atomic_write_text(work / ASSETS_FILE, json.dumps({"official_checkpoint": checkpoint, "official_stats": stats},
                                                     indent=1) + "\n")
    return result


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


@dataclass(frozen=True)
class BaseModel:
    """What fine-tuning starts from: a preset from scratch, or the official MDM with its statistics."""

    name: str  # "scratch" | "official"
    init: str  # TrainConfig.init: "scratch" or a weights path
    preset: str | None
    text_encoder: str
    stats_dir: str | None = None
    max_frames: int | None = None


def base_model(choice: str, work_dir: str | Path, *, preset: str | None = None,
               cache_dir: str | Path | None = None) -> BaseModel:
    """"scratch": `preset` from scratch with the offline MiniLM encoder; "official": the official MDM (CLIP text,
    HumanML3D statistics) that notebook 01 downloaded, downloading it now if the files are gone (a reset
    runtime); "auto": official in Colab, scratch elsewhere."""
    from kpop_helpers.colab import in_colab

    if choice not in ("auto", "scratch", "official"):
        raise DataError(f"got {choice!r}", field="base model", expected="'auto', 'scratch' or 'official'")
    if choice == "auto":
        choice = "official" if in_colab() else "scratch"
    if choice == "scratch":
        return BaseModel("scratch", "scratch", preset or FULL.preset, "minilm")
    assets = Path(work_dir) / ASSETS_FILE
    recorded = json.loads(assets.read_text()) if assets.is_file() else {}
    checkpoint, stats = recorded.get("official_checkpoint"), recorded.get("official_stats")
    if not (checkpoint and Path(checkpoint).is_file() and stats and Path(stats).is_dir()):
        from kpop_helpers.pretrained import fetch_humanml_stats, fetch_mdm_checkpoint

        cache_dir = cache_dir if cache_dir is not None else pretrained_cache_dir()
        checkpoint = str(fetch_mdm_checkpoint(OFFICIAL_MODEL, cache_dir))
        stats = str(fetch_humanml_stats(cache_dir))
    # The official model covers HumanML3D's 196-frame windows.
    return BaseModel("official", checkpoint, None, "clip", stats, 196)


def finetune(data_dir: str | Path, out_dir: str | Path, *, smoke: bool, preset: str | None = None,
             steps: int | None = None, drive_dir: str | Path | None = None, resume: str = "auto",
             base: BaseModel | None = None, batch_size: int | None = None, wandb: str = "off",
             sample_prompts: tuple[str, ...] = (), seed: int = 0, progress: bool = True) -> FinetuneResult:
    """Fine-tune (or train from scratch) on `<data_dir>/train.npz` with checkpoints in `out_dir` (mirrored to
    `drive_dir`). resume="auto" continues from the newest checkpoint (local or Drive) up to `steps`.

    smoke: the tiny preset from scratch, 1/100 of the steps (at least 2), short windows, small batches.
    batch_size None: 64 on a GPU, 16 on the CPU (the trainer's default).
    """
    from kpop_helpers.model import get_preset
    from kpop_helpers.train import TrainConfig, Trainer

    s = settings_for(smoke)
    data, out = Path(data_dir), Path(out_dir)
    if base is None or smoke:
        base = BaseModel("scratch", "scratch", "tiny" if smoke else (preset or s.preset), "minilm")
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
        sample_prompts=tuple(sample_prompts), drive_dir=None if drive_dir is None else str(drive_dir),
        wandb=wandb, seed=seed, resume=resume)
    with stage_progress("fine-tune", ["set up", "train", "curves"], progress) as bar:
        trainer = Trainer(cfg, progress=progress)
        resumed_from = int(trainer.step)
        bar.next()
        run = trainer.train()
        bar.next()
        curve = _write_history(trainer, run.history, out)
        bar.next()
    checkpoints = trainer.ckpt.list_checkpoints()
    result = FinetuneResult(
        run_dir=str(out), weights=str(run.weights), checkpoint=run.checkpoint or (
            str(checkpoints[0]["path"]) if checkpoints else None),
        step=int(run.step), resumed_from=resumed_from, preset=cfg.preset if base.init == "scratch" else base.name,
        init=base.init, text_encoder=trainer.encoder.name,
        params=int(sum(p.numel() for p in trainer.bare_model.parameters())),
        train_loss=_last(run.history, "loss"), val_loss=_last(run.history, "val_loss"),
        steps_per_second=float(run.steps_per_second), seconds=bar.seconds, history=str(out / "history.json"),
        curve=curve, drive_dir=cfg.drive_dir)
    save_result(result, out)
    return result


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


def ensure_data(work: WorkDirs, *, smoke: bool = True, progress: bool = True) -> DataResult:
    """The data of an earlier run (notebook 01 or the demo), or a fresh sample set (smoke-size by default)."""
    found = load_result(DataResult, work.data)
    if found is not None and Path(found.train).is_file() and Path(found.stats_dir).is_dir():
        return found
    logger.warning("no prepared data in %s: building the sample set now", work.data)
    return prepare_data(work.data, smoke=smoke, progress=progress)


def ensure_weights(work: WorkDirs, *, smoke: bool = True, progress: bool = True) -> FinetuneResult:
    """The fine-tuned model of an earlier run (notebook 02), or a quick stand-in (smoke-size by default)."""
    found = load_result(FinetuneResult, work.checkpoints)
    if found is not None and Path(found.weights).is_file():
        return found
    logger.warning("no fine-tuned model in %s: training a %s stand-in now (run 02_finetune for a real one)",
                   work.checkpoints, "smoke-size" if smoke else "demo-size")
    data = ensure_data(work, smoke=smoke, progress=progress)
    started = time.perf_counter()
    result = finetune(data.data_dir, work.checkpoints, smoke=smoke, progress=progress)
    logger.info("stand-in model trained in %.0f s", time.perf_counter() - started)
    return result
