"""`edge_config.json`: what to compress and export, validated with clear errors.

The seed schema is accepted as-is::

    {"optimization": {"quantization": {"enabled": true, "dtype": "int8"},
                      "pruning": {"enabled": true, "sparsity": 0.3}},
     "export": {"formats": ["onnx", "torchscript"]}}

Optional extensions (all documented in the README):
- quantization: ``backend`` ("onnxruntime" | "torch"), ``per_channel`` (bool), ``reduce_range`` (bool),
  ``fp16`` (bool: also write fp16 weights);
- pruning: ``kind`` ("unstructured" | "ffn" | "width"), ``recovery_steps`` (fine-tune steps after
  structured pruning);
- sampling: ``sampler`` ("ddim" | "ddpm"), ``steps`` (int), ``guidance`` (float), ``eta`` (float);
- export: ``opset`` (int), ``text_encoder`` ("onnx" | "precomputed" | "none"), ``prompts`` (list of str,
  precomputed embeddings for the edge side), ``text_quantization`` ("int8" | "none": the int8 text tower too).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kpop_helpers.errors import DataError
from kpop_helpers.sampling import SamplerSpec

logger = logging.getLogger(__name__)
EDGE_CONFIG_NAME = "edge_config.json"
EXPORT_FORMATS = ("onnx", "torchscript", "torch_export")
PRUNING_KINDS = ("unstructured", "ffn", "width")
QUANT_BACKENDS = ("onnxruntime", "torch")


@dataclass
class QuantizationConfig:
    """int8 quantisation settings; per-channel + reduce_range avoids saturation on CPUs without VNNI."""

    enabled: bool = True
    dtype: str = "int8"
    backend: str = "onnxruntime"
    per_channel: bool = True
    reduce_range: bool = True
    fp16: bool = True


@dataclass
class PruningConfig:
    """Pruning settings: `sparsity` is the fraction of weights (unstructured) or channels removed."""

    enabled: bool = True
    sparsity: float = 0.3
    kind: str = "ffn"
    recovery_steps: int = 200


@dataclass
class SamplingConfig:
    """Few-step sampling used on the edge side (the export's manifest carries it; the edge runtime defaults to it)."""

    # MDM's ancestral sampler on a respaced schedule: in the one-protocol benchmark DDPM 20 stays near the
    # 1000-step reference's FID_k and PFC where DDIM 10 triples FID_k (benchmarks/results/target/results.md).
    sampler: str = "ddpm"
    steps: int = 20
    guidance: float = 2.5
    eta: float = 0.0


@dataclass
class ExportConfig:
    """Which artifacts to write."""

    formats: list[str] = field(default_factory=lambda: ["onnx", "torchscript"])
    opset: int = 18
    text_encoder: str = "onnx"
    prompts: list[str] = field(default_factory=list)
    # "int8": also write the int8 text tower (kept when cosine to fp32 >= 0.99 on dance prompts); "none": fp32 only.
    text_quantization: str = "int8"


@dataclass
class EdgeConfig:
    """The whole `edge_config.json`."""

    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    @classmethod
    def load(cls, path: str | Path) -> "EdgeConfig":
        """Read and validate a JSON file."""
        path = Path(path)
        if not path.is_file():
            raise DataError("file not found", path=path, expected="an edge_config.json file")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON ({exc})", path=path) from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> "EdgeConfig":
        """Build from the seed schema (plus extensions), rejecting unknown keys and bad values."""
        if not isinstance(raw, dict):
            raise DataError("top level must be a JSON object", path=source)
        _check_keys(raw, {"optimization", "sampling", "export"}, source, "")
        opt = raw.get("optimization", {})
        _check_keys(opt, {"quantization", "pruning"}, source, "optimization")
        cfg = cls(
            quantization=_build(QuantizationConfig, opt.get("quantization", {}), source, "optimization.quantization"),
            pruning=_build(PruningConfig, opt.get("pruning", {}), source, "optimization.pruning"),
            sampling=_build(SamplingConfig, raw.get("sampling", {}), source, "sampling"),
            export=_build(ExportConfig, raw.get("export", {}), source, "export"),
        )
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "<config>") -> None:
        """Check values; raise DataError naming the field."""
        q, p, s, e = self.quantization, self.pruning, self.sampling, self.export
        if q.dtype not in ("int8",):
            raise DataError(f"unsupported dtype {q.dtype!r}", path=source, field="optimization.quantization.dtype", expected="'int8'")
        if q.backend not in QUANT_BACKENDS:
            raise DataError(f"unknown backend {q.backend!r}", path=source, field="optimization.quantization.backend", expected=f"one of {QUANT_BACKENDS}")
        if not 0.0 <= p.sparsity < 1.0:
            raise DataError(f"sparsity {p.sparsity} out of range", path=source, field="optimization.pruning.sparsity", expected="0 <= sparsity < 1")
        if p.kind not in PRUNING_KINDS:
            raise DataError(f"unknown pruning kind {p.kind!r}", path=source, field="optimization.pruning.kind", expected=f"one of {PRUNING_KINDS}")
        if p.recovery_steps < 0:
            raise DataError("negative recovery_steps", path=source, field="optimization.pruning.recovery_steps", expected=">= 0")
        # The one reader of a sampler setting (sampler, steps, guidance, eta) and its one error.
        SamplerSpec.parse({"sampler": s.sampler, "steps": s.steps, "guidance": s.guidance, "eta": s.eta},
                          path=source, field="sampling")
        bad = [f for f in e.formats if f not in EXPORT_FORMATS]
        if bad or not e.formats:
            raise DataError(f"unknown export formats {bad or e.formats}", path=source, field="export.formats", expected=f"a non-empty list from {EXPORT_FORMATS}")
        if not 17 <= e.opset <= 23:
            raise DataError(f"opset {e.opset} unsupported", path=source, field="export.opset", expected="17..23")
        if e.text_encoder not in ("onnx", "precomputed", "none"):
            raise DataError(f"unknown text_encoder mode {e.text_encoder!r}", path=source, field="export.text_encoder", expected="'onnx', 'precomputed' or 'none'")
        if e.text_quantization not in ("int8", "none"):
            raise DataError(f"unknown text_quantization {e.text_quantization!r}", path=source,
                            field="export.text_quantization", expected="'int8' or 'none'")

    def to_dict(self) -> dict[str, Any]:
        """The seed-compatible JSON layout."""
        return {"optimization": {"quantization": asdict(self.quantization), "pruning": asdict(self.pruning)},
                "sampling": asdict(self.sampling), "export": asdict(self.export)}

    def save(self, path: str | Path) -> None:
        """Write as JSON (atomically)."""
        from kpop_helpers.utils import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")


