"""Load MDM denoiser weights: official checkpoints (raw or EMA dict, with or without CLIP) and our safetensors.

Only `torch.load(weights_only=True)` and safetensors are used: a checkpoint can never run code.
"""

from __future__ import annotations

import json
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from kpop_helpers.errors import DataError
from kpop_helpers.model.config import MDMConfig, get_preset
from kpop_helpers.model.mdm import MDM, PE_KEYS

logger = logging.getLogger(__name__)

CLIP_PREFIX = "clip_model."
# The text tower of openai/CLIP (what MDM's clip_encode_text runs); the visual tower is never needed.
CLIP_TEXT_PREFIXES = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")
# Wrappers added by torch.compile and DistributedDataParallel.
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")
FORMAT_NAME = "kpop_helpers.mdm"
# Stats stored inside weights files: ours, and kpop_helpers.checkpoints.export_weights' prefix.
_STATS_PREFIXES = ("stats.", "_kpop_stats.")
_MAX_LISTED = 12

ConfigLike = MDMConfig | Mapping[str, Any] | str | None


def read_weights_file(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(top-level object, safetensors metadata) of a .pt/.pth/.bin or .safetensors file; DataError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=path, expected="an MDM checkpoint (.pt or .safetensors)")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        try:
            # mmap: official files carry ~150M CLIP values we often skip; mapping avoids reading them.
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(f"holds Python objects that weights-only loading refuses ({_first_line(exc)})", path=path,
                        expected="a checkpoint of plain tensors/dicts (torch.save(model.state_dict()))") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(f"not a readable torch checkpoint, truncated or corrupt? ({_first_line(exc)})", path=path,
                        expected="a complete .pt file written by torch.save") from exc
    if not isinstance(obj, Mapping):
        raise DataError(f"top-level object is a {type(obj).__name__}", path=path,
                        expected="a state_dict or a dict such as {'model': ..., 'model_avg': ...}")
    return dict(obj), {}


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"not a readable safetensors file ({_first_line(exc)})", path=path,
                        expected="a complete .safetensors file") from exc
    return tensors, metadata


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def select_state_dict(obj: Mapping[str, Any], *, use_ema: bool | None = None, source: str | Path = "checkpoint",
                      args: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
    """Pick the weights out of a loaded checkpoint: a raw state_dict or an EMA/training dict.

    use_ema=None follows the run's args.json (`use_ema`) when given, else prefers 'model_avg' when present
    (runs trained with --use_ema sample with the averaged weights).
    """
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        if use_ema:
            logger.info("%s has no averaged (EMA) weights; loading the raw state_dict", source)
        return dict(obj)
    has_avg = isinstance(obj.get("model_avg"), Mapping)
    has_model = isinstance(obj.get("model"), Mapping)
    if has_avg or has_model:
        want_avg = use_ema if use_ema is not None else bool((args or {}).get("use_ema", True))
        if want_avg and not has_avg:
            logger.info("%s has no 'model_avg'; loading 'model'", source)
        if not want_avg and not has_model:
            logger.warning("%s has only 'model_avg'; loading the averaged weights", source)
        chosen = "model_avg" if (want_avg and has_avg) or not has_model else "model"
        return _tensor_dict(obj[chosen], f"{source} ['{chosen}']")
    for key in ("state_dict", "model_state_dict", "weights"):
        if isinstance(obj.get(key), Mapping):
            return _tensor_dict(obj[key], f"{source} ['{key}']")
    keys = sorted(map(str, obj))[:_MAX_LISTED]
    raise DataError(f"no weights found; top-level keys are {keys}", path=source,
                    expected="a state_dict, or a dict with 'model'/'model_avg'/'state_dict'")


def _tensor_dict(obj: Mapping[str, Any], source: str) -> dict[str, Tensor]:
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise DataError(f"non-tensor entries {bad[:_MAX_LISTED]}", path=source, expected="a mapping of name -> tensor")
    return dict(obj)


def strip_wrapper_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove `_orig_mod.` (torch.compile) and `module.` (DDP) prefixes, in any nesting."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        out[key] = value
    return out


def split_clip(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(denoiser weights without pe/CLIP keys, clip_model.* weights with the prefix removed)."""
    denoiser, clip = {}, {}
    for key, value in state_dict.items():
        if key.startswith(CLIP_PREFIX):
            clip[key[len(CLIP_PREFIX):]] = value
        elif key not in PE_KEYS:
            denoiser[key] = value
    return denoiser, clip


def load_clip_text_state(path: str | Path, *, use_ema: bool | None = None) -> dict[str, Tensor]:
    """The CLIP text-tower weights (openai names, prefix removed) carried by an MDM checkpoint; {} if none."""
    obj, _ = read_weights_file(path)
    _, clip = split_clip(strip_wrapper_prefixes(select_state_dict(obj, use_ema=use_ema, source=path)))
    return {k: v for k, v in clip.items() if k.startswith(CLIP_TEXT_PREFIXES)}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {what} ({_first_line(exc)})", path=path, expected="a JSON object") from exc
    if not isinstance(data, dict):
        raise DataError(f"{what} is a {type(data).__name__}", path=path, expected="a JSON object")
    return data


def sidecar_config_path(weights_path: str | Path) -> Path:
    """Where save_mdm writes the human-readable config beside a weights file."""
    weights_path = Path(weights_path)
    return weights_path.with_name(weights_path.stem + ".config.json")


def _coerce_config(config: ConfigLike, source: str) -> MDMConfig | None:
    if config is None or isinstance(config, MDMConfig):
        return config
    if isinstance(config, str):
        return get_preset(config)
    if isinstance(config, Mapping):
        data = dict(config)
        return MDMConfig.from_dict(dict(data.get("config", data)), source=source)
    raise DataError(f"got {type(config).__name__}", field="config", expected="MDMConfig, dict, preset name or None")


def resolve_config(path: Path, obj: Mapping[str, Any], metadata: Mapping[str, str], state_dict: Mapping[str, Tensor],
                   *, config: ConfigLike = None, args: Mapping[str, Any] | None = None,
                   args_source: str = "args.json") -> MDMConfig:
    """The model config, from (in order) the argument, args.json, the file itself, the sidecar, or the shapes."""
    if config is not None:
        return _coerce_config(config, "config")  # type: ignore[return-value]
    if args is not None:
        return MDMConfig.from_mdm_args(dict(args), source=args_source)
    for key in ("mdm_config", "config"):  # ours, then kpop_helpers.checkpoints.export_weights'
        if key in metadata:
            return MDMConfig.from_dict(json.loads(metadata[key]), source=f"{path} (metadata '{key}')")
    for key in ("mdm_config", "config"):
        if isinstance(obj.get(key), Mapping):
            return MDMConfig.from_dict(dict(obj[key]), source=f"{path} ['{key}']")
    for sidecar in (sidecar_config_path(path), path.with_suffix(".json")):
        if sidecar.is_file():
            data = _read_json(sidecar, "model config")
            return MDMConfig.from_dict(dict(data.get("config", data)), source=str(sidecar))
    logger.warning("%s: no config, no args.json and no sidecar; inferring sizes from the weights and assuming "
                   "the official num_heads=4 and dropout 0.1", path)
    return infer_config(state_dict, source=str(path))


def infer_config(state_dict: Mapping[str, Tensor], source: str = "state_dict", num_heads: int = 4) -> MDMConfig:
    """Config whose shapes match a denoiser state_dict (num_heads cannot be read from shapes)."""
    try:
        latent_dim, input_feats = state_dict["input_process.poseEmbedding.weight"].shape
        ff_size = state_dict["seqTransEncoder.layers.0.linear1.weight"].shape[0]
        text_dim = state_dict["embed_text.weight"].shape[1]
        njoints = state_dict["output_process.poseFinal.weight"].shape[0]
    except (KeyError, ValueError) as exc:
        raise DataError(f"cannot infer the MDM sizes (missing or malformed {exc})", path=source,
                        expected="an MDM trans_enc state_dict") from exc
    layers = {k.split(".")[2] for k in state_dict if k.startswith("seqTransEncoder.layers.")}
    dims = {512: "clip", 384: "minilm"}
    return MDMConfig.from_dict(dict(latent_dim=int(latent_dim), ff_size=int(ff_size), num_layers=len(layers),
                                    num_heads=num_heads, njoints=int(njoints), nfeats=int(input_feats) // int(njoints),
                                    text_dim=int(text_dim), text_encoder=dims.get(int(text_dim), "custom")),
                               source=source)


def load_denoiser_weights(model: MDM, state_dict: Mapping[str, Tensor], source: str | Path = "state_dict") -> None:
    """Copy weights into the model by name; DataError listing missing/unexpected keys and shape mismatches."""
    denoiser, _ = split_clip(strip_wrapper_prefixes(state_dict))
    denoiser = {k: v for k, v in denoiser.items() if not k.startswith(_STATS_PREFIXES)}
    expected = model.state_dict()
    missing = [k for k in expected if k not in denoiser]
    unexpected = [k for k in denoiser if k not in expected]
    mismatched = [f"{k}: file {list(denoiser[k].shape)} vs model {list(expected[k].shape)}"
                  for k in expected if k in denoiser and denoiser[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", mismatched)):
            if items:
                more = f" ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
                parts.append(f"{len(items)} {label}: {items[:_MAX_LISTED]}{more}")
        c = model.cfg
        raise DataError("weights do not fit the MDM denoiser; " + "; ".join(parts), path=source,
                        expected=f"an MDM trans_enc state_dict for latent_dim={c.latent_dim}, layers={c.num_layers}, "
                                 f"ff_size={c.ff_size}, text_dim={c.text_dim} (pass config= or args_json= if the "
                                 "run used other sizes)")
    converted = {k: v.to(dtype=expected[k].dtype) if v.is_floating_point() else v for k, v in denoiser.items()}
    model.load_state_dict(converted, strict=True)


def _load_args(path: Path, args_json: str | Path | Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, str]:
    if isinstance(args_json, Mapping):
        return dict(args_json), "args_json"
    args_path = Path(args_json) if args_json is not None else path.parent / "args.json"
    if args_json is not None and not args_path.is_file():
        raise DataError("file not found", path=args_path, expected="the run's args.json")
    if args_path.is_file():
        return _read_json(args_path, "MDM args.json"), str(args_path)
    return None, ""


def load_mdm(path: str | Path, *, config: ConfigLike = None, args_json: str | Path | Mapping[str, Any] | None = None,
             use_ema: bool | None = None, device: str | torch.device = "cpu") -> MDM:
    """Build and load an MDM denoiser from an official checkpoint or our own safetensors; eval mode.

    The config comes from `config` (MDMConfig, dict or preset name), else `args_json` (path or dict;
    default: args.json beside the checkpoint, the official layout), else the file's own metadata or
    `<stem>.config.json`, else it is inferred from the weight shapes. clip_model.* and the two pe keys
    in the file are ignored (see `load_clip_text_state` for the CLIP text tower).
    """
    path = Path(path)
    obj, metadata = read_weights_file(path)
    args, args_source = (None, "") if config is not None else _load_args(path, args_json)
    state_dict = strip_wrapper_prefixes(select_state_dict(obj, use_ema=use_ema, source=path, args=args))
    cfg = resolve_config(path, obj, metadata, state_dict, config=config, args=args, args_source=args_source)
    model = MDM(cfg)
    load_denoiser_weights(model, state_dict, source=path)
    for prefix in _STATS_PREFIXES:
        if f"{prefix}mean" in state_dict and f"{prefix}std" in state_dict:
            model.stats = _make_stats(state_dict[f"{prefix}mean"], state_dict[f"{prefix}std"], path)
    if "text_encoder" in metadata:
        model.text_encoder_name = metadata["text_encoder"]
    return model.to(device).eval()


def _make_stats(mean: Tensor, std: Tensor, source: Path) -> Any:
    try:
        from kpop_helpers.motion.stats import MotionStats
    except ImportError:  # stats module absent: keep the raw arrays rather than fail the load
        logger.warning("%s carries normalisation stats but kpop_helpers.motion.stats is unavailable", source)
        return None
    return MotionStats(mean=mean.float().numpy(), std=std.float().numpy())


def save_mdm(model: MDM, path: str | Path) -> Path:
    """Write the denoiser as .safetensors (stats inside) + a JSON config beside it, atomically."""
    from kpop_helpers.checkpoints import export_weights

    path = Path(path)
    if path.suffix != ".safetensors":
        raise DataError(f"got suffix {path.suffix!r}", path=path, expected="a .safetensors file name")
    return export_weights(model, path, config=model.cfg.to_dict(), stats=getattr(model, "stats", None),
                          metadata={"text_encoder": model.text_encoder_name})
