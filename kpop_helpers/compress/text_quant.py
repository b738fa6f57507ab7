"""An int8 text tower: the exported MiniLM ONNX file with int8 MatMul weights, kept only when its embeddings agree.

The fp32 tower is most of the edge runtime's memory (about 55 MiB of a 184 MiB peak for one dance). ONNX
Runtime's dynamic quantisation of the MatMuls with per-channel scales keeps every embedding of a set of dance
prompts within cosine 0.99 of fp32; per-tensor scales (0.89 worst) and quantising the word-embedding Gather
too (0.989 worst) did not, so the embedding table stays fp32 (external data, mapped, not read whole).

    python -m kpop_helpers.compress.text_quant EXPORT_DIR     # add it to an existing export folder
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kpop_helpers.compress.quantize import _quiet_ort_quantizer
from kpop_helpers.edge.manifest import MANIFEST_NAME, TEXT_INT8_ONNX_FILE, TEXT_ONNX_FILE, read_manifest
from kpop_helpers.edge.text import OnnxTextEncoder
from kpop_helpers.editing.song import DEFAULT_STYLE, INTENSITY_WORDS
from kpop_helpers.errors import DataError
from kpop_helpers.prompts import DANCE_PROMPTS
from kpop_helpers.utils import atomic_write_text, commit_file

logger = logging.getLogger(__name__)

MIN_COSINE = 0.99
# What users type: the benchmark's first nine dance prompts, short and long ones, the song styles (intensity word
# + style), one-word prompts and one past the 256-token limit (truncation).
PARITY_PROMPTS = (
    *DANCE_PROMPTS[:9],
    "a person walks forward, turns around and waves",
    "salsa",
    "spin",
    "a dancer waves both arms",
    *(f"{word} {DEFAULT_STYLE}" for word in INTENSITY_WORDS),
    " ".join(["a powerful hip-hop groove with big arm waves"] * 40),
)


class TextQuantError(RuntimeError):
    """The int8 text tower's embeddings drift from fp32 beyond the threshold; nothing was written."""


@dataclass
class TextQuantResult:
    """Files written and the measured agreement of the int8 tower with fp32."""

    onnx: str
    data: str
    size_bytes: int
    min_cosine: float
    mean_cosine: float
    threshold: float
    prompts: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two [N, D] arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def quantize_text_onnx(export_dir: str | Path, *, tokenizer: str, max_length: int = 256, name: str = "minilm",
                       dim: int = 384, prompts: Sequence[str] = PARITY_PROMPTS, min_cosine: float = MIN_COSINE,
                       threads: int | None = None) -> TextQuantResult:
    """Write text_encoder_int8.onnx (+ .data) beside the fp32 tower in `export_dir` if it passes the cosine check."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    export_dir = Path(export_dir)
    src = export_dir / TEXT_ONNX_FILE
    if not src.is_file():
        raise DataError("file not found", path=src, expected="the fp32 text tower written by the exporter")
    data_name = f"{TEXT_INT8_ONNX_FILE}.data"
    with tempfile.TemporaryDirectory(prefix=".text_int8_", dir=export_dir) as tmp:
        staged = Path(tmp) / TEXT_INT8_ONNX_FILE
        with _quiet_ort_quantizer():
            quantize_dynamic(str(src), str(staged), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"], use_external_data_format=True)
        if not (Path(tmp) / data_name).is_file():
            raise TextQuantError(f"ONNX Runtime's quantiser did not write {data_name}; not written")
        encoders = [OnnxTextEncoder(path, export_dir / tokenizer, name=name, dim=dim, max_length=max_length,
                                    threads=threads) for path in (src, staged)]
        reference, quantized = (encoder.encode(list(prompts)) for encoder in encoders)
        del encoders
        cosine = cosine_rows(reference, quantized)
        worst = int(np.argmin(cosine))
        if not cosine[worst] >= min_cosine:
            raise TextQuantError(f"int8 text tower: cosine {cosine[worst]:.4f} < {min_cosine} for prompt "
                                 f"{prompts[worst][:60]!r}; not written")
        for file in (data_name, TEXT_INT8_ONNX_FILE):  # the graph last: it names the data file
            (Path(tmp) / file).chmod(0o644)  # the quantiser writes its data file private (0600)
            commit_file(Path(tmp) / file, export_dir / file)
    size = sum((export_dir / f).stat().st_size for f in (TEXT_INT8_ONNX_FILE, data_name))
    logger.info("int8 text tower: %.1f MB, cosine to fp32 >= %.4f over %d prompts", size / 1e6, cosine.min(),
                len(prompts))
    return TextQuantResult(onnx=TEXT_INT8_ONNX_FILE, data=data_name, size_bytes=size,
                           min_cosine=float(cosine.min()), mean_cosine=float(cosine.mean()),
                           threshold=float(min_cosine), prompts=len(prompts))


def add_int8_text(export_dir: str | Path, *, min_cosine: float = MIN_COSINE, threads: int | None = None) -> dict:
    """Quantise an existing export's text tower and record it in its manifest (text_encoder.int8); returns that."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    info = manifest["text_encoder"]
    if not info.get("onnx") or not info.get("tokenizer"):
        raise DataError("the export has no ONNX text tower to quantise", path=export_dir / MANIFEST_NAME,
                        field="text_encoder.onnx", expected="an export made with text_encoder 'onnx'")
    result = quantize_text_onnx(export_dir, tokenizer=info["tokenizer"], max_length=int(info.get("max_length", 256)),
                                name=str(info.get("name")), dim=int(info.get("dim", 384)), min_cosine=min_cosine,
                                threads=threads)
    info["int8"] = result.to_dict()
    atomic_write_text(export_dir / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return info["int8"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", type=Path, help="an export folder with an ONNX text tower")
    parser.add_argument("--min-cosine", type=float, default=MIN_COSINE, help="worst cosine to fp32 allowed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(json.dumps(add_int8_text(args.export_dir, min_cosine=args.min_cosine), indent=1))
    except (DataError, TextQuantError) as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
