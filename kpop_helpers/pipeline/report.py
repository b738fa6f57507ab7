"""`report.md`: what each stage produced, the tables and plots, and where the checkpoints and exports are."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

from kpop_helpers.pipeline.common import fmt, markdown_table
from kpop_helpers.pipeline.edge_stages import ERROR_COLUMNS, EXPORT_COLUMNS, FEW_STEP_COLUMNS
from kpop_helpers.pipeline.results import (
    BenchmarkResult, CompressionResult, DataResult, EditPreview, ExportResult, FinetuneResult, LongDancePreview,
    PreviewResult, SongPreview,
)
from kpop_helpers.utils import atomic_write_text


def _rel(path: str | Path | None, base: Path) -> str:
    """A link target relative to the report (falls back to the absolute path on another drive)."""
    if path is None:
        return "–"
    try:
        return Path(os.path.relpath(Path(path).resolve(), base.resolve())).as_posix()
    except ValueError:
        return str(path)


def _demote(markdown: str, levels: int = 2) -> str:
    """Push the headings of an embedded document down so they nest under the report's sections."""
    return re.sub(r"^(#+)", lambda m: m.group(1) + "#" * levels, markdown, flags=re.MULTILINE)


def _data(data: DataResult, base: Path) -> list[str]:
    return ["## Data", "",
            f"SYNTHETIC sample set (procedurally generated dances, not motion capture): {data.num_clips} clips, "
            f"{data.num_train} train / {data.num_val} val, {data.feature_frames} HumanML3D feature frames for "
            f"training. Files: [{_rel(data.train, base)}]({_rel(data.train, base)}), statistics "
            f"`{_rel(data.stats_dir, base)}`.", ""]


def _finetune(run: FinetuneResult, base: Path) -> list[str]:
    lines = ["## Fine-tuning", "",
             f"- model: `{run.preset}` from `{run.init}`, {run.params / 1e6:.2f}M parameters, text encoder "
             f"`{run.text_encoder}`",
             f"- steps: {run.step} ({f'resumed from step {run.resumed_from}' if run.resumed_from else 'fresh run'}), "
             f"{run.steps_per_second:.2f} steps/s, {run.seconds:.0f} s",
             f"- final train loss {fmt(run.train_loss)}, validation loss {fmt(run.val_loss)}", ""]
    if run.curve:
        lines += [f"![training curve]({_rel(run.curve, base)})", ""]
    return lines


def _compression(comp: CompressionResult) -> list[str]:
    setup = comp.setup
    return ["## Compression (in memory, per edge_config.json)", "",
            f"Each variant against the fp32 model: {len(setup.get('prompts', []))} prompts, {setup.get('frames')} "
            f"frames, {setup.get('sampler')}{setup.get('steps')}, guidance {setup.get('guidance')}, the same noise "
            "for every variant. MPJPE includes the global trajectory; pose-only subtracts the pelvis.", "",
            markdown_table(comp.variants, ERROR_COLUMNS),
            "Few-step sampling (DDIM with N steps against the full schedule, same noise):", "",
            markdown_table(comp.few_steps, FEW_STEP_COLUMNS)]


def _export(export: ExportResult, base: Path) -> list[str]:
    text = export.text_encoder
    parity = text.get("parity") or {}
    lines = ["## Export and parity", "",
             f"Edge folder `{_rel(export.export_dir, base)}` ([manifest.json]({_rel(export.manifest, base)})). "
             "Parity = "
             "max |exported - PyTorch| of one denoiser call on fixed inputs (several batch sizes and lengths); "
             "errors = the same comparison for whole generations (joints).", "",
             markdown_table(export.variants, EXPORT_COLUMNS)]
    if text:
        lines += [f"Text encoder `{text.get('name')}` ({text.get('mode')}): parity max abs "
                  f"{fmt(parity.get('max_abs'))} (atol {fmt(parity.get('atol'))}), tokens identical: "
                  f"{fmt(parity.get('tokens_identical'))}.", ""]
    return lines


def _benchmark(bench: BenchmarkResult, base: Path) -> list[str]:
    lines = ["## Benchmark", "", f"Full results: [{_rel(bench.results_json, base)}]({_rel(bench.results_json, base)}) "
             f"({bench.rows} rows, {bench.errors} with errors).", ""]
    md = Path(bench.results_md)
    if md.is_file():
        lines += [_demote(md.read_text(encoding="utf-8")), ""]
    lines += [f"![{Path(p).stem}]({_rel(p, base)})" for p in bench.plots] + [""]
    return lines


def _previews(preview: PreviewResult, base: Path) -> list[str]:
    lines = ["## Sample dances", ""]
    for prompt, gif in zip(preview.prompts, preview.gifs):
        lines += [f"**{prompt}**", "", f"![dance]({_rel(gif, base)})", ""]
    if preview.comparison_gif:
        lines += [f"### Variants side by side: \"{preview.comparison_prompt}\" (same noise)", "",
                  f"![comparison]({_rel(preview.comparison_gif, base)})", ""]
        lines += [f"- {name}: {mm:.2f} mm mean joint distance from fp32" for name, mm in
                  preview.comparison_errors_mm.items()] + [""]
    return lines


