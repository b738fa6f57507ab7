"""Training state that survives ``torch.load(weights_only=True)``: RNG capture/restore, encoding, secret scrubbing.

``weights_only=True`` only unpickles tensors, primitives and containers, so everything else is converted
on the way in and back on the way out:

- numpy arrays become ``{"__kpop__": "ndarray", "dtype", "shape", "data": tensor}`` (unsigned dtypes are
  stored bit-for-bit through a signed view, so uint32/uint64 RNG keys round-trip exactly);
- numpy scalars become Python numbers, paths strings, sets sorted lists, dataclasses dicts, and any
  object with a ``state_dict()`` (scheduler, GradScaler, EMA module) its state dict.

:func:`capture_rng_state` / :func:`restore_rng_state` cover Python ``random``, numpy's global
RandomState, an optional ``np.random.Generator``, torch CPU, optional ``torch.Generator``s and every CUDA
device when CUDA is initialised; after a restore the next draws are bit-identical to the original run.

:func:`export_weights` / :func:`load_exported_weights` write and read the weights-only artefact for the
compress/export stage: a ``.safetensors`` file (Mean/Std inside as ``_kpop_stats.mean``/``_kpop_stats.std``)
and a ``.json`` beside it with the model config and the file's sha256.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from kpop_helpers.checkpoints.atomic import atomic_write_json, file_digest
from kpop_helpers.errors import DataError
from kpop_helpers.utils import atomic_write_bytes, json_ready

_MARK = "__kpop__"
# Unsigned dtypes are stored through a same-width signed view: older torch builds cannot save uint32/64.
_SIGNED_VIEW = {np.dtype(np.uint16): np.int16, np.dtype(np.uint32): np.int32, np.dtype(np.uint64): np.int64}
_SECRET_KEY_RE = re.compile(
    r"(^|[_\-.\s])(api[_\-]?key|apikey|access[_\-]?key|token|secret|secret[_\-]?key|password|passwd|pwd|"
    r"credentials?|auth|authorization|private[_\-]?key)($|[_\-.\s])", re.IGNORECASE)
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
REDACTED = "***REDACTED***"
EXPORT_FORMAT = "kpop_weights"
STATS_PREFIX = "_kpop_stats."


# ---------------------------------------------------------------- weights_only-safe encoding


class StagingBuffers:
    """Reusable CPU copies of tensors for background saves: after the first snapshot nothing is allocated.

    Fresh 100s of MB cost page faults on every save; reusing buffers (pinned when the source is on a GPU,
    so device-to-host copies run at full speed) keeps a snapshot at memcpy speed. Call :meth:`finish`
    after a snapshot: it waits for pending GPU copies and forgets buffers that were not used.
    """

    def __init__(self) -> None:
        self._previous: dict[str, torch.Tensor] = {}
        self._current: dict[str, torch.Tensor] = {}
        self._cuda = False

    def copy(self, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """A CPU copy of ``tensor`` in the buffer reserved for ``key``."""
        source = tensor.detach()
        buffer = self._previous.pop(key, None)
        if buffer is None or buffer.shape != source.shape or buffer.dtype != source.dtype:
            pin = source.is_cuda and torch.cuda.is_available()
            buffer = torch.empty(source.shape, dtype=source.dtype, device="cpu", pin_memory=pin)
        buffer.copy_(source, non_blocking=source.is_cuda)
        self._cuda = self._cuda or source.is_cuda
        self._current[key] = buffer
        return buffer

    def finish(self) -> None:
        """Complete the snapshot: wait for GPU copies, keep only the buffers this snapshot used."""
        if self._cuda:
            torch.cuda.synchronize()
        self._previous, self._current, self._cuda = self._current, {}, False


def encode_state(obj: Any, where: str = "state", *, snapshot: bool | StagingBuffers = False) -> Any:
    """A copy of ``obj`` that ``torch.load(weights_only=True)`` can read; TypeError names the offending key.

    ``snapshot`` also copies every tensor to CPU memory (into reused :class:`StagingBuffers` when given),
    so training may go on changing the originals while a background thread writes the copy.
    """
    if isinstance(obj, torch.Tensor):
        if isinstance(snapshot, StagingBuffers):
            return snapshot.copy(where, obj)
        return obj.detach().to("cpu", copy=True) if snapshot else obj
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.dtype, torch.device)):
        return obj
    if isinstance(obj, np.ndarray):
        return _encode_array(obj, where)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Mapping):
        items = [(k if isinstance(k, (str, int)) else str(k), encode_state(v, f"{where}[{k!r}]", snapshot=snapshot))
                 for k, v in obj.items()]
        return OrderedDict(items) if isinstance(obj, OrderedDict) else dict(items)
    if isinstance(obj, (list, tuple)):
        values = [encode_state(v, f"{where}[{i}]", snapshot=snapshot) for i, v in enumerate(obj)]
        return tuple(values) if isinstance(obj, tuple) else values
    if isinstance(obj, (set, frozenset)):
        return [encode_state(v, where, snapshot=snapshot) for v in sorted(obj, key=repr)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return encode_state(dataclasses.asdict(obj), where, snapshot=snapshot)
    if callable(getattr(obj, "state_dict", None)):
        return encode_state(obj.state_dict(), where, snapshot=snapshot)
    raise TypeError(f"{where}: cannot store a {type(obj).__name__} in a weights_only checkpoint "
                    "(expected tensors, numpy arrays, numbers, strings, lists, dicts or objects with state_dict())")


def decode_state(obj: Any) -> Any:
    """Inverse of :func:`encode_state` for the tagged values (numpy arrays come back as numpy arrays)."""
    if isinstance(obj, Mapping):
        if obj.get(_MARK) == "ndarray":
            return _decode_array(obj)
        items = [(k, decode_state(v)) for k, v in obj.items()]
        return OrderedDict(items) if isinstance(obj, OrderedDict) else dict(items)
    if isinstance(obj, list):
        return [decode_state(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode_state(v) for v in obj)
    return obj


def _encode_array(array: np.ndarray, where: str) -> dict:
    if array.dtype.kind in "OUSV":
        if array.dtype.kind in "US":
            return {_MARK: "ndarray", "dtype": array.dtype.str, "shape": list(array.shape), "data": array.tolist()}
        raise TypeError(f"{where}: numpy arrays of dtype {array.dtype} cannot be stored (expected numeric or string)")
    contiguous = np.ascontiguousarray(array)
    view = contiguous.view(_SIGNED_VIEW[contiguous.dtype]) if contiguous.dtype in _SIGNED_VIEW else contiguous
    return {_MARK: "ndarray", "dtype": array.dtype.str, "shape": list(array.shape),
            "data": torch.from_numpy(view.copy())}


def _decode_array(record: Mapping) -> np.ndarray:
    dtype = np.dtype(record["dtype"])
    data = record["data"]
    if isinstance(data, torch.Tensor):
        array = data.cpu().numpy()
        array = array.view(dtype) if array.dtype != dtype else array
    else:
        array = np.asarray(data, dtype=dtype)
    return array.reshape(record["shape"])


# ---------------------------------------------------------------- RNG state


def capture_rng_state(numpy_generator: np.random.Generator | None = None, *,
                      torch_generators: Mapping[str, torch.Generator] | None = None) -> dict:
    """Every RNG's state as tensors/ints/lists/dicts/strings (safe for ``torch.load(weights_only=True)``)."""
    version, internal, gauss_next = random.getstate()
    legacy = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": _float_tensor(gauss_next)},
        "numpy": {"bit_generator": str(legacy["bit_generator"]), "state": encode_state(legacy["state"], "numpy"),
                  "has_gauss": int(legacy["has_gauss"]), "gauss": _float_tensor(legacy["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if numpy_generator is not None:
        state["numpy_generator"] = encode_state(numpy_generator.bit_generator.state, "numpy_generator")
    if torch_generators:
        state["torch_generators"] = {name: gen.get_state() for name, gen in torch_generators.items()}
    # Only when CUDA is already initialised: capturing must not create a CUDA context on its own.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping, numpy_generator: np.random.Generator | None = None, *,
                      torch_generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Put every RNG back where :func:`capture_rng_state` found it; the next draws repeat the original run."""
    py = state["python"]
    internal = py["state"].tolist() if isinstance(py["state"], torch.Tensor) else list(py["state"])
    random.setstate((int(py["version"]), tuple(int(x) for x in internal), _float_or_none(py["gauss_next"])))
    legacy = state["numpy"]
    np.random.set_state({"bit_generator": legacy["bit_generator"], "state": decode_state(legacy["state"]),
                         "has_gauss": int(legacy["has_gauss"]), "gauss": _float_or_none(legacy["gauss"]) or 0.0})
    torch.set_rng_state(_byte_tensor(state["torch"]))
    if numpy_generator is not None:
        if "numpy_generator" not in state:
            raise ValueError("restore_rng_state: a numpy Generator was passed but the state has no 'numpy_generator'")
        numpy_generator.bit_generator.state = decode_state(state["numpy_generator"])
    for name, gen in (torch_generators or {}).items():
        saved = state.get("torch_generators", {})
        if name not in saved:
            raise ValueError(f"restore_rng_state: no saved state for torch generator '{name}' "
                             f"(saved: {sorted(saved)})")
        gen.set_state(_byte_tensor(saved[name]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([_byte_tensor(s) for s in cuda])
        else:  # a different GPU count: seed what matches, keep going
            for index in range(min(len(cuda), torch.cuda.device_count())):
                torch.cuda.set_rng_state(_byte_tensor(cuda[index]), index)


def _float_tensor(value: float | None) -> torch.Tensor:
    """A float64 tensor holding ``value`` bit-exactly (empty for None): RNG state stays tensors/ints/strings."""
    return torch.tensor([] if value is None else [float(value)], dtype=torch.float64)


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.item()) if value.numel() else None
    return None if value is None else float(value)


def _byte_tensor(value: Any) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value, dtype=torch.uint8)
    return tensor.detach().to("cpu", torch.uint8).contiguous()


# ---------------------------------------------------------------- secrets


def is_secret_key(key: Any) -> bool:
    """True for config keys that usually hold credentials (api_key, hf_token, wandbApiKey, password, ...)."""
    if not isinstance(key, str):
        return False
    return _SECRET_KEY_RE.search(_CAMEL_RE.sub("_", key)) is not None


def known_secret_values(min_length: int = 8) -> list[str]:
    """Values of environment variables with secret-looking names (WANDB_API_KEY, HF_TOKEN, ...)."""
    values = {v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= min_length}
    return sorted(values, key=len, reverse=True)  # longest first: a secret containing another is cut whole


def scrub_secrets(obj: Any, *, extra_values: list[str] | tuple[str, ...] = ()) -> Any:
    """A copy with credential-like entries replaced by ``***REDACTED***``.

    A value is redacted when its key looks like a credential and the value is not a plain number, bool,
    None, tensor or array (``max_tokens: 77`` stays), and any string containing a known secret value
    (from the environment or ``extra_values``) has that value cut out.
    """
    values = [v for v in (*extra_values, *known_secret_values()) if v]
    return _scrub(obj, values)


def _scrub(obj: Any, values: list[str]) -> Any:
    if isinstance(obj, str):
        for secret in values:
            if secret in obj:
                obj = obj.replace(secret, REDACTED)
        return obj
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            harmless = value is None or isinstance(value, (bool, int, float, torch.Tensor, np.ndarray, np.number))
            out[key] = REDACTED if is_secret_key(key) and not harmless else _scrub(value, values)
        return OrderedDict(out) if isinstance(obj, OrderedDict) else out
    if isinstance(obj, list):
        return [_scrub(v, values) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_scrub(v, values) for v in obj)
    return obj


# ---------------------------------------------------------------- weights-only export


@dataclass
class ExportedWeights:
    """What :func:`load_exported_weights` returns."""

    state_dict: dict[str, torch.Tensor]
    config: dict
    mean: np.ndarray | None
    std: np.ndarray | None
    metadata: dict
    path: Path


def export_weights(model_or_state_dict: torch.nn.Module | Mapping[str, torch.Tensor], path: str | Path,
                   config: Mapping, *, mean: Any = None, std: Any = None, stats: Any = None,
                   metadata: Mapping | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write (EMA) weights as ``.safetensors`` (+ Mean/Std inside) and a ``.json`` config beside it; returns the path.

    ``stats`` may be any object with ``mean``/``std`` (e.g. ``MotionStats``); ``dtype`` casts floating tensors
    (e.g. torch.float16). The JSON holds ``config``, ``metadata``, the weights' sha256 and size.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    module = getattr(model_or_state_dict, "_orig_mod", model_or_state_dict)
    source = module if isinstance(module, Mapping) else module.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"export_weights: state entry '{key}' is a {type(value).__name__}, expected a tensor")
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[str(key)] = value.contiguous().clone()  # clone: safetensors refuses shared storage
    if stats is not None:
        mean, std = stats.mean, stats.std
    for name, array in (("mean", mean), ("std", std)):
        if array is not None:
            tensors[f"{STATS_PREFIX}{name}"] = torch.as_tensor(np.asarray(array, dtype=np.float32)).clone()
    config = scrub_secrets(json_ready(dict(config)))
    metadata = scrub_secrets(json_ready(dict(metadata or {})))
    header = {"format": EXPORT_FORMAT, "config": json.dumps(config, sort_keys=True),
              "metadata": json.dumps(metadata, sort_keys=True)}
    digest = atomic_write_bytes(path, safetensors_bytes(tensors, metadata=header))
    atomic_write_json(path.with_suffix(".json"), {
        "format": EXPORT_FORMAT, "weights": path.name, "config": config, "metadata": metadata,
        "sha256": digest.sha256, "size": digest.size, "has_stats": mean is not None,
        "dtype": None if dtype is None else str(dtype).replace("torch.", "")})
    return path


def load_exported_weights(path: str | Path, device: str = "cpu") -> ExportedWeights:
    """Read an :func:`export_weights` file (safetensors only, never pickle); checks the sha256 when the JSON exists."""
    path = Path(path)
    beside = path.with_suffix(".json")
    if beside.is_file():
        expected = json.loads(beside.read_text(encoding="utf-8")).get("sha256")
        actual = file_digest(path).sha256
        if expected and actual != expected:
            raise DataError("weights file does not match its JSON (corrupted or replaced)", path=path,
                            field="sha256", expected=f"{expected[:16]}...")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path), device=device)
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise DataError(f"cannot read safetensors: {exc}", path=path) from exc
    if header.get("format") != EXPORT_FORMAT:
        raise DataError("not a kpop_helpers weights export", path=path, field="format", expected=EXPORT_FORMAT)
    mean = tensors.pop(f"{STATS_PREFIX}mean", None)
    std = tensors.pop(f"{STATS_PREFIX}std", None)
    return ExportedWeights(state_dict=tensors, config=json.loads(header.get("config", "{}")),
                           mean=None if mean is None else mean.cpu().numpy(),
                           std=None if std is None else std.cpu().numpy(),
                           metadata=json.loads(header.get("metadata", "{}")), path=path)

