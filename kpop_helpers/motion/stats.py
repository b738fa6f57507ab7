"""Normalisation statistics of HumanML3D features: `MotionStats` (Mean.npy / Std.npy) and `compute_stats`.

MDM consumes ``(features - mean) / std``. The official statistics come from HumanML3D's
`cal_mean_variance.ipynb`: a per-dimension mean, and a standard deviation that is averaged within each
feature block (root angular velocity, root linear velocity, root height, ric, 6D rotations, local
velocities, foot contacts), so that every dimension of a block is scaled alike. The published files have no
extra bias factor (the `/ 1.0` in that notebook); see `FEATURE_SLICES` for the blocks.

This module is numpy-only at import time; torch tensors are handled when given (torch is imported lazily).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_DIM, FEATURE_SLICES

MEAN_FILE = "Mean.npy"
STD_FILE = "Std.npy"


def _is_torch_tensor(value: Any) -> bool:
    """True for a torch.Tensor, without importing torch when the caller never did."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(value, torch_module.Tensor)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Write a plain .npy file atomically (temp file in the same folder, fsync, os.replace)."""
    import io

    from kpop_helpers.utils import atomic_write_bytes

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def _load_vector(path: Path, field: str, dim: int | None) -> np.ndarray:
    """One 1-D finite float vector from a .npy file, or DataError naming the file."""
    if not path.is_file():
        raise DataError("file not found", path=path, field=field, expected=f"a .npy file with the {field} vector")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f"cannot read as a plain .npy array ({error})", path=path, field=field,
                        expected="a numeric .npy file (no pickled objects)") from error
    expected = f"a finite float vector of shape ({dim},)" if dim else "a finite 1-D float vector"
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu" or array.ndim != 1:
        raise DataError(f"got shape {getattr(array, 'shape', None)}, dtype {getattr(array, 'dtype', None)}",
                        path=path, field=field, expected=expected)
    if (dim is not None and array.shape != (dim,)) or not np.isfinite(array).all():
        raise DataError(f"got shape {array.shape} with {int((~np.isfinite(array)).sum())} non-finite values",
                        path=path, field=field, expected=expected)
    return array.astype(np.float32)


