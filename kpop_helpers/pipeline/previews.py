"""Rendering stage: dances from the fine-tuned model as GIFs, and the exported variants side by side."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.pipeline.common import load_result, save_result, stage_progress
from kpop_helpers.pipeline.results import PreviewResult
from kpop_helpers.pipeline.settings import WorkDirs, settings_for
from kpop_helpers.utils import atomic_write_bytes

logger = logging.getLogger(__name__)
REFERENCE_NAME = "fp32 (PyTorch)"


def save_joints_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Write arrays (joints, prompts, ...) as one .npz, atomically; returns the path."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load_preview_model(model_or_weights: Any):
    """A model in eval mode: the one given, or loaded (float32, CPU) from any of our weight files."""
    if isinstance(model_or_weights, (str, Path)):
        from kpop_helpers.model import load_model_file

        return load_model_file(model_or_weights).float().eval()
    return model_or_weights.eval()


def export_sampling(export_dir: Path | None) -> dict[str, Any]:
    """The export's sampler settings (what the edge side runs), else the toolkit's default (EdgeConfig)."""
    if export_dir is not None and (export_dir / "manifest.json").is_file():
        from kpop_helpers.edge.manifest import manifest_sampling, read_manifest

        sampling = manifest_sampling(read_manifest(export_dir), export_dir)
        return {key: sampling[key] for key in ("sampler", "steps", "guidance")}
    from kpop_helpers.config import SamplingConfig

    default = SamplingConfig()
    return {"sampler": default.sampler, "steps": default.steps, "guidance": default.guidance}


def onnx_variants(export_dir: str | Path) -> tuple[str, ...]:
    """Every ONNX Runtime variant of an export, in manifest order (fp32, int8, fp16, every pruning kind...)."""
    from kpop_helpers.edge import read_manifest

    return tuple(name for name, entry in read_manifest(Path(export_dir))["variants"].items()
                 if entry.get("runtime") == "onnxruntime")


def compare_variants(model: Any, export_dir: str | Path, prompt: str, *, frames: int,
                     variants: tuple[str, ...] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Joints [T,22,3] of one prompt from the fp32 PyTorch model and each exported ONNX variant (edge runtime;
    None: every ONNX Runtime variant of the export), all with the export's sampler, the same text embedding and
    the same noise (initial and, for DDPM, per step: numpy's default_rng(seed) on both sides); variants missing
    from the export are skipped."""
    from kpop_helpers.edge import EdgeGenerator, read_manifest
    from kpop_helpers.generate import generate
    from kpop_helpers.text import get_text_encoder

    export_dir = Path(export_dir)
    sampling = export_sampling(export_dir)
    encoder = get_text_encoder(model.text_encoder_name)
    text_emb = encoder.encode([prompt]).detach().float().cpu().numpy()
    # generate draws the same noise as EdgeGenerator(seed=seed): one dance, the network is all that differs.
    reference = generate(model, [prompt], frames=frames, seed=seed, text_encoder=encoder, progress=False, **sampling)
    motions = {REFERENCE_NAME: reference.joints[0]}
    available = read_manifest(export_dir)["variants"]
    for name in (onnx_variants(export_dir) if variants is None else variants):
        if available.get(name, {}).get("runtime") != "onnxruntime":
            logger.info("variant %r is not an ONNX Runtime artifact of %s; skipped", name, export_dir)
            continue
        edge = EdgeGenerator(export_dir, variant=name)
        joints = edge.generate([prompt], frames=frames, seed=seed, text_emb=text_emb, **sampling)
        motions[f"{name} (ONNX Runtime)"] = joints[0]
    return motions


