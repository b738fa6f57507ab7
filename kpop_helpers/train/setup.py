"""Building what a training run needs: device, data windows, model (+ stats) and text embeddings."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from kpop_helpers.errors import DataError
from kpop_helpers.model import MDM, get_preset
from kpop_helpers.motion.stats import MotionStats
from kpop_helpers.train.config import TrainConfig
from kpop_helpers.train.dataset import Window, clips_to_features, make_windows, split_by_clip

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_data(cfg: TrainConfig, *, progress: bool = True) -> tuple[list[Window], list[Window]]:
    """Load clips, convert to features and cut windows; returns (train, val)."""
    from kpop_helpers.data.io import load_clips

    from kpop_helpers.data.captions import uncaptioned_warning

    clips, _ = load_clips(cfg.data)
    if not clips:
        raise DataError("no clips found", path=cfg.data, expected="at least one clip (.json, .npz or .bvh)")
    message = uncaptioned_warning(clips, where=f"{cfg.data}: ")
    if message:  # a text-to-motion model trained without texts ignores its prompts
        warnings.warn(message, stacklevel=2)
    feats = clips_to_features(clips, progress=progress)
    kw = dict(max_frames=cfg.max_frames, min_frames=cfg.min_frames, stride=cfg.window_stride)
    if cfg.val_data:
        val_clips, _ = load_clips(cfg.val_data)
        return make_windows(feats, clips, **kw), make_windows(clips_to_features(val_clips, progress=progress), val_clips, **kw)
    train_idx, val_idx = split_by_clip(len(clips), cfg.val_fraction, cfg.seed)
    pick = lambda idx: ([feats[i] for i in idx], [clips[i] for i in idx])  # noqa: E731
    return make_windows(*pick(train_idx), **kw), make_windows(*pick(val_idx), **kw)


def build_model(cfg: TrainConfig, device: torch.device) -> tuple[MDM, MotionStats | None, object]:
    """The model to train (scratch, official MDM or ours), its statistics (None: compute) and text encoder."""
    from kpop_helpers.text import get_text_encoder

    encoder = get_text_encoder(cfg.text_encoder)
    stats = MotionStats.load(cfg.stats) if cfg.stats else None
    if cfg.init == "scratch":
        model_cfg = get_preset(cfg.preset, text_dim=encoder.dim, text_encoder=encoder.name,
                               diffusion_steps=cfg.diffusion_steps, cond_mask_prob=cfg.cond_mask_prob,
                               max_frames=cfg.max_frames)
        model = MDM(model_cfg)
    else:
        model, init_stats = load_init(cfg.init)
        # Fine-tuning the official model keeps the official statistics unless the user overrides them.
        stats = stats or init_stats
        if model.cfg.text_dim != encoder.dim or model.text_encoder_name != encoder.name:
            model.reset_text_projection(encoder.dim, encoder.name)
        model.cfg.cond_mask_prob = cfg.cond_mask_prob
    model.text_encoder_name = encoder.name
    return model.to(device), stats, encoder


def load_init(path: str) -> tuple[MDM, MotionStats | None]:
    """Load initial weights: our .safetensors export, one of our checkpoints, or an official MDM file."""
    p = Path(path)
    if p.suffix == ".safetensors":
        from kpop_helpers.checkpoints import load_exported_weights

        exported = load_exported_weights(p)
        model = MDM(get_preset_from_dict(exported.config))
        model.load_state_dict(exported.state_dict)
        stats = MotionStats(exported.mean, exported.std) if exported.mean is not None else None
        return model, stats
    state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and state.get("format") and "model_config" in (state.get("extra") or {}):
        from kpop_helpers.checkpoints import decode_state

        extra = decode_state(state["extra"])
        model = MDM(get_preset_from_dict(extra["model_config"]))
        model.load_state_dict(extra.get("ema") or decode_state(state["model"]))
        s = extra.get("stats")
        return model, MotionStats(np.asarray(s["mean"]), np.asarray(s["std"])) if s else None
    from kpop_helpers.model import load_mdm

    model = load_mdm(p)
    stats_dir = p.parent
    stats = MotionStats.load(stats_dir) if (stats_dir / "Mean.npy").is_file() else None
    return model, stats


def get_preset_from_dict(config: dict):
    """MDMConfig from a stored dict."""
    from kpop_helpers.model import MDMConfig

    return MDMConfig.from_dict(dict(config))


@torch.no_grad()
def build_text_cache(encoder, texts: list[str], batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Embed every caption once (training reuses them every epoch)."""
    cache: dict[str, torch.Tensor] = {}
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        emb = encoder.encode(chunk).detach().float().cpu()
        cache.update(zip(chunk, emb))
    return cache
