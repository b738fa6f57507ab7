"""Compression of the MDM denoiser for edge devices: int8 (ONNX Runtime, PyTorch), fp16 weights, pruning
(unstructured, FFN, width) with recovery fine-tuning, few-step sampling, and measured errors for each."""

from kpop_helpers.compress.errors import (
    GenerationSetup, VariantError, denoiser_error, generate_joints, joints_error_mm, measure_variant,
)
from kpop_helpers.compress.prune import (
    KINDS as PRUNING_KINDS, PruneReport, compressed_size_bytes, count_parameters, prune_ffn, prune_model,
    prune_unstructured, prune_width, recovery_finetune,
)
from kpop_helpers.compress.quantize import (
    DEFAULT_MAX_REL_RMS, Fp16Result, Int8Result, QuantizationError, TorchInt8Coverage, convert_onnx_fp16,
    onnx_size_bytes, quantize_onnx_int8, quantize_torch_int8, torch_state_size_bytes, write_with_external_data,
)
from kpop_helpers.compress.sampling import FewStepError, few_step_errors

__all__ = [
    "DEFAULT_MAX_REL_RMS", "FewStepError", "Fp16Result", "GenerationSetup", "Int8Result", "PRUNING_KINDS",
    "PruneReport", "QuantizationError", "TorchInt8Coverage", "VariantError", "compressed_size_bytes",
    "convert_onnx_fp16", "count_parameters", "denoiser_error", "few_step_errors", "generate_joints",
    "joints_error_mm", "measure_variant", "prune_ffn", "prune_model", "prune_unstructured", "prune_width",
    "onnx_size_bytes", "quantize_onnx_int8", "quantize_torch_int8", "recovery_finetune", "torch_state_size_bytes",
    "write_with_external_data",
]
