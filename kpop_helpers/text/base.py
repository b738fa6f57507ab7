"""The text-encoder interface shared by every encoder, with an in-memory per-prompt embedding cache."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from kpop_helpers.errors import DataError


class TextEncoderUnavailable(RuntimeError):
    """An encoder's weights or tokenizer cannot be found (offline, not installed); the message says how to fix it."""


class TextEncoder(ABC):
    """Maps prompts to fixed-width float32 embeddings: `encode(list[str]) -> Tensor[B, dim]`.

    Embeddings are cached per prompt in memory (LRU, `max_cache` entries), so the same captions seen
    every epoch or every sampling call are encoded once.
    """

    name: str = "base"
    dim: int = 0

    def __init__(self, *, device: str | torch.device = "cpu", batch_size: int = 64, max_cache: int = 100_000):
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.max_cache = int(max_cache)
        self._cache: OrderedDict[str, Tensor] = OrderedDict()

    @abstractmethod
    def _encode_batch(self, texts: list[str]) -> Tensor:
        """Embeddings [len(texts), dim] float32 of one batch of distinct prompts (no caching here)."""

    def encode(self, texts: Sequence[str] | str) -> Tensor:
        """Embeddings [B, dim] float32 on `self.device`, one row per prompt (a bare string counts as one)."""
        texts = self._check_texts(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        chunks = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        for chunk in tqdm(chunks, desc=f"encode text ({self.name})", disable=len(chunks) < 4, leave=False):
            for text, row in zip(chunk, self._encode_rows(chunk)):
                self._cache[text] = row.clone()
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        out = []
        for text in texts:
            row = self._cache.get(text)
            if row is None:  # evicted while encoding a batch larger than the cache
                row = self._encode_rows([text])[0]
            else:
                self._cache.move_to_end(text)
            out.append(row)
        self._trim_cache()
        return torch.stack(out)

    __call__ = encode

    def _encode_rows(self, chunk: list[str]) -> Tensor:
        # no_grad, not inference_mode: inference tensors could not enter autograd later (training).
        with torch.no_grad():
            rows = self._encode_batch(chunk).detach().to(device=self.device, dtype=torch.float32)
        if tuple(rows.shape) != (len(chunk), self.dim):
            raise RuntimeError(f"{type(self).__name__} returned {tuple(rows.shape)} for {len(chunk)} prompts, "
                               f"expected ({len(chunk)}, {self.dim})")
        return rows

    def _check_texts(self, texts: Sequence[str] | str) -> list[str]:
        if isinstance(texts, str):
            return [texts]
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise DataError(f"entries {bad[:10]} are not strings (e.g. {type(texts[bad[0]]).__name__})",
                            field="texts", expected="a list of prompt strings")
        return texts

    def _trim_cache(self) -> None:
        while len(self._cache) > self.max_cache:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self._cache.clear()

    @property
    def cache_size(self) -> int:
        """Number of cached prompts."""
        return len(self._cache)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={self.device}, cached={self.cache_size})"


_FACTORIES: dict[str, Callable[..., TextEncoder]] = {}


def register_text_encoder(name: str, factory: Callable[..., TextEncoder]) -> None:
    """Make `get_text_encoder(name, **kw)` call `factory(**kw)`."""
    _FACTORIES[name] = factory


def available_text_encoders() -> list[str]:
    """Names accepted by get_text_encoder."""
    return sorted(_FACTORIES)


def get_text_encoder(name: str, **kwargs: Any) -> TextEncoder:
    """A text encoder by name: "minilm" (384-d, offline) or "clip" (512-d CLIP ViT-B/32 text tower, as MDM)."""
    if name not in _FACTORIES:
        raise DataError(f"unknown text encoder {name!r}", field="text_encoder",
                        expected=f"one of {available_text_encoders()}")
    return _FACTORIES[name](**kwargs)
