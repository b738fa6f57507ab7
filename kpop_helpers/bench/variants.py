"""What gets measured: the PyTorch reference procedures plus every artifact of an export folder, and how to load each.

A variant is one network file run by one runtime with one sampler, on the code path that ships it: ONNX Runtime
artifacts through the edge runtime (`EdgeGenerator`: its ORT session, numpy, the sampling core's loop), PyTorch
variants through `kpop_helpers.generate.run_sampler` (the loop of `generate`). Both loops take their steps from
the one sampling core, so the rows differ in the network, its runtime and the array library around it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from kpop_helpers.errors import DataError

logger = logging.getLogger(__name__)

# "torch_export" (a torch.export .pt2 program) extends the design's three runtimes.
RUNTIMES = ("torch", "torchscript", "onnxruntime", "torch_export")
PRECISIONS = ("fp32", "int8", "fp16")
PRUNINGS = (None, "unstructured", "ffn", "width")
# The row field `code_path`: which generation code a variant's timings and dances come from.
EDGE_CODE_PATH = "edge: EdgeGenerator (ONNX Runtime, numpy)"
TORCH_CODE_PATH = "torch: generate"


@dataclass
class Artifact:
    """One network file of an export folder (or the PyTorch model itself)."""

    name: str  # e.g. "ort_int8", "torch_fp16", "torch_ffn"
    runtime: str
    precision: str
    pruning: str | None
    path: str
    loader: str  # "mdm" | "mdm_fp16" | "torch_int8" | "torchscript" | "torch_export" | "onnx"
    files: list[str] = field(default_factory=list)  # every file counted in file_size_mb
    params: int | None = None  # the network's parameter count as the exporter reports it
    source: str = ""  # export folder and manifest key it came from

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise DataError(f"got {self.runtime!r}", path=self.path, field="runtime", expected=f"one of {RUNTIMES}")
        if self.precision not in PRECISIONS:
            raise DataError(f"got {self.precision!r}", path=self.path, field="precision",
                            expected=f"one of {PRECISIONS}")
        if self.pruning not in PRUNINGS:
            raise DataError(f"got {self.pruning!r}", path=self.path, field="pruning", expected=f"one of {PRUNINGS}")
        if not self.files:
            self.files = [self.path]

    @property
    def code_path(self) -> str:
        """The generation code this artifact runs through (EDGE_CODE_PATH or TORCH_CODE_PATH)."""
        return EDGE_CODE_PATH if self.loader == "onnx" else TORCH_CODE_PATH

    @property
    def file_size_mb(self) -> float:
        """Size on disk of every file of the artifact, in MB (10^6 bytes)."""
        return sum(Path(f).stat().st_size for f in self.files if Path(f).is_file()) / 1e6


@dataclass
class VariantSpec:
    """An artifact run with a sampler: one benchmark variant (a row per threads x batch setting)."""

    name: str  # e.g. "fp32_ddpm1000", "ort_int8_ddim10"
    artifact: Artifact
    sampler: str
    steps: int
    is_reference: bool = False  # the MDM reference procedure (fp32 eager, full DDPM)
    fidelity_ref: str | None = None  # the fp32 eager variant with the same sampler and steps

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (sent to the worker)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VariantSpec":
        """Inverse of to_dict."""
        return cls(**{**data, "artifact": Artifact(**data["artifact"])})


# ---------------------------------------------------------------- loading (used in the worker)


class Denoiser:
    """A loaded network with MDM's forward: (x [B,263,1,T], t [B] long, text_emb [B,D], uncond [B] bool) -> x0.

    Torch tensors for PyTorch variants; for an ONNX Runtime artifact `edge` is the `EdgeGenerator` that
    runs it (numpy, the edge runtime's own session) and the forward is its numpy denoiser.
    """

    def __init__(self, forward: Callable, params: int | None, params_nonzero: int | None, keepalive: Any = None,
                 edge: Any = None):
        self._forward = forward
        self.params = params
        self.params_nonzero = params_nonzero
        self.keepalive = keepalive  # the module/session, kept referenced while the denoiser lives
        self.edge = edge
        # A guidance student takes the scale as an input: the sampling loops then make one call per step.
        self.guidance_input = bool(getattr(forward, "guidance_input", False)
                                   or getattr(keepalive, "guidance_input", False))

    def __call__(self, x, timesteps, text_emb, uncond=None, guidance=None):
        if guidance is None:
            return self._forward(x, timesteps, text_emb, uncond)
        return self._forward(x, timesteps, text_emb, uncond, guidance)


def load_torch_model(path: str | Path):
    """An MDM (eval, float32, CPU) with .stats and .text_encoder_name from any of our weight files or an official .pt."""
    from kpop_helpers.export.loading import load_model_for_export

    return load_model_for_export(path).float().eval()


def _count(module) -> tuple[int, int]:
    params = [p for p in module.parameters()]
    total = sum(p.numel() for p in params)
    nonzero = sum(int((p != 0).sum()) for p in params)
    return total, nonzero


def _torch_forward(module, dtype=None) -> Callable:
    import torch

    def forward(x, timesteps, text_emb, uncond, guidance=None):
        if uncond is None:
            uncond = torch.zeros(x.shape[0], dtype=torch.bool)
        if dtype is not None:
            x, text_emb = x.to(dtype), text_emb.to(dtype)
        # An MDM student takes the scale by keyword (its fifth positional argument is frame_mask).
        out = module(x, timesteps, text_emb, uncond) if guidance is None else module(
            x, timesteps, text_emb, uncond, guidance=guidance)
        return out.float() if dtype is not None else out

    return forward


def _quantized_params(module) -> tuple[int, int]:
    """Parameters of a dynamically quantized module: float params plus the packed int8 weights."""
    import torch

    total, nonzero = _count(module)
    for sub in module.modules():
        weight_fn = getattr(sub, "weight", None)
        if callable(weight_fn) and type(sub).__module__.startswith("torch.ao.nn.quantized"):
            weight = weight_fn()
            bias = sub.bias() if callable(getattr(sub, "bias", None)) else None
            total += weight.numel() + (bias.numel() if bias is not None else 0)
            nonzero += int((torch.int_repr(weight) != 0).sum()) if weight.is_quantized else int((weight != 0).sum())
    return total, nonzero


def export_folder_and_key(artifact: Artifact) -> tuple[Path, str]:
    """(export folder, manifest key) of an artifact found by `discover_artifacts` (its `source`)."""
    folder, _, key = artifact.source.rpartition(":")
    if not folder or not key or not (Path(folder) / "manifest.json").is_file():
        raise DataError(f"source {artifact.source!r} names no export folder", path=artifact.path, field="source",
                        expected="'<export folder>:<manifest key>' (discover_artifacts), to run it as the edge does")
    return Path(folder), key


def _edge_denoiser(artifact: Artifact, threads: int) -> Denoiser:
    """The ONNX artifact in an `EdgeGenerator` (the session options, loop and numpy code that ship); torch-free."""
    import numpy as np
    import onnx

    from kpop_helpers.edge import EdgeGenerator

    folder, key = export_folder_and_key(artifact)
    # The benchmark feeds precomputed prompt embeddings: the text tower is neither loaded nor timed.
    edge = EdgeGenerator(folder, variant=key, threads=threads, text_encoder=False)
    # Parameters = elements of the weight initializers (int8 weights count once; scales/zero points are scalars).
    graph = onnx.load(artifact.path, load_external_data=False).graph
    total = sum(int(np.prod(init.dims)) for init in graph.initializer if len(init.dims) >= 1)
    return Denoiser(edge.denoise, total, None, keepalive=edge, edge=edge)


def load_denoiser(artifact: Artifact, threads: int) -> Denoiser:
    """Load an artifact for inference with `threads` intra-op threads (call once per process).

    An ONNX artifact loads without importing torch, as on the edge device.
    """
    if artifact.loader == "onnx":
        denoiser = _edge_denoiser(artifact, threads)
        if artifact.params:
            denoiser.params = int(artifact.params)
        return denoiser
    import torch

    if artifact.loader == "torchscript":
        module = torch.jit.load(artifact.path, map_location="cpu").eval()
        denoiser = Denoiser(_torch_forward(module), *_count(module), keepalive=module)
    elif artifact.loader == "torch_export":
        module = torch.export.load(artifact.path).module()
        denoiser = Denoiser(_torch_forward(module), *_count(module), keepalive=module)
    elif artifact.loader in ("mdm", "mdm_fp16", "torch_int8"):
        model = load_torch_model(artifact.path)
        if artifact.loader == "mdm_fp16":
            model = model.half()
            denoiser = Denoiser(_torch_forward(model, torch.float16), *_count(model), keepalive=model)
        elif artifact.loader == "torch_int8":
            from kpop_helpers.compress import quantize_torch_int8

            model, _ = quantize_torch_int8(model)
            denoiser = Denoiser(_torch_forward(model), *_quantized_params(model), keepalive=model)
        else:
            denoiser = Denoiser(_torch_forward(model), *_count(model), keepalive=model)
    else:
        raise DataError(f"unknown loader {artifact.loader!r}", path=artifact.path, field="loader",
                        expected="mdm, mdm_fp16, torch_int8, torchscript, torch_export or onnx")
    if artifact.params:
        denoiser.params = int(artifact.params)
    return denoiser


# ---------------------------------------------------------------- planning (used in the parent)

_LOADERS = {"onnxruntime": "onnx", "torchscript": "torchscript", "torch_export": "torch_export"}


def discover_artifacts(export_dirs: str | Path | list[str | Path]) -> list[Artifact]:
    """Every denoiser artifact listed in the manifest.json of one or more export folders.

    Names: ONNX Runtime artifacts are "ort_<manifest key>" (ort_fp32, ort_int8, ort_fp16, ort_pruned_ffn,
    ort_pruned_ffn_int8), the others keep their key (torchscript, torch_export, torch_int8). A name already
    taken by an earlier folder is skipped: folders exported from one model with other settings repeat fp32.
    """
    from kpop_helpers.edge.manifest import read_manifest

    folders = [export_dirs] if isinstance(export_dirs, (str, Path)) else list(export_dirs)
    artifacts: dict[str, Artifact] = {}
    for folder in map(Path, folders):
        for key, entry in read_manifest(folder)["variants"].items():
            runtime = entry.get("runtime", "")
            path = folder / str(entry.get("file", ""))
            if runtime not in _LOADERS or not entry.get("file"):
                logger.warning("%s: variant %r skipped (runtime %r is not measured)", folder, key, runtime)
                continue
            if not path.is_file():
                logger.warning("%s: variant %r skipped: %s is missing", folder, key, path)
                continue
            name = f"ort_{key}" if runtime == "onnxruntime" else str(key)
            if name in artifacts:
                continue
            files = [path, *sorted(folder.glob(path.name + ".data*"))]  # ONNX external data, when any
            artifacts[name] = Artifact(name=name, runtime=runtime, precision=entry.get("precision", "fp32"),
                                       pruning=entry.get("pruning") or None, path=str(path), loader=_LOADERS[runtime],
                                       files=[str(f) for f in files], params=entry.get("params"),
                                       source=f"{folder}:{key}")
    return list(artifacts.values())


def _sampler_steps(spec: str, diffusion_steps: int) -> tuple[str, int] | None:
    """(sampler, steps) of a sampler spec for this model, or None when the model's schedule cannot give it."""
    from kpop_helpers.bench.protocol import parse_sampler
    from kpop_helpers.generate import sampling_diffusion

    sampler, steps = parse_sampler(spec)
    steps = diffusion_steps if steps is None else steps
    try:
        sampling_diffusion(diffusion_steps, sampler, None if steps == diffusion_steps else steps)
    except ValueError as exc:
        logger.warning("sampler %s skipped for a %d-step model: %s", spec, diffusion_steps, exc)
        return None
    return sampler, steps


def plan_variants(config, model_cfg, model_path: str | Path,
                  export_dirs: str | Path | list[str | Path] | None) -> list[VariantSpec]:
    """The variants of a run: the reference procedure, fp32 eager samplers, then each artifact per sampler.

    The reference procedure (fp32 eager, full DDPM) always runs, and so does every fp32 eager variant an
    artifact needs as its fidelity reference; `config.only` / `config.skip` filter the rest by name.
    """
    diffusion_steps = int(model_cfg.diffusion_steps)
    eager = Artifact(name="fp32", runtime="torch", precision="fp32", pruning=None, path=str(model_path), loader="mdm")
    reference = VariantSpec(f"fp32_ddpm{diffusion_steps}", eager, "ddpm", diffusion_steps, is_reference=True,
                            fidelity_ref=f"fp32_ddpm{diffusion_steps}")
    plan = {reference.name: reference}
    optional: list[VariantSpec] = []
    for spec in config.eager_samplers:
        picked = _sampler_steps(spec, diffusion_steps)
        if picked:
            name = f"fp32_{picked[0]}{picked[1]}"
            optional.append(VariantSpec(name, eager, picked[0], picked[1], fidelity_ref=name))
    artifacts = discover_artifacts(export_dirs) if export_dirs else []
    required: dict[str, VariantSpec] = {}
    for spec in config.artifact_samplers:
        picked = _sampler_steps(spec, diffusion_steps)
        if not picked:
            continue
        ref_name = f"fp32_{picked[0]}{picked[1]}"
        for artifact in artifacts:
            variant = VariantSpec(f"{artifact.name}_{picked[0]}{picked[1]}", artifact, picked[0], picked[1],
                                  fidelity_ref=ref_name)
            if _selected(variant.name, config):
                optional.append(variant)
                required[ref_name] = VariantSpec(ref_name, eager, picked[0], picked[1], fidelity_ref=ref_name)
    for variant in optional:
        if _selected(variant.name, config) or variant.name in required:
            plan.setdefault(variant.name, variant)
    for name, variant in required.items():
        plan.setdefault(name, variant)
    # fp32 eager first: they are the fidelity references of the artifacts.
    return sorted(plan.values(), key=lambda v: (not v.is_reference, v.artifact.name != "fp32"))


def _selected(name: str, config) -> bool:
    if config.only and not any(part in name for part in config.only):
        return False
    return not any(part in name for part in config.skip)


def smoke_model(work_dir: Path, seed: int = 0) -> tuple[Path, list[Path]]:
    """A random tiny MDM (preset "tiny", stats of a few sample dances) and its export: the --smoke variants."""
    import warnings

    import torch

    from kpop_helpers.checkpoints import export_weights
    from kpop_helpers.data.sample import generate_sample_clips
    from kpop_helpers.model import MDM, get_preset
    from kpop_helpers.motion.features import joints_to_features
    from kpop_helpers.motion.stats import compute_stats

    folder = work_dir / "smoke_model"
    model_path = folder / "model.safetensors"
    export_dir = folder / "export"
    if not model_path.is_file():
        torch.manual_seed(seed)
        model = MDM(get_preset("tiny")).eval()
        # Stats of a few sample dances: the untrained model's outputs then de-normalise to plausible bodies.
        clips = generate_sample_clips(12, seed=seed)
        stats = compute_stats([joints_to_features(c.positions) for c in clips], std_floor=1e-3)
        export_weights(model, model_path, config=model.cfg.to_dict(), stats=stats,
                       metadata={"note": "random tiny model for the benchmark smoke test"})
    if not (export_dir / "manifest.json").is_file():
        from kpop_helpers.config import EdgeConfig
        from kpop_helpers.export import ModelExporter

        # A subset that exports quickly (CI): fp32 and int8 ONNX and TorchScript; no fp16, pruning or text encoder.
        edge = EdgeConfig.from_dict({"optimization": {"quantization": {"fp16": False}, "pruning": {"enabled": False}},
                                     "export": {"formats": ["onnx", "torchscript"], "text_encoder": "none"},
                                     "sampling": {"sampler": "ddim", "steps": 5}})
        edge_path = folder / "edge_config.json"
        edge.save(edge_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no recovery data", "jit.trace is deprecated": expected here
            ModelExporter(model_path, edge_path, progress=False).export_all(export_dir)
    return model_path, [export_dir]
