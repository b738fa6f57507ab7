"""Load an MDM from any of our weight files, with its normalisation statistics and text encoder name.

Accepted: our `.safetensors` exports (`checkpoints.export_weights`, format "kpop_weights", or
`model.save_mdm`, with `<stem>.json` / `<stem>.config.json` beside it), our training checkpoints
(`checkpoint_*.pt` from CheckpointManager; EMA weights preferred), and official MDM `.pt` files (args.json
beside them). Only safetensors and `torch.load(weights_only=True)` are used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kpop_helpers.errors import DataError
from kpop_helpers.model.config import MDMConfig
from kpop_helpers.model.load import load_denoiser_weights, load_mdm
from kpop_helpers.model.mdm import MDM
from kpop_helpers.motion.stats import MotionStats

logger = logging.getLogger(__name__)
_CHECKPOINT_FORMAT = "kpop_checkpoint"
_WEIGHTS_FORMAT = "kpop_weights"


def _safetensors_format(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("format")
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise DataError(f"not a readable safetensors file ({exc})", path=path) from exc


def _from_exported_weights(path: Path) -> MDM:
    from kpop_helpers.checkpoints import load_exported_weights

    exported = load_exported_weights(path)
    config = dict(exported.config.get("config", exported.config))
    model = MDM(MDMConfig.from_dict(config, source=f"{path} (config)"))
    load_denoiser_weights(model, exported.state_dict, source=path)
    if exported.mean is not None and exported.std is not None:
        model.stats = MotionStats(mean=exported.mean, std=exported.std)
    name = exported.metadata.get("text_encoder") or config.get("text_encoder")
    if name:
        model.text_encoder_name = str(name)
    return model


def _from_training_checkpoint(path: Path, payload: dict[str, Any], use_ema: bool) -> MDM:
    from kpop_helpers.checkpoints import decode_state

    extra = decode_state(payload.get("extra") or {})
    config = extra.get("model_config")
    if not isinstance(config, dict):
        raise DataError("training checkpoint has no model_config", path=path, field="extra.model_config",
                        expected="a checkpoint written by kpop_helpers.train")
    model = MDM(MDMConfig.from_dict(dict(config), source=f"{path} (model_config)"))
    ema = extra.get("ema")
    weights = ema if use_ema and isinstance(ema, dict) and ema else payload["model"]
    load_denoiser_weights(model, weights, source=f"{path} [{'ema' if weights is ema else 'model'}]")
    stats = extra.get("stats")
    if isinstance(stats, dict) and "mean" in stats and "std" in stats:
        model.stats = MotionStats(mean=np.asarray(stats["mean"]), std=np.asarray(stats["std"]))
    if extra.get("text_encoder"):
        model.text_encoder_name = str(extra["text_encoder"])
    return model


def load_model_file(model_path: str | Path, *, stats_dir: str | Path | None = None,
                          use_ema: bool = True) -> MDM:
    """The MDM denoiser (eval mode, CPU) with `.stats` and `.text_encoder_name` set when the file says.

    Statistics come from the file, else from `stats_dir`, else from Mean.npy/Std.npy beside the file.
    """
    path = Path(model_path)
    if not path.is_file():
        raise DataError("file not found", path=path, expected="a .safetensors export or a .pt checkpoint")
    if path.suffix == ".safetensors":
        model = _from_exported_weights(path) if _safetensors_format(path) == _WEIGHTS_FORMAT else load_mdm(path)
    else:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling refusals, truncated zips: all mean "not loadable as weights"
            raise DataError(f"not loadable with weights_only=True ({type(exc).__name__}: {exc})", path=path,
                            expected="a checkpoint of tensors (torch.save(state_dict) or kpop_helpers.train)") from exc
        if isinstance(payload, dict) and payload.get("format") == _CHECKPOINT_FORMAT:
            model = _from_training_checkpoint(path, payload, use_ema)
        else:
            del payload
            model = load_mdm(path)
    if stats_dir is not None:
        model.stats = MotionStats.load(stats_dir)
    elif getattr(model, "stats", None) is None and (path.parent / "Mean.npy").is_file():
        model.stats = MotionStats.load(path.parent)
    return model.eval()