@dataclass
class MotionStats:
    """Per-dimension feature mean and std [D] (float32); normalises numpy arrays and torch tensors."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.std = np.asarray(self.std, dtype=np.float32)
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise DataError(f"mean has shape {self.mean.shape}, std has shape {self.std.shape}", field="mean/std",
                            expected="two 1-D vectors of the same length")
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all()):
            raise DataError("non-finite values", field="mean/std", expected="finite statistics")
        if (self.std <= 0).any():
            bad = np.flatnonzero(self.std <= 0)
            raise DataError(f"std is <= 0 at dimensions {bad[:10].tolist()}", field="std",
                            expected="a strictly positive std (division by zero otherwise)")

    @property
    def dim(self) -> int:
        """Number of feature dimensions (263 for HumanML3D)."""
        return int(self.mean.shape[0])

    def _broadcast(self, x: Any, axis: int) -> tuple[Any, Any]:
        """Mean and std shaped to broadcast against x along `axis`, as numpy or torch like x."""
        ndim = x.ndim
        if not -ndim <= axis < ndim or x.shape[axis] != self.dim:
            raise DataError(f"got shape {tuple(x.shape)}, feature axis {axis}", field="features",
                            expected=f"{self.dim} features on axis {axis} (e.g. axis=1 for MDM's [B, {self.dim}, 1, T])")
        shape = [1] * ndim
        shape[axis] = self.dim
        if _is_torch_tensor(x):
            import torch

            dtype = x.dtype if x.is_floating_point() else torch.float32
            mean = torch.as_tensor(self.mean, dtype=dtype, device=x.device).reshape(shape)
            std = torch.as_tensor(self.std, dtype=dtype, device=x.device).reshape(shape)
            return mean, std
        dtype = x.dtype if x.dtype.kind == "f" else np.float32
        return self.mean.astype(dtype).reshape(shape), self.std.astype(dtype).reshape(shape)

    def normalize(self, x: Any, axis: int = -1) -> Any:
        """(x - mean) / std with the features on `axis` (-1, or 1 for MDM's [B, 263, 1, T])."""
        x = x if _is_torch_tensor(x) else np.asarray(x)
        mean, std = self._broadcast(x, axis)
        return (x - mean) / std

    def denormalize(self, x: Any, axis: int = -1) -> Any:
        """x * std + mean with the features on `axis`; the inverse of `normalize`."""
        x = x if _is_torch_tensor(x) else np.asarray(x)
        mean, std = self._broadcast(x, axis)
        return x * std + mean

    def save(self, directory: str | Path) -> Path:
        """Write Mean.npy and Std.npy (plain float32 .npy, each atomically) into `directory`; returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_save_npy(directory / MEAN_FILE, self.mean.astype(np.float32))
        _atomic_save_npy(directory / STD_FILE, self.std.astype(np.float32))
        return directory

    @classmethod
    def load(cls, location: str | Path | Sequence[str | Path], *, dim: int | None = FEATURE_DIM) -> MotionStats:
        """Load from a folder holding Mean.npy/Std.npy, or from a (mean_path, std_path) pair."""
        if isinstance(location, (str, os.PathLike)):
            folder = Path(location)
            if not folder.is_dir():
                raise DataError("folder not found", path=folder, field="stats",
                                expected=f"a folder with {MEAN_FILE} and {STD_FILE}")
            mean_path, std_path = folder / MEAN_FILE, folder / STD_FILE
        else:
            paths = list(location)
            if len(paths) != 2:
                raise DataError(f"got {len(paths)} paths", field="stats", expected="(mean_path, std_path)")
            mean_path, std_path = Path(paths[0]), Path(paths[1])
        mean = _load_vector(mean_path, "mean", dim)
        std = _load_vector(std_path, "std", dim)
        if mean.shape != std.shape:
            raise DataError(f"mean has shape {mean.shape}, std has shape {std.shape}", path=std_path, field="std",
                            expected="the same shape as the mean")
        if (std <= 0).any():
            raise DataError(f"std is <= 0 at dimensions {np.flatnonzero(std <= 0)[:10].tolist()}", path=std_path,
                            field="std", expected="a strictly positive std")
        return cls(mean=mean, std=std)


def compute_stats(
    features_list: Iterable[np.ndarray],
    *,
    on_nan: str = "raise",
    std_floor: float | None = None,
) -> MotionStats:
    """Mean and block-averaged std of feature arrays [T_i, 263], as HumanML3D's cal_mean_variance computes them.

    on_nan="skip" drops clips containing NaN (as the notebook does); "raise" raises DataError naming the clip.
    A feature block with zero spread (e.g. contacts that are always 1 in a tiny set) raises DataError unless
    `std_floor` is given, in which case block stds below it are raised to it.
    """
    if on_nan not in ("raise", "skip"):
        raise ValueError(f"on_nan must be 'raise' or 'skip', got {on_nan!r}")
    kept: list[np.ndarray] = []
    for index, features in enumerate(features_list):
        array = np.asarray(features)
        if array.ndim != 2 or array.shape[1] != FEATURE_DIM or array.dtype.kind not in "fiu":
            raise DataError(f"got shape {array.shape}, dtype {array.dtype}", record=index, field="features",
                            expected=f"[T, {FEATURE_DIM}] HumanML3D features")
        if not np.isfinite(array).all():
            if on_nan == "skip":
                continue
            raise DataError("contains NaN or inf", record=index, field="features", expected="finite features")
        kept.append(array.astype(np.float64))
    data = np.concatenate(kept, axis=0) if kept else np.zeros((0, FEATURE_DIM))
    if len(data) < 2:
        raise DataError(f"only {len(data)} usable feature rows", field="features",
                        expected="at least 2 finite feature rows in total")
    mean = data.mean(axis=0)
    per_dim_std = data.std(axis=0)
    std = np.empty_like(per_dim_std)
    for block, columns in FEATURE_SLICES.items():
        value = per_dim_std[columns].mean()
        if std_floor is not None:
            value = max(value, std_floor)
        elif value <= 0:
            raise DataError(f"block '{block}' (columns {columns.start}:{columns.stop}) has zero spread",
                            field="features", expected="varied data, or pass std_floor=... to compute_stats")
        std[columns] = value
    return MotionStats(mean=mean.astype(np.float32), std=std.astype(np.float32))
