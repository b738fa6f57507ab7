"""int8 and fp16 compression of the denoiser: ONNX Runtime dynamic int8 (with a saturation guard), PyTorch
dynamic int8, and fp16 weight storage for ONNX.

Why the guard: x86 CPUs without VNNI run ORT's u8 x s8 products with `vpmaddubsw`, which adds two products
into a saturating int16; full-range 8-bit weights can overflow it and the error explodes (a relative error
of 0.26 was reported for plain QInt8 on an AVX2-only machine). 7-bit weights (`reduce_range=True`) cannot overflow,
and per-channel scales win back the precision. CPUs with VNNI (e.g. AVX512-VNNI / AVX-VNNI) accumulate in
int32 and never saturate, so there every setting is accurate; the guard measures rather than guesses.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from kpop_helpers.compress.errors import denoiser_error
from kpop_helpers.runners import onnx_runner, parity_inputs

logger = logging.getLogger(__name__)

DEFAULT_MAX_REL_RMS = 0.1
SAFE_SETTINGS = {"per_channel": True, "reduce_range": True}


class QuantizationError(RuntimeError):
    """Quantised model too far from fp32 even with the safe settings; nothing was written."""


@dataclass
class Int8Result:
    """The written int8 model, the settings that produced it and the measured error vs the fp32 ONNX model."""

    path: str
    per_channel: bool
    reduce_range: bool
    max_abs: float
    rel_rms: float
    max_rel_rms: float
    fell_back: bool
    size_bytes: int
    fp32_size_bytes: int
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def size_ratio(self) -> float:
        return self.size_bytes / self.fp32_size_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**asdict(self), "size_ratio": self.size_ratio}


class _DropMessages(logging.Filter):
    """Hide ORT's 'consider pre-processing' hint (our graphs come straight from the dynamo exporter) and its
    per-tensor notes on dynamically quantised activations (that is what dynamic quantisation means)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "pre-processing before quantization" not in message and "not specified" not in message


@contextlib.contextmanager
def _quiet_ort_quantizer() -> Iterator[None]:
    root, drop = logging.getLogger(), _DropMessages()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


# Float tables left after int8 (the sinusoid table read by Gather/Slice, which dynamic quantisation does not
# touch) are stored as fp16 from this size up: 1 MB of the official model's 20 MB int8 file.
FP16_TABLE_MIN_ELEMENTS = 16384


def _quantize_once(src: Path, dst: Path, per_channel: bool, reduce_range: bool, fp16_tables: bool) -> int:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_ort_quantizer():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         reduce_range=reduce_range)
    if not fp16_tables:
        return 0
    model = onnx.load(str(dst))
    converted, _ = cast_initializers_fp16(model, min_elements=FP16_TABLE_MIN_ELEMENTS)
    if converted:
        onnx.save(model, str(dst))
    return converted


def onnx_size_bytes(path: str | Path) -> int:
    """Bytes of an ONNX model: the graph file plus its external data beside it (`<name>.data`), when any."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def write_with_external_data(src: str | Path, dst: str | Path) -> Path:
    """Save the model at `src` as `dst` with its weights in `<dst name>.data` beside it; `src` is removed.

    Why: ONNX Runtime maps external weights from the file instead of holding a parsed copy of the whole
    model, which lowers the edge runtime's peak memory (measured: about 10 MiB for the int8 denoiser of the
    official size). Both files are staged and then renamed, the data first: the graph always names whole data.
    """
    import onnx

    src, dst = Path(src), Path(dst)
    data_name = dst.name + ".data"
    stage = dst.with_name(f".{dst.name}.{os.getpid()}.stage")
    stage.mkdir(exist_ok=True)
    try:
        onnx.save_model(onnx.load(str(src)), str(stage / dst.name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name, size_threshold=1024)
        for name in (data_name, dst.name):
            staged = stage / name
            staged.chmod(0o644)  # onnx writes its data file 0600; an export is meant to be copied and shared
            with open(staged, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(staged, dst.with_name(name))
        Path(src).unlink()
    finally:
        for leftover in stage.glob("*"):
            leftover.unlink()
        stage.rmdir()
    return dst


def quantize_onnx_int8(src: str | Path, dst: str | Path, cfg: Any, *, per_channel: bool = True,
                       reduce_range: bool = True, max_rel_rms: float = DEFAULT_MAX_REL_RMS, fallback: bool = True,
                       fp16_tables: bool = True, inputs: Sequence[tuple[np.ndarray, ...]] | None = None,
                       threads: int | None = None) -> Int8Result:
    """ONNX Runtime dynamic int8 (QInt8 weights) of the fp32 denoiser at `src`, checked before it is written.

    Written as `dst` plus `<dst name>.data` (the weights as ONNX external data, see `write_with_external_data`).

    The quantised and fp32 models run on the same inputs; if the relative RMS error of x0 exceeds
    `max_rel_rms` the settings are refused: with `fallback` the safe settings (per-channel, reduce_range)
    are tried instead, with a warning; if those fail too, QuantizationError (nothing written).
    `fp16_tables`: large float tables that int8 leaves alone (the positional table) are stored as fp16; the
    measured error includes that.
    """
    src, dst = Path(src), Path(dst)
    inputs = inputs if inputs is not None else parity_inputs(cfg)
    reference = onnx_runner(src, threads)
    trials = [{"per_channel": per_channel, "reduce_range": reduce_range}]
    if fallback and trials[0] != SAFE_SETTINGS:
        trials.append(dict(SAFE_SETTINGS))
    attempts: list[dict[str, Any]] = []
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        for settings in trials:
            tables = _quantize_once(src, tmp, fp16_tables=fp16_tables, **settings)
            max_abs, rel = denoiser_error(reference, onnx_runner(tmp, threads), inputs)
            attempts.append({**settings, "max_abs": max_abs, "rel_rms": rel, "accepted": rel <= max_rel_rms,
                             "fp16_tables": tables})
            if rel <= max_rel_rms:
                if len(attempts) > 1:
                    warnings.warn(f"int8 with per_channel={per_channel}, reduce_range={reduce_range} gave relative "
                                  f"RMS error {attempts[0]['rel_rms']:.3f} > {max_rel_rms} (int16 saturation or "
                                  f"outlier weights); fell back to per_channel=True, reduce_range=True "
                                  f"(error {rel:.4f})", RuntimeWarning, stacklevel=2)
                write_with_external_data(tmp, dst)
                return Int8Result(path=str(dst), max_abs=max_abs, rel_rms=rel, max_rel_rms=max_rel_rms,
                                  fell_back=len(attempts) > 1, size_bytes=onnx_size_bytes(dst),
                                  fp32_size_bytes=src.stat().st_size, attempts=attempts, **settings)
        tried = "; ".join(f"per_channel={a['per_channel']}, reduce_range={a['reduce_range']}: rel RMS "
                          f"{a['rel_rms']:.4f}" for a in attempts)
        raise QuantizationError(f"{dst}: int8 quantisation too inaccurate ({tried}; limit {max_rel_rms}); "
                                "not written. Keep the fp32 or fp16 model, or raise max_rel_rms knowingly.")
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------------------- PyTorch int8


@dataclass
class TorchInt8Coverage:
    """Which weights torch's dynamic int8 quantised and which stay fp32."""

    quantized_layers: list[str]
    quantized_params: int
    fp32_linear_params: int
    fp32_layers: list[str]

    @property
    def fraction(self) -> float:
        total = self.quantized_params + self.fp32_linear_params
        return self.quantized_params / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**asdict(self), "fraction": self.fraction}


