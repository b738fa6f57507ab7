"""Export the MDM denoiser for deployment: ONNX (dynamo), TorchScript, torch.export, compressed variants and
the torch-free edge folder (manifest.json, statistics, text encoder), every artifact parity-checked."""

from kpop_helpers.config import EXPORT_FORMATS as ALL_FORMATS, load_edge_config
from kpop_helpers.export.artifacts import (
    ExportRecord, export_onnx_file, export_torch_program_file, export_torchscript_file,
)
from kpop_helpers.export.bundle import ModelExporter
from kpop_helpers.export.loading import load_model_for_export
from kpop_helpers.export.onnx_wrapper import ExportableMDM, dynamic_shapes, example_inputs
from kpop_helpers.export.parity import FP32_ATOL, ParityError, ParityReport, measure_parity
from kpop_helpers.export.text_export import TextExportError, export_text_encoder, save_prompt_embeddings
from kpop_helpers.runners import (
    onnx_runner, parity_inputs, relative_rms, torch_export_runner, torch_runner, torchscript_runner,
)

__all__ = [
    "ALL_FORMATS", "FP32_ATOL", "ExportRecord", "ExportableMDM", "ModelExporter", "ParityError", "ParityReport",
    "TextExportError", "dynamic_shapes", "example_inputs", "export_onnx_file", "export_text_encoder",
    "export_torch_program_file", "export_torchscript_file", "load_edge_config", "load_model_for_export",
    "measure_parity", "onnx_runner", "parity_inputs", "relative_rms", "save_prompt_embeddings",
    "torch_export_runner", "torch_runner", "torchscript_runner",
]
