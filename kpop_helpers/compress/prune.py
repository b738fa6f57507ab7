"""Pruning the MDM denoiser: unstructured magnitude pruning, structured FFN and width pruning (torch-pruning),
and the short recovery fine-tune that follows structured pruning.

- "unstructured": zeroes the smallest-magnitude weights of every Linear and of attention's in-projection.
  Shapes stay the same, so it shrinks only a *compressed* file (zip / sparse storage) and changes neither
  latency nor the size of the plain ONNX file.
- "ffn": removes hidden channels of linear1/linear2 in every encoder layer (same count per layer, so one
  `ff_size` describes the model); really smaller and faster.
- "width": shrinks latent_dim, the residual stream that every block reads and writes. torch-pruning cannot
  prune attention heads and ties the residual channels to the q/k/v channels of nn.MultiheadAttention, so
  the same number of channels is removed inside every head (num_heads stays, head_dim shrinks, the head
  grouping is preserved) and q is rescaled for the new 1/sqrt(head_dim). The sinusoid table has no weights:
  it is recomputed for the new width (what `MDM(cfg)` builds on reload). Channels are removed in sin/cos
  pairs and kept in order, so inside each head the recomputed table's frequencies cover the same range as
  the original channels; the recovery fine-tune absorbs the rest.
Structured pruning updates `model.cfg` so that `save_mdm`/`load_mdm` and the exporter work unchanged.
"""

from __future__ import annotations

import copy
import logging
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.utils.prune as torch_prune
import torch_pruning as tp
from torch import Tensor, nn

from kpop_helpers.model import MDM, sinusoid_table

logger = logging.getLogger(__name__)
KINDS = ("unstructured", "ffn", "width")


@dataclass
class PruneReport:
    """What pruning did: parameter counts, the real sparsity / removed fraction, and config changes."""

    kind: str
    requested: float
    params_before: int
    params_after: int
    achieved: float
    config_changes: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def param_ratio(self) -> float:
        return self.params_after / self.params_before

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**asdict(self), "param_ratio": self.param_ratio}


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (unique tensors)."""
    return sum(p.numel() for p in model.parameters())


def _attention_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    targets: list[tuple[nn.Module, str]] = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            targets.append((module, "weight"))
        elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
            targets.append((module, "in_proj_weight"))
    return targets


def prune_unstructured(model: nn.Module, sparsity: float) -> tuple[nn.Module, PruneReport]:
    """Zero the `sparsity` fraction of smallest |w| in every weight matrix (per tensor); returns a copy."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1), got {sparsity}")
    pruned = copy.deepcopy(model)
    targets = _attention_weights(pruned)
    for module, name in targets:
        torch_prune.l1_unstructured(module, name=name, amount=float(sparsity))
        torch_prune.remove(module, name)  # bake the mask in: plain tensors with zeros, nothing extra to save
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in targets)
    total = sum(getattr(m, n).numel() for m, n in targets)
    params = count_parameters(pruned)
    note = (f"{zeros} of {total} matrix weights are zero; shapes and latency unchanged, only a compressed "
            "(zip/sparse) file shrinks")
    return pruned, PruneReport("unstructured", float(sparsity), count_parameters(model), params,
                               achieved=zeros / total if total else 0.0,
                               config_changes={"nonzero_params": params - zeros}, note=note)


def _round_keep(size: int, amount: float, multiple_of: int) -> int:
    keep = size - int(round(amount * size))
    if multiple_of > 1 and keep >= multiple_of:
        keep = int(round(keep / multiple_of)) * multiple_of  # SIMD-friendly widths run faster
    return max(1, min(size, keep))


def _lowest(importance: Tensor, count: int) -> list[int]:
    return sorted(torch.argsort(importance, stable=True)[:count].tolist())


def _unit_norm(rows: Tensor, bias: Tensor | None = None) -> Tensor:
    """L2 norm per output row (weight row plus its bias)."""
    squared = rows.detach().pow(2).sum(dim=1)
    if bias is not None:
        squared = squared + bias.detach().pow(2)
    return squared.sqrt()