def quantize_torch_int8(model: nn.Module) -> tuple[nn.Module, TorchInt8Coverage]:
    """torch.ao dynamic int8 of every plain nn.Linear (a copy; the input model is untouched).

    Covered: input/output projections, timestep MLP, text projection, both FFN layers of every encoder
    layer. Not covered (stay fp32): attention's in-projection (F.multi_head_attention_forward multiplies by
    `in_proj_weight` directly, there is no Linear to swap) and attention's out_proj (a
    NonDynamicallyQuantizableLinear, excluded on purpose because MHA reads its weight directly).
    torch.ao.quantization is deprecated in this torch (slated for torchao); its DeprecationWarning is
    silenced here, and the ORT int8 path is the supported one for deployment.
    """
    model = copy.deepcopy(model).eval()
    plain = {name: m for name, m in model.named_modules() if type(m) is nn.Linear}
    fp32 = [(name, p.numel()) for name, p in model.named_parameters() if name.endswith("in_proj_weight")]
    fp32 += [(name + ".weight", m.weight.numel()) for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and type(m) is not nn.Linear]
    logger.info("torch dynamic int8: %d Linear layers quantised; attention in_proj/out_proj stay fp32 "
                "(torch.ao.quantization is deprecated; prefer the ONNX Runtime int8 model)", len(plain))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    coverage = TorchInt8Coverage(quantized_layers=sorted(plain),
                                 quantized_params=sum(m.weight.numel() for m in plain.values()),
                                 fp32_linear_params=sum(n for _, n in fp32), fp32_layers=sorted(n for n, _ in fp32))
    return quantized, coverage


def torch_state_size_bytes(model: nn.Module) -> int:
    """Bytes of `torch.save(model.state_dict())` (packed int8 weights included)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


# ---------------------------------------------------------------------------------------- fp16 weights


@dataclass
class Fp16Result:
    """fp16-weight ONNX file: how many tensors were stored in half precision, sizes."""

    path: str
    converted: int
    kept_fp32: int
    size_bytes: int
    fp32_size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {**asdict(self), "size_ratio": self.size_bytes / self.fp32_size_bytes}


def convert_onnx_fp16(src: str | Path, dst: str | Path, *, min_elements: int = 16) -> Fp16Result:
    """Store float32 weights as float16 followed by a Cast to float32, so the graph still runs in ORT on CPU.

    The file halves; ORT folds the Casts when it loads the model, so compute (and speed) stays fp32 and only
    the fp16 rounding of the weights shows in the error. (onnxconverter-common's full fp16 conversion would
    also compute in fp16, which ORT's CPU provider mostly lacks kernels for.) Tensors with fewer than
    `min_elements` values (shape constants, scalars) or values beyond fp16's range stay fp32.
    """
    import onnx

    from kpop_helpers.utils import atomic_write_bytes

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    converted, kept = cast_initializers_fp16(model, min_elements=min_elements)
    onnx.checker.check_model(model)
    atomic_write_bytes(dst, model.SerializeToString())
    return Fp16Result(path=str(dst), converted=converted, kept_fp32=kept, size_bytes=dst.stat().st_size,
                      fp32_size_bytes=src.stat().st_size)


def cast_initializers_fp16(model: Any, *, min_elements: int = 16) -> tuple[int, int]:
    """In place: float32 initializers of >= min_elements values become float16 + a Cast node; (converted, kept)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    graph_inputs = {i.name for i in graph.input}
    keep, casts, converted, kept = [], [], 0, 0
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        convertible = (init.data_type == TensorProto.FLOAT and array.size >= min_elements
                       and init.name not in graph_inputs and np.all(np.abs(array) <= 65504.0))
        if not convertible:
            keep.append(init)
            kept += int(init.data_type == TensorProto.FLOAT)
            continue
        half_name = f"{init.name}__fp16"
        keep.append(numpy_helper.from_array(array.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__to_fp32"))
        converted += 1
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return converted, kept
