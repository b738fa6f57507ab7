"""The export folder's `manifest.json`: names shared by the exporter (writer) and the edge runtime (reader).

Kept free of torch so that the edge side can read it. Layout (every path relative to the folder)::

    {"format": "kpop_edge_export", "version": 1,
     "model_config": {...MDMConfig fields...}, "params": int,
     "stats": {"mean_file": "Mean.npy", "std_file": "Std.npy", "mean": [...], "std": [...]},
     "text_encoder": {"name", "dim", "mode": "onnx"|"precomputed"|"none", "onnx", "tokenizer",
                      "max_length", "prompt_embeddings", "parity",
                      "int8": {"onnx", "data", "min_cosine", ...} (optional: the int8 tower)},
     "inputs": {...}, "sampling": {"sampler", "steps", "guidance", "eta", "schedule", "diffusion_steps"},
     "variants": {"fp32": {"file", "runtime", "precision", "pruning", "size_bytes", "params", "parity"|"error"}, ...},
     "versions": {"torch", "onnx", "onnxruntime", ...}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kpop_helpers.errors import DataError
from kpop_helpers.sampling.spec import FIELDS, SamplerSpec

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "kpop_edge_export"
MANIFEST_VERSION = 1
MEAN_FILE, STD_FILE = "Mean.npy", "Std.npy"
TEXT_ONNX_FILE = "text_encoder.onnx"
TEXT_INT8_ONNX_FILE = "text_encoder_int8.onnx"  # optional: per-channel int8 MatMuls, cosine-checked
TOKENIZER_FILE = "tokenizer.json"
PROMPT_EMBEDDINGS_FILE = "prompt_embeddings.npz"
# ONNX graph interface of the denoiser (sequence-first inside; MDM layout outside).
INPUT_NAMES = ("x", "timesteps", "text_emb", "uncond")
GUIDANCE_INPUT = "guidance"  # a fifth input [B] float32, only in a guidance-distilled student's graph
OUTPUT_NAMES = ("x0",)
TEXT_INPUT_NAMES = ("input_ids", "attention_mask")
TEXT_OUTPUT_NAME = "sentence_embedding"
_REQUIRED = ("format", "version", "model_config", "stats", "text_encoder", "sampling", "variants")


def read_manifest(export_dir: str | Path) -> dict[str, Any]:
    """Load and check `manifest.json` of an export folder; DataError naming the file and field otherwise."""
    path = Path(export_dir) / MANIFEST_NAME
    if not path.is_file():
        raise DataError("file not found", path=path,
                        expected="an export folder written by `python -m kpop_helpers.export`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"not readable JSON ({exc})", path=path) from exc
    if not isinstance(manifest, dict):
        raise DataError(f"top level is a {type(manifest).__name__}", path=path, expected="a JSON object")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"format is {manifest.get('format')!r}", path=path, field="format",
                        expected=repr(MANIFEST_FORMAT))
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise DataError(f"missing keys {missing}", path=path, expected=f"all of {list(_REQUIRED)}")
    if int(manifest["version"]) > MANIFEST_VERSION:
        raise DataError(f"version {manifest['version']} is newer than this runtime understands", path=path,
                        field="version", expected=f"<= {MANIFEST_VERSION} (upgrade kpop_helpers)")
    if not isinstance(manifest["variants"], dict) or not manifest["variants"]:
        raise DataError("no variants", path=path, field="variants", expected="at least one exported model")
    return manifest


def variant_entry(manifest: dict[str, Any], variant: str, export_dir: str | Path) -> dict[str, Any]:
    """The manifest entry of an ONNX Runtime variant, with a clear error listing the available ones."""
    variants = manifest["variants"]
    onnx_variants = sorted(k for k, v in variants.items() if v.get("runtime") == "onnxruntime")
    if variant not in variants or variants[variant].get("runtime") != "onnxruntime":
        raise DataError(f"no ONNX Runtime variant {variant!r}", path=Path(export_dir) / MANIFEST_NAME,
                        field="variants", expected=f"one of {onnx_variants}")
    entry = variants[variant]
    if not (Path(export_dir) / entry["file"]).is_file():
        raise DataError("model file listed in the manifest is missing", path=Path(export_dir) / entry["file"],
                        field=f"variants.{variant}.file", expected="the file written by the exporter")
    return entry


def manifest_sampling(manifest: dict[str, Any], export_dir: str | Path) -> dict[str, Any]:
    """The sampler an export was made for ({"sampler", "steps", "guidance", "eta"}), checked, from its manifest."""
    section = manifest["sampling"]
    path = Path(export_dir) / MANIFEST_NAME
    missing = [key for key in FIELDS if not isinstance(section, dict) or key not in section]
    if missing:
        raise DataError(f"missing keys {missing}", path=path, field="sampling", expected=f"all of {list(FIELDS)}")
    return SamplerSpec.parse(section, path=path, field="sampling").to_dict()


def input_names(config: Any) -> tuple[str, ...]:
    """The denoiser graph's inputs for a model config (MDMConfig or its dict): + "guidance" for a guidance student."""
    get = config.get if isinstance(config, dict) else lambda key, default: getattr(config, key, default)
    takes = get("guidance_input", False)
    return INPUT_NAMES + ((GUIDANCE_INPUT,) if takes else ())