def prune_ffn(model: MDM, amount: float, *, multiple_of: int = 8) -> tuple[MDM, PruneReport]:
    """Remove the `amount` fraction of FFN hidden channels in every layer (importance ||w1 row|| * ||w2 col||)."""
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must lie in [0, 1), got {amount}")
    pruned = copy.deepcopy(model)
    ff = int(pruned.cfg.ff_size)
    keep = _round_keep(ff, amount, multiple_of)
    for layer in pruned.seqTransEncoder.layers:
        # A hidden unit's contribution is its activation (driven by the linear1 row) times its linear2 column.
        importance = _unit_norm(layer.linear1.weight, layer.linear1.bias) * layer.linear2.weight.detach().norm(dim=0)
        idxs = _lowest(importance, ff - keep)
        tp.prune_linear_out_channels(layer.linear1, idxs)
        tp.prune_linear_in_channels(layer.linear2, idxs)
    pruned.cfg.ff_size = keep
    _check_rebuildable(pruned)
    return pruned, PruneReport("ffn", float(amount), count_parameters(model), count_parameters(pruned),
                               achieved=(ff - keep) / ff, config_changes={"ff_size": [ff, keep]},
                               note="FFN hidden channels removed in every encoder layer")


def _residual_importance(model: MDM) -> Tensor:
    """Sum of squared weights attached to each residual channel, across every module that reads/writes it."""
    d = model.cfg.latent_dim
    sq = lambda t: t.detach().pow(2)  # noqa: E731
    imp = torch.zeros(d)
    imp += sq(model.input_process.poseEmbedding.weight).sum(1) + sq(model.input_process.poseEmbedding.bias)
    imp += sq(model.embed_text.weight).sum(1) + sq(model.embed_text.bias)
    time_out = model.embed_timestep.time_embed[2]
    imp += sq(time_out.weight).sum(1) + sq(time_out.bias)
    imp += sq(model.embed_timestep.time_embed[0].weight).sum(0)
    imp += sq(model.output_process.poseFinal.weight).sum(0)
    for layer in model.seqTransEncoder.layers:
        attn = layer.self_attn
        w = sq(attn.in_proj_weight)
        imp += w.sum(0) + w[:d].sum(1) + w[d:2 * d].sum(1) + w[2 * d:].sum(1)
        imp += sq(attn.in_proj_bias).reshape(3, d).sum(0)
        imp += sq(attn.out_proj.weight).sum(0) + sq(attn.out_proj.weight).sum(1) + sq(attn.out_proj.bias)
        imp += sq(layer.linear1.weight).sum(0) + sq(layer.linear2.weight).sum(1) + sq(layer.linear2.bias)
        for norm in (layer.norm1, layer.norm2):
            imp += sq(norm.weight) + sq(norm.bias)
    return imp


def width_plan(latent_dim: int, num_heads: int, amount: float) -> tuple[int, int]:
    """(new head_dim, channels per removal unit): same removal in every head, sin/cos pairs when possible."""
    head_dim = latent_dim // num_heads
    unit = 2 if head_dim % 2 == 0 else 1
    remove = int(round(amount * head_dim / unit)) * unit
    remove = min(remove, head_dim - unit)
    new_head_dim = head_dim - remove
    if (num_heads * new_head_dim) % 2:  # latent_dim must stay even (sin/cos pairs of the table)
        new_head_dim -= 1
    if new_head_dim < 1:
        raise ValueError(f"cannot prune latent_dim={latent_dim} with {num_heads} heads by {amount}")
    return new_head_dim, unit