def render_previews(model_or_weights: Any, out_dir: str | Path, prompts: list[str] | tuple[str, ...], *,
                    smoke: bool, export_dir: str | Path | None = None,
                    variants: tuple[str, ...] | None = None, seed: int = 0,
                    progress: bool = True) -> PreviewResult:
    """A GIF per prompt from the fine-tuned model and, with `export_dir`, a side-by-side GIF of fp32 vs the
    exported variants (every ONNX Runtime variant unless `variants` names some; same prompt, same noise);
    joints go to motions.npz / comparison.npz."""
    from kpop_helpers.generate import generate
    from kpop_helpers.viz import compare, save_gif

    s, out = settings_for(smoke), Path(out_dir)
    prompts = list(prompts)
    export = Path(export_dir) if export_dir is not None else None
    steps = ["generate", *[f"GIF {i + 1}" for i in range(len(prompts))]] + (["compare variants"] if export else [])
    out.mkdir(parents=True, exist_ok=True)
    with stage_progress("render", steps, progress) as bar:
        model = load_preview_model(model_or_weights)
        frames = min(s.preview_frames, int(model.cfg.max_frames))
        result = generate(model, prompts, frames=frames, seed=seed, progress=False, **export_sampling(export))
        save_joints_npz(out / "motions.npz", joints=result.joints, prompts=np.asarray(prompts))
        bar.next()
        gifs = []
        for i, (prompt, joints) in enumerate(zip(prompts, result.joints)):
            gifs.append(str(save_gif(joints, out / f"dance_{i + 1}.gif", caption=short_caption(prompt), dpi=s.gif_dpi,
                                     progress=False)))
            bar.next()
        comparison_gif = comparison_npz = None
        errors: dict[str, float] = {}
        if export is not None:
            motions = compare_variants(model, export, prompts[0], frames=frames, variants=variants, seed=seed)
            comparison = compare(motions, reference=REFERENCE_NAME, caption=short_caption(prompts[0]))
            errors = {k: v for k, v in comparison.mean_errors_mm().items() if k != REFERENCE_NAME}
            comparison_gif = str(comparison.save_gif(out / "comparison.gif", progress=False, dpi=s.gif_dpi))
            names = list(motions)
            comparison_npz = str(save_joints_npz(out / "comparison.npz", joints=np.stack([motions[n] for n in names]),
                                           names=np.asarray(names), prompt=np.asarray(prompts[0])))
            bar.next()
    preview = PreviewResult(out_dir=str(out), prompts=prompts, gifs=gifs, motions=str(out / "motions.npz"),
                            comparison_gif=comparison_gif, comparison_motions=comparison_npz,
                            comparison_errors_mm=errors, comparison_prompt=prompts[0] if export else None,
                            seconds=bar.seconds)
    save_result(preview, out)
    return preview


def short_caption(prompt: str, limit: int = 70) -> str:
    """The prompt cut to `limit` characters (with an ellipsis) for a figure title."""
    return prompt if len(prompt) <= limit else prompt[: limit - 1].rstrip() + "…"


def load_previews(out_dir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({prompt: joints}, {variant: joints}) written by render_previews (the second is empty without a comparison)."""
    out = Path(out_dir)
    with np.load(out / "motions.npz", allow_pickle=False) as data:
        dances = {str(p): j for p, j in zip(data["prompts"], data["joints"])}
    variants: dict[str, np.ndarray] = {}
    if (out / "comparison.npz").is_file():
        with np.load(out / "comparison.npz", allow_pickle=False) as data:
            variants = {str(n): j for n, j in zip(data["names"], data["joints"])}
    return dances, variants


def ensure_previews(work: WorkDirs, prompts: list[str] | tuple[str, ...], *, smoke: bool = False,
                    progress: bool = True) -> PreviewResult:
    """The previews of an earlier run, or fresh ones from this work folder's model and export (which must exist
    outside `smoke`)."""
    from kpop_helpers.pipeline.edge_stages import ensure_export
    from kpop_helpers.pipeline.training import ensure_weights

    found = load_result(PreviewResult, work.previews)
    if found is not None and Path(found.motions).is_file():
        return found
    weights = ensure_weights(work, smoke=smoke, progress=progress)
    export = ensure_export(work, smoke=smoke, progress=progress)
    return render_previews(weights.weights, work.previews, prompts, smoke=smoke, export_dir=export.export_dir,
                           progress=progress)


def show_dances(gifs: list[str] | tuple[str, ...] | str) -> None:
    """Show the rendered dances inline (GIFs show where widgets do not); prints the paths outside a notebook."""
    from kpop_helpers.viz.inline import show_gifs

    show_gifs(gifs)
