"""Training configuration (a dataclass, loadable from JSON, overridable from the command line)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from kpop_helpers.errors import DataError


@dataclass
class TrainConfig:
    """Everything a fine-tuning run needs. Defaults follow MDM (AdamW, lr 1e-4, cond dropout 0.1)."""

    data: str = "data/sample/train.npz"
    val_data: str | None = None  # None: a fixed split of `data` (val_fraction)
    out: str = "checkpoints/run"
    run_name: str | None = None  # TensorBoard/W&B run name; None: the name of the `out` folder
    log_dir: str | None = None  # TensorBoard logs; None: <out>/logs
    preset: str = "small"  # model preset when training from scratch
    init: str = "scratch"  # "scratch" | path to an official MDM .pt or one of our checkpoints/.safetensors
    stats: str | None = None  # folder with Mean.npy/Std.npy; None: official stats for official init, else computed
    text_encoder: str = "minilm"
    steps: int = 2000
    batch_size: int = 0  # 0: 64 on GPU, 16 on CPU
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lr_schedule: str = "constant"  # "constant" | "cosine"
    warmup_steps: int = 0
    ema_decay: float = 0.999
    amp: bool = True  # mixed precision on CUDA only
    cond_mask_prob: float = 0.1
    diffusion_steps: int = 1000
    max_frames: int = 196
    min_frames: int = 40
    window_stride: int = 98
    lambda_vel: float = 0.0  # optional velocity loss on features (off by default, as in MDM)
    lambda_fc: float = 0.0  # optional foot-contact loss on recovered joints (off by default)
    val_fraction: float = 0.1
    val_batches: int = 2
    log_every: int = 10
    eval_every: int = 200
    save_every: int = 200
    sample_every: int = 0  # 0: render samples only at the end
    sample_prompts: tuple[str, ...] = ("a powerful hip-hop dance with big arm waves", "a cute aegyo dance with small bounces")
    max_checkpoints: int = 5
    drive_dir: str | None = None
    google_drive_sync: bool = True
    wandb: str = "auto"  # "auto" | "offline" | "off" | "on"
    wandb_project: str = "kpop-choreographer"
    seed: int = 0
    device: str = "auto"
    # "auto": continue the newest matching checkpoint | "fresh": move old checkpoints to previous/, start at 0
    # | "none": start at 0, leave the folder as it is | path to a checkpoint (see kpop_helpers.train.resume)
    resume: str = "auto"

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """Read a JSON config file, then apply keyword overrides."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise DataError("config file not found", path=path) from exc
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc})", path=path) from exc
        return cls.from_dict({**raw, **overrides}, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> "TrainConfig":
        """Build from a dict, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise DataError(f"unknown key(s) {unknown}", path=source, expected=f"keys from {sorted(known)}")
        if "sample_prompts" in raw:
            raw = {**raw, "sample_prompts": tuple(raw["sample_prompts"])}
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict."""
        out = asdict(self)
        out["sample_prompts"] = list(self.sample_prompts)
        return out