def prune_width(model: MDM, amount: float) -> tuple[MDM, PruneReport]:
    """Shrink latent_dim by about `amount` (head count kept, head_dim reduced); returns a copy."""
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must lie in [0, 1), got {amount}")
    pruned = copy.deepcopy(model)
    cfg = pruned.cfg
    d, heads = int(cfg.latent_dim), int(cfg.num_heads)
    head_dim = d // heads
    new_head_dim, unit = width_plan(d, heads, amount)
    importance = _residual_importance(pruned)
    removed: list[int] = []
    for h in range(heads):
        block = importance[h * head_dim:(h + 1) * head_dim]
        per_unit = block[: head_dim // unit * unit].reshape(-1, unit).sum(1)
        for u in _lowest(per_unit, (head_dim - new_head_dim) // unit):
            removed.extend(h * head_dim + u * unit + k for k in range(unit))
    removed = sorted(removed)
    new_d = d - len(removed)

    time_in, time_out = pruned.embed_timestep.time_embed[0], pruned.embed_timestep.time_embed[2]
    hidden_importance = _unit_norm(time_in.weight, time_in.bias) * time_out.weight.detach().norm(dim=0)
    hidden_removed = _lowest(hidden_importance, d - new_d)

    with torch.no_grad():
        scale = math.sqrt(new_head_dim / head_dim)  # keeps q.k / sqrt(head_dim) on the surviving channels
        for layer in pruned.seqTransEncoder.layers:
            layer.self_attn.in_proj_weight[:d] *= scale
            layer.self_attn.in_proj_bias[:d] *= scale
    tp.prune_linear_out_channels(pruned.input_process.poseEmbedding, removed)
    tp.prune_linear_out_channels(pruned.embed_text, removed)
    tp.prune_linear_out_channels(time_out, removed)
    tp.prune_linear_in_channels(time_in, removed)  # its inputs are the (recomputed) table's columns
    tp.prune_linear_out_channels(time_in, hidden_removed)
    tp.prune_linear_in_channels(time_out, hidden_removed)
    tp.prune_linear_in_channels(pruned.output_process.poseFinal, removed)
    for layer in pruned.seqTransEncoder.layers:
        tp.prune_multihead_attention_out_channels(layer.self_attn, removed)
        tp.prune_linear_in_channels(layer.linear1, removed)
        tp.prune_linear_out_channels(layer.linear2, removed)
        tp.prune_layernorm_out_channels(layer.norm1, removed)
        tp.prune_layernorm_out_channels(layer.norm2, removed)
    table = sinusoid_table(int(cfg.pos_embed_max_len), new_d).to(pruned.sequence_pos_encoder.pe.device)
    pruned.sequence_pos_encoder.register_buffer("pe", table, persistent=False)
    pruned.input_process.latent_dim = new_d
    pruned.embed_timestep.latent_dim = new_d
    cfg.latent_dim = new_d
    _check_rebuildable(pruned)
    return pruned, PruneReport("width", float(amount), count_parameters(model), count_parameters(pruned),
                               achieved=len(removed) / d,
                               config_changes={"latent_dim": [d, new_d], "head_dim": [head_dim, new_head_dim],
                                               "num_heads": heads},
                               note="residual width reduced inside every head; positional table recomputed")


def _check_rebuildable(model: MDM) -> None:
    """The pruned weights must fit `MDM(model.cfg)`, or saving and reloading would fail later."""
    model.cfg.validate("pruned MDMConfig")
    fresh = {k: tuple(v.shape) for k, v in MDM(copy.deepcopy(model.cfg)).state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if fresh != mine:
        bad = sorted(k for k in set(fresh) | set(mine) if fresh.get(k) != mine.get(k))
        raise RuntimeError(f"pruned model does not match its config for {bad[:6]}")


def prune_model(model: MDM, kind: str, amount: float) -> tuple[MDM, PruneReport]:
    """Dispatch on kind: "unstructured" (sparsity), "ffn" or "width" (fraction of channels)."""
    if kind == "unstructured":
        return prune_unstructured(model, amount)
    if kind == "ffn":
        return prune_ffn(model, amount)
    if kind == "width":
        return prune_width(model, amount)
    raise ValueError(f"unknown pruning kind {kind!r}; expected one of {KINDS}")


def compressed_size_bytes(path: str | Path, level: int = 6) -> int:
    """Size of the file after deflate (what a zip would hold): where unstructured zeros pay off."""
    compressor = zlib.compressobj(level)
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            size += len(compressor.compress(block))
    return size + len(compressor.flush())


def recovery_finetune(model: MDM, train_config: Any, *, steps: int, stats: Any = None,
                      out_dir: str | Path | None = None, progress: bool = True) -> tuple[MDM, Any]:
    """Fine-tune a pruned model for `steps` steps with the project trainer; returns (model, TrainResult).

    `train_config` is a `kpop_helpers.train.TrainConfig` naming the data; steps, text encoder, sampling
    and logging options are overridden for a short, quiet recovery run. The raw (not EMA) weights are
    returned: with a few hundred steps an EMA would still mostly hold the pre-recovery weights.
    `out_dir` replaces the config's `out` (where the trainer writes its checkpoints and logs).
    """
    from kpop_helpers.train import TrainConfig, Trainer

    overrides = {"steps": int(steps), "resume": "none", "sample_prompts": [], "wandb": "off",
                 "save_every": max(1, int(steps)), "eval_every": max(1, int(steps)),
                 "text_encoder": model.text_encoder_name,
                 "max_frames": min(int(train_config.max_frames), int(model.cfg.max_frames))}
    if out_dir is not None:
        overrides["out"] = str(out_dir)
    cfg = TrainConfig.from_dict({**train_config.to_dict(), **overrides})
    trainer = Trainer(cfg, model=model, stats=stats if stats is not None else getattr(model, "stats", None),
                      progress=progress)
    result = trainer.train()
    tuned = trainer.bare_model.eval()
    tuned.stats = trainer.stats
    return tuned, result
