"""A notebook's ends: your clips in (upload to Drive), the run's results out (report, zip, download), Drive unmounted."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from kpop_helpers.pipeline.settings import WorkDirs
from kpop_helpers.utils import atomic_write_bytes, staged_path

# What a person takes away: tables, plots, previews and the edge folder (not checkpoints or scratch).
RESULT_PARTS = ("report.md", "edge_config.json", "assets.json", "export", "benchmark", "previews", "songs", "compress",
                "checkpoints/model_ema.safetensors", "checkpoints/model_ema.json", "checkpoints/history.json",
                "checkpoints/training_curve.png", "checkpoints/result.json")


def package_results(work: WorkDirs, out: str | Path | None = None) -> Path:
    """Zip the report, exports, benchmark, previews and EMA weights of a work folder (written atomically to the
    local disk: `<scratch>/<run>_results.zip`); parts a run has not made yet are left out."""
    target = Path(out) if out is not None else work.local / f"{work.run_name or work.root.name}_results.zip"
    files: list[Path] = []
    for part in RESULT_PARTS:
        path = work.root / part
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"{work.root} holds no results yet (report, export, benchmark or previews): run the "
                                "notebooks of this RUN_NAME first")
    with staged_path(target) as temp, zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(work.root).as_posix())
    return target


def finish_notebook(work: WorkDirs, *, download: bool = False) -> Path | None:
    """Zip the results (and offer the download in Colab when `download`), then wait for pending Drive copies and
    unmount Drive, so nothing this notebook wrote is lost when the runtime goes."""
    from kpop_helpers.colab import flush_and_unmount, in_colab

    archive = None
    if download:
        archive = package_results(work)
        size = archive.stat().st_size / 2**20
        if in_colab():
            from google.colab import files

            files.download(str(archive))
            print(f"downloading {archive.name} ({size:.1f} MiB)")
        else:
            print(f"results: {archive} ({size:.1f} MiB)")
    caught_up = flush_and_unmount()
    where = "on Google Drive" if work.on_drive else "on this machine's disk"
    print(f"work folder {work.root} ({where})" + ("" if caught_up else
          ": some checkpoint copies were still pending; re-run this cell to wait for them"))
    return archive


def upload_clips(dest: str | Path | None = None) -> list[Path]:
    """Colab's upload dialog: the chosen .json/.npz/.bvh files go to `dest` (default MyDrive/kpop_work/data, where
    01_setup reads your clips). Outside Colab: nothing to upload (copy files into that folder yourself)."""
    from kpop_helpers.colab import drive_data_dir, in_colab

    target = Path(dest) if dest is not None else drive_data_dir()
    if not in_colab():
        print(f"not in Colab: copy your clips into {target} instead")
        return []
    from google.colab import files

    target.mkdir(parents=True, exist_ok=True)
    saved = []
    for name, content in files.upload().items():
        path = target / Path(name).name
        atomic_write_bytes(path, content)
        Path(name).unlink(missing_ok=True)  # Colab also saved it into the current folder
        saved.append(path)
    print(f"{len(saved)} file(s) saved to {target}")
    return saved


def write_run_report(work: WorkDirs, *, smoke: bool = False) -> Path:
    """`<work>/report.md` from every stage result this work folder holds (stages not run are left out)."""
    from kpop_helpers.pipeline.common import load_result
    from kpop_helpers.pipeline.report import write_report
    from kpop_helpers.pipeline.results import (
        BenchmarkResult, CompressionResult, DataResult, EditPreview, ExportResult, FinetuneResult, LongDancePreview,
        PreviewResult,
    )

    return write_report(work.root, data=load_result(DataResult, work.data),
                        finetune=load_result(FinetuneResult, work.checkpoints),
                        compression=load_result(CompressionResult, work.compress),
                        export=load_result(ExportResult, work.export),
                        benchmark=load_result(BenchmarkResult, work.benchmark),
                        previews=load_result(PreviewResult, work.previews),
                        edit=load_result(EditPreview, work.previews / "edit"),
                        timeline_dance=load_result(LongDancePreview, work.previews / "timeline"),
                        songs=load_song_previews(work), smoke=smoke)


def load_song_previews(work: WorkDirs) -> list[Any]:
    """The SongPreview of every song danced in this work folder (notebook 07), for the report."""
    from kpop_helpers.pipeline.common import load_result
    from kpop_helpers.pipeline.results import SongPreview

    return [song for folder in sorted((work.root / "songs").glob("*/"))
            if (song := load_result(SongPreview, folder)) is not None]