def _edits(edit: EditPreview | None, dance: LongDancePreview | None, base: Path) -> list[str]:
    lines = []
    if edit:
        errors = ", ".join(f"{mm:.0f}" for mm in edit.kept_error_mm)
        lines += [f"## An edit: keep {edit.keep}, \"{edit.prompt}\"", "", f"![edit]({_rel(edit.gif, base)})", "",
                  f"- clip: {edit.clip}; kept part's distance from the clip per variation (mm): {errors}", ""]
    if dance:
        lines += [f"## A {dance.dance_seconds:.0f}-second dance from a timeline ({dance.windows} windows, "
                  f"{len(dance.seams)} seams)", "", f"![timeline dance]({_rel(dance.gif, base)})", "",
                  f"![seams]({_rel(dance.png, base)})", ""]
        lines += [f"- {start:g}-{end:g} s: {prompt}" for start, end, prompt in dance.timeline] + [""]
    return lines


def _songs(songs: list[SongPreview], base: Path) -> list[str]:
    lines = ["## Songs danced (07)", ""] if songs else []
    for song in songs:
        bvh, credit = song.outputs.get("bvh"), " ".join((song.attribution or "no credit file").split())
        lines += [f"### {Path(song.song).name}: {song.dance_seconds:.0f} s at {song.tempo_bpm:.0f} BPM, sections "
                  f"{''.join(label for *_, label in song.sections)}, {song.runtime}", "",
                  f"![dance]({_rel(song.outputs.get('gif'), base)})", "",
                  f"- beat alignment score {song.bas_before:.3f} -> {song.bas_after:.3f} ({song.align}); "
                  f"[dance.bvh]({_rel(bvh, base)}) for Blender", f"- {credit}", ""]
    return lines


def _locations(base: Path, finetune: FinetuneResult | None, export: ExportResult | None,
               bench: BenchmarkResult | None, preview: PreviewResult | None) -> list[str]:
    lines = ["## Where things are", ""]
    if finetune:
        lines += [f"- checkpoints (resume with `resume=\"auto\"`): `{_rel(finetune.run_dir, base)}`"
                  + (f", newest `{Path(finetune.checkpoint).name}`" if finetune.checkpoint else ""),
                  f"- fine-tuned EMA weights: `{_rel(finetune.weights, base)}`",
                  f"- TensorBoard logs: `{_rel(Path(finetune.run_dir) / 'logs', base)}`"]
        if finetune.drive_dir:
            lines.append(f"- Drive mirror: `{finetune.drive_dir}`")
    if export:
        lines.append(f"- edge export (ONNX, TorchScript, manifest.json): `{_rel(export.export_dir, base)}`")
    if bench:
        lines.append(f"- benchmark: `{_rel(bench.out_dir, base)}`")
    if preview:
        lines.append(f"- GIFs and joints (.npz): `{_rel(preview.out_dir, base)}`")
    return lines + [""]


def write_report(out_dir: str | Path, *, data: DataResult | None = None, finetune: FinetuneResult | None = None,
                 compression: CompressionResult | None = None, export: ExportResult | None = None,
                 benchmark: BenchmarkResult | None = None, previews: PreviewResult | None = None,
                 edit: EditPreview | None = None, timeline_dance: LongDancePreview | None = None,
                 songs: list[SongPreview] | None = None, timings: dict[str, float] | None = None,
                 smoke: bool = False) -> Path:
    """Write `<out_dir>/report.md` from the stage results given (a missing stage is left out); returns its path."""
    base = Path(out_dir)
    base.mkdir(parents=True, exist_ok=True)
    timings = dict(timings or {})
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    lines = ["# kpop toolkit: pipeline report", "",
             f"{time.strftime('%Y-%m-%d %H:%M:%S %z')} · {'SMOKE (CI-size)' if smoke else 'demo'} settings · "
             f"{platform.node() or 'this machine'}, {os.cpu_count()} CPU cores ({torch.get_num_threads()} PyTorch "
             f"threads, load average {fmt(load)} at the end), Python {platform.python_version()}", ""]
    if timings:
        total = timings.pop("total", sum(timings.values()))
        lines += ["| stage | wall time (s) |", "|---|---|"]
        lines += [f"| {name} | {seconds:.1f} |" for name, seconds in timings.items()]
        lines += [f"| **total** | **{total:.1f}** |", ""]
    for part in ((_data(data, base) if data else []), (_finetune(finetune, base) if finetune else []),
                 (_compression(compression) if compression else []), (_export(export, base) if export else []),
                 (_benchmark(benchmark, base) if benchmark else []), (_previews(previews, base) if previews else []),
                 _edits(edit, timeline_dance, base), _songs(list(songs or []), base),
                 _locations(base, finetune, export, benchmark, previews)):
        lines += part
    path = base / "report.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
