"""Pipeline stage 01 (assets): the runtime check, the offline text encoder, the official MDM download, and the
base model fine-tuning starts from (recorded in `<work>/assets.json` for 02_finetune)."""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path

from kpop_helpers.errors import DataError
from kpop_helpers.pipeline.common import read_json, save_result, stage_progress
from kpop_helpers.pipeline.results import AssetsResult
from kpop_helpers.pipeline.settings import FULL
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


def _read_assets(work_dir: str | Path) -> dict:
    """What 01_setup recorded in `<work>/assets.json` ({} when it has not run)."""
    return read_json(Path(work_dir) / ASSETS_FILE, "assets.json written by 01_setup") or {}


def recorded_base_model(work_dir: str | Path) -> str | None:
    """The base model 01_setup chose for this run ("official" or "scratch"), None when 01 has not run."""
    path = Path(work_dir) / ASSETS_FILE
    recorded = _read_assets(work_dir)
    if not recorded:
        return None
    choice = recorded.get("base_model") or ("official" if recorded.get("official_checkpoint") else None)
    if choice not in (None, "official", "scratch"):
        raise DataError(f"base_model is {choice!r}", path=path, field="base_model", expected="'official' or 'scratch'")
    return choice


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
    recorded = _read_assets(work_dir)
    checkpoint, stats = recorded.get("official_checkpoint"), recorded.get("official_stats")
    if not (checkpoint and Path(checkpoint).is_file() and stats and Path(stats).is_dir()):
        from kpop_helpers.pretrained import fetch_humanml_stats, fetch_mdm_checkpoint

        cache_dir = cache_dir if cache_dir is not None else pretrained_cache_dir()
        checkpoint = str(fetch_mdm_checkpoint(OFFICIAL_MODEL, cache_dir))
        stats = str(fetch_humanml_stats(cache_dir))
    # The official model covers HumanML3D's 196-frame windows.
    return BaseModel("official", checkpoint, None, "clip", stats, 196, reason=reason)
