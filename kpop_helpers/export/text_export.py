"""The text side of an edge export: the MiniLM tower as ONNX (+ tokenizer.json) or precomputed embeddings.

The ONNX graph contains BERT, mean pooling over real tokens and L2 normalisation, i.e. exactly what
`kpop_helpers.text.MiniLMEncoder.encode` computes; the edge side tokenises with the `tokenizers` package
(no transformers, no torch). Weights go to `text_encoder.onnx.data` beside the graph (ONNX external data):
ONNX Runtime then maps them instead of copying, which keeps the edge runtime's peak memory low.
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kpop_helpers.edge.manifest import (
    PROMPT_EMBEDDINGS_FILE, TEXT_INPUT_NAMES, TEXT_ONNX_FILE, TEXT_OUTPUT_NAME, TOKENIZER_FILE,
)
from kpop_helpers.errors import DataError
from kpop_helpers.export.artifacts import quiet_export, strip_debug_metadata
from kpop_helpers.export.parity import FP32_ATOL
from kpop_helpers.utils import atomic_write_bytes, commit_file

logger = logging.getLogger(__name__)

# Prompts of different lengths (padding inside a batch) and one longer than the 256-token limit (truncation).
PARITY_PROMPTS = ("a dancer waves both arms", "a cute aegyo dance with small bounces, finger hearts and a wink",
                  "spin", " ".join(["a powerful hip-hop groove with big arm waves"] * 40))


class TextExportError(RuntimeError):
    """The exported text encoder disagrees with PyTorch; nothing was written."""


@dataclass
class TextExportResult:
    """Files written and the measured parity of the ONNX text tower."""

    name: str
    dim: int
    onnx: str
    data: str
    tokenizer: str
    max_length: int
    size_bytes: int
    max_abs: float
    atol: float
    tokens_identical: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


class SentenceTower(nn.Module):
    """BERT -> mean pooling over attention_mask -> L2 normalisation (sentence-transformers' MiniLM head)."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)


def _edge_tokenize(tokenizer_file: Path, prompts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length)
    encodings = tokenizer.encode_batch(list(prompts))
    return (np.array([e.ids for e in encodings], dtype=np.int64),
            np.array([e.attention_mask for e in encodings], dtype=np.int64))


def export_text_encoder(encoder: Any, out_dir: str | Path, *, opset: int = 18, atol: float = FP32_ATOL,
                        threads: int | None = None) -> TextExportResult:
    """Export a MiniLM-type encoder (HF BERT + tokenizer.json) to `out_dir`, checking parity before writing."""
    from kpop_helpers.edge.text import make_session
    from kpop_helpers.text.minilm import MINILM_MAX_SEQ_LENGTH

    model, hf_tokenizer, model_dir = (getattr(encoder, k, None) for k in ("model", "tokenizer", "model_dir"))
    tokenizer_file = Path(model_dir) / TOKENIZER_FILE if model_dir is not None else None
    if model is None or hf_tokenizer is None or tokenizer_file is None or not tokenizer_file.is_file():
        raise DataError(f"cannot export text encoder {getattr(encoder, 'name', encoder)!r} to ONNX",
                        field="export.text_encoder",
                        expected="the 'minilm' encoder (HF BERT + tokenizer.json), or text_encoder 'precomputed'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    max_length = MINILM_MAX_SEQ_LENGTH
    tower = SentenceTower(model).eval()
    example = hf_tokenizer(list(PARITY_PROMPTS[:2]), padding=True, return_tensors="pt")
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=max_length)
    with tempfile.TemporaryDirectory(prefix=".text_export_", dir=out_dir) as tmp:
        tmp_onnx = Path(tmp) / TEXT_ONNX_FILE
        with quiet_export():
            program = torch.onnx.export(tower, (example["input_ids"], example["attention_mask"]), dynamo=True,
                                        input_names=list(TEXT_INPUT_NAMES), output_names=[TEXT_OUTPUT_NAME],
                                        dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
                                        opset_version=opset, verbose=False)
        strip_debug_metadata(program)
        program.save(str(tmp_onnx), external_data=True)
        data_name = f"{TEXT_ONNX_FILE}.data"
        shutil.copyfile(tokenizer_file, Path(tmp) / TOKENIZER_FILE)

        ids, mask = _edge_tokenize(Path(tmp) / TOKENIZER_FILE, PARITY_PROMPTS, max_length)
        reference = hf_tokenizer(list(PARITY_PROMPTS), padding=True, truncation=True, max_length=max_length,
                                 return_tensors="np")
        tokens_identical = bool(np.array_equal(ids, reference["input_ids"])
                                and np.array_equal(mask, reference["attention_mask"]))
        session = make_session(tmp_onnx, threads)
        got = session.run(None, {TEXT_INPUT_NAMES[0]: ids, TEXT_INPUT_NAMES[1]: mask})[0]
        single = session.run(None, {TEXT_INPUT_NAMES[0]: ids[2:3, : int(mask[2].sum())],
                                    TEXT_INPUT_NAMES[1]: mask[2:3, : int(mask[2].sum())]})[0]
        del session
        expected = encoder.encode(list(PARITY_PROMPTS)).cpu().numpy()
        max_abs = float(max(np.abs(got - expected).max(), np.abs(single[0] - expected[2]).max()))
        if not tokens_identical or not max_abs <= atol:
            raise TextExportError(f"ONNX text encoder failed parity: max abs {max_abs:.3e} (tolerance {atol:.1e}), "
                                  f"tokens identical to transformers: {tokens_identical}; not written")
        for name in (data_name, TOKENIZER_FILE, TEXT_ONNX_FILE):  # the graph last: it names the data file
            commit_file(Path(tmp) / name, out_dir / name)
    size = (out_dir / TEXT_ONNX_FILE).stat().st_size + (out_dir / data_name).stat().st_size
    logger.info("text encoder exported: %s (%.1f MB), parity max abs %.2e", out_dir / TEXT_ONNX_FILE, size / 1e6,
                max_abs)
    return TextExportResult(name=str(encoder.name), dim=int(encoder.dim), onnx=TEXT_ONNX_FILE, data=data_name,
                            tokenizer=TOKENIZER_FILE, max_length=max_length, size_bytes=size, max_abs=max_abs,
                            atol=float(atol), tokens_identical=tokens_identical)


def save_prompt_embeddings(encoder: Any, prompts: Sequence[str], out_dir: str | Path) -> Path:
    """prompt_embeddings.npz: `prompts` (unicode) and `embeddings` [N, dim] float32, for a torch-free edge."""
    prompts = list(dict.fromkeys(str(p) for p in prompts))
    if not prompts:
        raise DataError("no prompts to precompute", field="export.prompts", expected="a non-empty list of prompts")
    embeddings = encoder.encode(prompts).detach().cpu().numpy().astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, prompts=np.array(prompts, dtype=str), embeddings=embeddings)
    path = Path(out_dir) / PROMPT_EMBEDDINGS_FILE
    atomic_write_bytes(path, buffer.getvalue())
    return path
