"""A Triton Inference Server model repository for the exported ONNX denoiser (`--format triton`).

    <out>/kpop_denoiser/config.pbtxt     platform "onnxruntime_onnx", dynamic batching, the graph's own
                                         input/output names, data types and dims (read with `onnx`)
    <out>/kpop_denoiser/1/model.onnx     the variant's file (a hard link where the filesystem allows, else a copy)
    <out>/kpop_denoiser/README.txt       how the sampling loop calls it

Only the denoiser goes to Triton: one request per denoising step. The loop, the schedule, the text encoder,
the statistics and features-to-joints stay on the client with the export folder (`EdgeGenerator`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from kpop_helpers.edge.manifest import INPUT_NAMES, OUTPUT_NAMES, manifest_sampling, read_manifest, variant_entry
from kpop_helpers.errors import DataError
from kpop_helpers.utils import atomic_write_text, staged_path, temp_path_for

MODEL_NAME = "kpop_denoiser"
DEFAULT_MAX_BATCH = 64  # 8 concurrent requests of 2 x 4 windows (the guided batch of a long dance)
# ONNX TensorProto element type name -> Triton DataType (model_config.proto).
TRITON_TYPES = {"FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16", "BFLOAT16": "TYPE_BF16", "DOUBLE": "TYPE_FP64",
                "BOOL": "TYPE_BOOL", "INT8": "TYPE_INT8", "INT16": "TYPE_INT16", "INT32": "TYPE_INT32",
                "INT64": "TYPE_INT64", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16", "UINT32": "TYPE_UINT32",
                "UINT64": "TYPE_UINT64", "STRING": "TYPE_STRING"}
INSTANCE_KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU", "auto": None}


def onnx_signature(path: str | Path) -> dict[str, Any]:
    """{"input": [...], "output": [...], "external": [weight files]}: tensors as {"name", "onnx_type", "shape"}
    (-1 for a symbolic dim); "external" lists the files beside it that hold weights (external data)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    out: dict[str, Any] = {"input": [], "output": [], "external": sorted(
        {entry.value for init in model.graph.initializer if init.data_location == onnx.TensorProto.EXTERNAL
         for entry in init.external_data if entry.key == "location"})}
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            if value.name in initializers:  # old exporters list weights as inputs too
                continue
            tensor = value.type.tensor_type
            shape = [int(d.dim_value) if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            out[kind].append({"name": value.name, "onnx_type": onnx.TensorProto.DataType.Name(tensor.elem_type),
                              "shape": shape})
    return out


def _tensor_block(tensor: dict[str, Any], batched: bool, path: Path) -> str:
    name, shape = tensor["name"], tensor["shape"]
    if tensor["onnx_type"] not in TRITON_TYPES:
        raise DataError(f"ONNX type {tensor['onnx_type']} has no Triton data type", path=path, field=name,
                        expected=f"one of {sorted(TRITON_TYPES)}")
    lines = [f'    name: "{name}"', f"    data_type: {TRITON_TYPES[tensor['onnx_type']]}"]
    if batched:
        if not shape or shape[0] != -1:
            raise DataError(f"first dim is {shape[:1] or 'absent'}, not a dynamic batch", path=path, field=name,
                            expected="a dynamic first dim on every input and output (or max_batch_size 0)")
        dims = shape[1:]
        if not dims:  # a [batch] tensor: Triton needs non-empty dims, so [batch, 1] reshaped to [batch]
            lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
            return "  {\n" + "\n".join(lines) + "\n  }"
    else:
        dims = shape
    lines.append(f"    dims: [ {', '.join(str(d) for d in dims)} ]")
    return "  {\n" + "\n".join(lines) + "\n  }"


def triton_config(signature: dict[str, Any], *, max_batch_size: int, path: Path,
                  max_queue_delay_us: int = 2000, instance: str = "cpu", instance_count: int = 1,
                  threads: int | None = None) -> str:
    """config.pbtxt text (protobuf text format of Triton's ModelConfig) for an ONNX signature."""
    batched = max_batch_size > 0
    parts = [f'name: "{MODEL_NAME}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch_size}"]
    for kind in ("input", "output"):
        blocks = ",\n".join(_tensor_block(t, batched, path) for t in signature[kind])
        parts.append(f"{kind} [\n{blocks}\n]")
    if batched:
        parts.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}")
    if INSTANCE_KINDS[instance] is not None:
        parts.append(f"instance_group [\n  {{\n    count: {instance_count}\n    kind: {INSTANCE_KINDS[instance]}\n"
                     "  }\n]")
    if threads is not None:
        parts.append('parameters {\n  key: "intra_op_thread_count"\n'
                     f'  value: {{ string_value: "{threads}" }}\n}}')
    return "\n".join(parts) + "\n"


def _place_model(source: Path, final: Path, *, link: bool = True) -> str:
    """Hard-link (or copy) `source` to `final` atomically; "hard link" or "copy".

    link=False copies: ONNX external data must not be hard-linked, as `onnx.load` refuses a data file with
    several links (a guard against hard-link attacks), which would break loading the export itself.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if link:
        tmp = temp_path_for(final)
        try:
            os.link(source, tmp)
            os.replace(tmp, final)
            return "hard link"
        except OSError:  # another filesystem, or links not allowed: copy instead
            pass
        finally:
            tmp.unlink(missing_ok=True)
    with staged_path(final) as staged:
        shutil.copyfile(source, staged)
    return "copy"


def _readme(signature: dict[str, Any], export_dir: Path, variant: str, entry: dict[str, Any],
            sampling: dict[str, Any], max_batch_size: int, placed: str) -> str:
    names = ", ".join(f"{t['name']} {t['onnx_type'].lower()} {t['shape']}" for t in signature["input"])
    return f"""Triton model repository for the kpop_helpers denoiser
=====================================================

Model "{MODEL_NAME}", version 1: variant "{variant}" of {export_dir} ({entry['file']}, {placed}).
Serve it: tritonserver --model-repository=<the folder that holds {MODEL_NAME}/>
ONNX inputs: {names} (-1: any size); output {OUTPUT_NAMES[0]}: the shape of x.

What Triton runs: the denoiser only, x0 = f(x_t, timesteps, text_emb, uncond), once per request.
What stays on the client: the sampling loop and its schedule (this export: {sampling['sampler']}, {sampling['steps']}
steps, guidance {sampling['guidance']}), the text encoder, Mean/Std and features to joints. Keep the export folder
on the client: EdgeGenerator runs the core's loop (kpop_helpers.sampling.sample_loop) with any `Denoiser`.

How the loop calls it: one request per denoising step carrying the guided batch of 2B rows: the B motions
with uncond=False, then the same B motions with uncond=True (the null condition); the client then forms
x0 = x0_uncond + guidance * (x0_cond - x0_uncond) and takes the DDPM/DDIM step. Guidance 1 sends B rows.
A dance longer than the model's window is cut into windows: they go in chunks of at most max_windows
(4 by default) windows per request, so a step makes one request per chunk of 2 x chunk rows.
timesteps and uncond are [batch] in the graph; Triton's API takes them as [batch, 1] and config.pbtxt
reshapes them back. max_batch_size is {max_batch_size}: no request may exceed it; the dynamic batcher
merges requests of several clients only when their frames (the last dim of x) are equal.

A Triton-backed Denoiser (pip install "tritonclient[http]"; not run where this file was written):

    import numpy as np, tritonclient.http as th
    client = th.InferenceServerClient("localhost:8000")

    def triton_denoiser(x, timesteps, text_emb, uncond):
        arrays = [("x", np.ascontiguousarray(x, np.float32), "FP32"),
                  ("timesteps", np.asarray(timesteps, np.int64).reshape(-1, 1), "INT64"),
                  ("text_emb", np.ascontiguousarray(text_emb, np.float32), "FP32"),
                  ("uncond", np.asarray(uncond, bool).reshape(-1, 1), "BOOL")]
        inputs = []
        for name, array, dtype in arrays:
            inputs.append(th.InferInput(name, list(array.shape), dtype))
            inputs[-1].set_data_from_numpy(array)
        return client.infer("{MODEL_NAME}", inputs).as_numpy("{OUTPUT_NAMES[0]}")

    from kpop_helpers.edge import EdgeGenerator
    edge = EdgeGenerator("<export folder>", variant="{variant}")
    edge.denoise = triton_denoiser          # the loop, text and joints stay here; each step goes to Triton
    joints = edge.generate("a powerful hip-hop dance", seconds=10, seed=0)
"""


def write_triton_repository(export_dir: str | Path, out_dir: str | Path, *, variant: str = "int8",
                            max_batch_size: int = DEFAULT_MAX_BATCH, max_queue_delay_us: int = 2000,
                            instance: str = "cpu", instance_count: int = 1, threads: int | None = None) -> Path:
    """Write `<out_dir>/kpop_denoiser/` (config.pbtxt, 1/model.onnx, README.txt) from an export folder; its path.

    instance: "cpu" (the int8 variant is an ONNX Runtime CPU model), "gpu", or "auto" (Triton decides).
    threads: ONNX Runtime intra-op threads per instance (None: the backend's default).
    """
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    manifest = read_manifest(export_dir)
    entry = variant_entry(manifest, variant, export_dir)
    if not 0 <= int(max_batch_size) <= 4096:  # the exporter's dynamic batch dim allows 1..4096
        raise DataError(f"{max_batch_size}", field="max_batch_size", expected="0 (no batching) .. 4096")
    if instance not in INSTANCE_KINDS or instance_count < 1 or (threads is not None and threads < 1):
        raise DataError(f"instance {instance!r} x {instance_count}, threads {threads}", field="instance",
                        expected=f"one of {sorted(INSTANCE_KINDS)}, count >= 1, threads >= 1 or None")
    source = export_dir / entry["file"]
    signature = onnx_signature(source)
    found = (tuple(t["name"] for t in signature["input"]), tuple(t["name"] for t in signature["output"]))
    if found != (INPUT_NAMES, OUTPUT_NAMES):
        raise DataError(f"graph inputs/outputs are {found}", path=source, field="graph",
                        expected=f"{(INPUT_NAMES, OUTPUT_NAMES)} (the denoiser written by the exporter)")
    config = triton_config(signature, max_batch_size=int(max_batch_size), path=source,
                           max_queue_delay_us=max_queue_delay_us, instance=instance, instance_count=instance_count,
                           threads=threads)
    model_dir = out_dir / MODEL_NAME
    for name in signature["external"]:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise DataError(f"external data at {name!r}", path=source, expected="a file name beside the model")
    placed = _place_model(source, model_dir / "1" / "model.onnx")
    for name in signature["external"]:  # weights kept beside the graph travel with it, same relative name
        _place_model(source.parent / name, model_dir / "1" / name, link=False)
    atomic_write_text(model_dir / "config.pbtxt", config)
    atomic_write_text(model_dir / "README.txt", _readme(signature, export_dir, variant, entry,
                                                        manifest_sampling(manifest, export_dir),
                                                        int(max_batch_size), placed))
    return model_dir
