"""A tiny array-namespace shim: the sampling steps run unchanged on numpy arrays and on torch tensors.

Why a shim and not `array-api-compat`: the steps need only a handful of operations beyond the arithmetic
operators that numpy and torch already share (sqrt, exp, a float32 cast, a copy of a numpy table in
the array's own library and device, and for long dances concat / zeros / permute). array-api-compat is not installed here and would become a runtime
dependency of the edge install (a Raspberry-Pi-class device) for those few calls, and its torch wrapper
imports torch on first use of a tensor anyway. The library is chosen from the array's type; torch is
imported lazily, only once a torch tensor has reached the core, so the edge runtime stays torch-free.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # a numpy array or a torch tensor (torch is never imported at module level)


def is_torch(x: Any) -> bool:
    """True for a torch tensor, decided from its type so that torch need not be imported."""
    return type(x).__module__.partition(".")[0] == "torch"


@dataclass(frozen=True)
class Namespace:
    """The operations the sampling core needs, bound to one array library."""

    name: str
    sqrt: Callable[[Array], Array]
    exp: Callable[[Array], Array]
    # values (numpy or same-library array) -> an array of `like`'s library and device, in `dtype` ("float32"/...)
    asarray: Callable[[Any, Array, str], Array]
    float32: Callable[[Array], Array]
    concat: Callable[[list[Array]], Array]  # along the first axis
    zeros: Callable[[tuple[int, ...], Array], Array]  # float32 zeros of a shape, in `like`'s library and device
    permute: Callable[[Array, tuple[int, ...]], Array]  # numpy's transpose(axes)

    def device_key(self, like: Array) -> tuple[str, str]:
        """A cache key for tables copied to `like`'s library and device."""
        return self.name, str(getattr(like, "device", "cpu"))


def _numpy_asarray(values: Any, like: Array, dtype: str) -> np.ndarray:
    return np.asarray(to_numpy(values), dtype=dtype)


NUMPY = Namespace(name="numpy", sqrt=np.sqrt, exp=np.exp, asarray=_numpy_asarray,
                  float32=lambda x: np.asarray(x).astype(np.float32), concat=np.concatenate,
                  zeros=lambda shape, like: np.zeros(shape, dtype=np.float32), permute=np.transpose)


@functools.lru_cache(maxsize=1)
def _torch_namespace() -> Namespace:
    import torch

    def asarray(values: Any, like: Array, dtype: str) -> Array:
        return torch.as_tensor(values).to(device=like.device, dtype=getattr(torch, dtype))

    return Namespace(name="torch", sqrt=torch.sqrt, exp=torch.exp, asarray=asarray,
                     float32=lambda x: x.to(torch.float32), concat=torch.cat,
                     zeros=lambda shape, like: torch.zeros(shape, dtype=torch.float32, device=like.device),
                     permute=lambda x, axes: x.permute(*axes))


def namespace(x: Array) -> Namespace:
    """The namespace of x's library: torch for a tensor, numpy for anything else."""
    return _torch_namespace() if is_torch(x) else NUMPY


def to_numpy(x: Any) -> np.ndarray:
    """x as a numpy array (a torch tensor is detached and copied to the CPU)."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def row_shape(rows: int, ndim: int) -> tuple[int, ...]:
    """[rows, 1, 1, ...] with ndim entries: a per-row value broadcast over a sample's other axes."""
    return (rows, *([1] * (ndim - 1)))
