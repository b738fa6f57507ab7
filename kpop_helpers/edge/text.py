"""Prompt embeddings on the edge without torch: the ONNX text tower + `tokenizers`, or precomputed vectors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.edge.manifest import MANIFEST_NAME, TEXT_INPUT_NAMES
from kpop_helpers.errors import DataError

logger = logging.getLogger(__name__)


def make_session(path: str | Path, threads: int | None = None, *, lean_memory: bool = False) -> Any:
    """An ONNX Runtime CPU session with `threads` intra-op threads (None: ORT's default).

    lean_memory: no memory arena and no memory-pattern pre-allocation. For the denoiser (dynamic frame
    count) this lowered the edge runtime's peak RSS by 20-30 MB (official-size int8 model, 196 frames, 2 threads);
    its step took the same time when first measured and 8 % longer on 2026-12-05 (66 vs 61 ms, guided batch).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if lean_memory:
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxTextEncoder:
    """Tokenizer (`tokenizers`, from tokenizer.json) + the exported text tower (pooling and L2 norm inside)."""

    def __init__(self, onnx_path: str | Path, tokenizer_path: str | Path, *, name: str, dim: int,
                 max_length: int = 256, threads: int | None = None):
        from tokenizers import Tokenizer

        self.name, self.dim, self.max_length = name, int(dim), int(max_length)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # tokenizer.json ships fixed 128-token padding; pad to the longest prompt and truncate like the
        # PyTorch encoder (max_length tokens), so both see identical ids.
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        self.tokenizer.enable_truncation(self.max_length)
        self.path = Path(onnx_path)
        self.session = make_session(onnx_path, threads)

    def encode(self, prompts: list[str]) -> np.ndarray:
        """Embeddings [B, dim] float32."""
        encodings = self.tokenizer.encode_batch(list(prompts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        out = self.session.run(None, {TEXT_INPUT_NAMES[0]: ids, TEXT_INPUT_NAMES[1]: mask})[0]
        return np.asarray(out, dtype=np.float32)


class PrecomputedEmbeddings:
    """Embeddings computed at export time for a fixed prompt list (prompt_embeddings.npz: prompts, embeddings)."""

    def __init__(self, npz_path: str | Path, *, name: str, dim: int):
        self.name, self.dim, self.path = name, int(dim), Path(npz_path)
        with np.load(self.path, allow_pickle=False) as data:
            prompts, embeddings = [str(p) for p in data["prompts"]], np.asarray(data["embeddings"], np.float32)
        if embeddings.shape != (len(prompts), self.dim):
            raise DataError(f"embeddings have shape {embeddings.shape} for {len(prompts)} prompts", path=self.path,
                            field="embeddings", expected=f"({len(prompts)}, {self.dim})")
        self.table = dict(zip(prompts, embeddings))

    def encode(self, prompts: list[str]) -> np.ndarray:
        """Embeddings [B, dim]; DataError for a prompt that was not precomputed."""
        unknown = [p for p in prompts if p not in self.table]
        if unknown:
            raise DataError(f"prompts {unknown[:3]} were not precomputed at export time", path=self.path,
                            field="prompts", expected="one of the exported prompts (or export with "
                                                      "text_encoder 'onnx' to embed any prompt)")
        return np.stack([self.table[p] for p in prompts]).astype(np.float32)


class ChainedEncoder:
    """Precomputed embeddings where available, the ONNX tower for the rest."""

    def __init__(self, precomputed: PrecomputedEmbeddings, fallback: OnnxTextEncoder):
        self.precomputed, self.fallback = precomputed, fallback
        self.name, self.dim, self.path = fallback.name, fallback.dim, fallback.path

    def encode(self, prompts: list[str]) -> np.ndarray:
        """Embeddings [B, dim], one ONNX call for all prompts that were not precomputed."""
        missing = [p for p in prompts if p not in self.precomputed.table]
        computed = dict(zip(missing, self.fallback.encode(missing))) if missing else {}
        return np.stack([self.precomputed.table.get(p, computed.get(p)) for p in prompts]).astype(np.float32)


TEXT_PRECISIONS = ("auto", "int8", "fp32")


def text_tower_file(export_dir: Path, info: dict[str, Any], precision: str = "auto") -> str | None:
    """The ONNX text tower to load: the int8 one when the export has it ("auto", "int8"), else fp32; None if none."""
    if precision not in TEXT_PRECISIONS:
        raise DataError(f"text_precision={precision!r}", field="text_precision", expected=f"one of {TEXT_PRECISIONS}")
    int8 = info.get("int8") if isinstance(info.get("int8"), dict) else {}
    if precision != "fp32" and int8.get("onnx"):
        return str(int8["onnx"])
    if precision == "int8":
        raise DataError("the export has no int8 text tower", path=export_dir / MANIFEST_NAME, field="text_encoder.int8",
                        expected="run `python -m kpop_helpers.compress.text_quant EXPORT_DIR`, or text_precision "
                                 "'fp32'")
    return info.get("onnx")


def text_encoder_from_manifest(export_dir: Path, manifest: dict[str, Any], threads: int | None = None,
                               precision: str = "auto"):
    """The text encoder the manifest describes (ONNX, precomputed, or both); DataError if it has none.

    precision: "auto" (the int8 tower when the export has one), "int8" or "fp32".
    """
    info = manifest["text_encoder"]
    name, dim = str(info.get("name")), int(info.get("dim", 0))
    onnx_file, tokenizer_file = text_tower_file(export_dir, info, precision), info.get("tokenizer")
    npz_file = info.get("prompt_embeddings")
    tower = None
    if onnx_file and tokenizer_file:
        tower = OnnxTextEncoder(export_dir / onnx_file, export_dir / tokenizer_file, name=name, dim=dim,
                                max_length=int(info.get("max_length", 256)), threads=threads)
    table = PrecomputedEmbeddings(export_dir / npz_file, name=name, dim=dim) if npz_file else None
    if tower is not None and table is not None:
        return ChainedEncoder(table, tower)
    if tower is not None or table is not None:
        return tower or table
    raise DataError("the export has no text encoder and no precomputed prompt embeddings",
                    path=export_dir / MANIFEST_NAME, field="text_encoder",
                    expected="export with text_encoder 'onnx' or 'precomputed' (or pass text_emb= yourself)")