def load_edge_config(config_path: str | Path | None) -> EdgeConfig:
    """EdgeConfig from the file; the defaults when None, or when the default file name is simply absent."""
    if config_path is None:
        return EdgeConfig()
    path = Path(config_path)
    if not path.is_file() and str(config_path) == EDGE_CONFIG_NAME:
        logger.info("%s not found; using the default edge configuration", config_path)
        return EdgeConfig()
    return EdgeConfig.load(path)


def _check_keys(section: Any, allowed: set[str], source: str, where: str) -> None:
    if not isinstance(section, dict):
        raise DataError("must be a JSON object", path=source, field=where or "<top>")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise DataError(f"unknown key(s) {unknown}", path=source, field=where or "<top>", expected=f"keys from {sorted(allowed)}")


def _build(kind: type, section: Any, source: str, where: str) -> Any:
    names = {f.name: f for f in fields(kind)}
    _check_keys(section, set(names), source, where)
    default = kind()
    for key, value in section.items():
        want = type(getattr(default, key))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise DataError(f"bad value {value!r}", path=source, field=f"{where}.{key}", expected=want.__name__)
        if want is list and not all(isinstance(v, str) for v in value):
            raise DataError(f"bad value {value!r}", path=source, field=f"{where}.{key}", expected="a list of strings")
    return kind(**{**asdict(default), **section})
