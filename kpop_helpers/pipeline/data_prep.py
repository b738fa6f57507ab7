"""Pipeline stage 01 (data): the synthetic sample set or your own clips, as features with their Mean/Std."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from kpop_helpers.errors import DataError
from kpop_helpers.pipeline.common import MissingStageOutput, load_result, save_result, stage_progress
from kpop_helpers.pipeline.results import DataResult
from kpop_helpers.pipeline.settings import WorkDirs, settings_for
from kpop_helpers.utils import atomic_write_text

logger = logging.getLogger(__name__)


def prepare_data(out_dir: str | Path, *, smoke: bool, num_clips: int | None = None, seed: int = 0,
                 progress: bool = True) -> DataResult:
    """Build the SYNTHETIC sample set, convert its training clips to HumanML3D features and store their
    Mean/Std (`<out>/stats`) for training from scratch. smoke: at most 18 clips."""
    from kpop_helpers.data.io import load_clips
    from kpop_helpers.data.sample import build_sample_dataset
    from kpop_helpers.motion.stats import compute_stats
    from kpop_helpers.train.dataset import clips_to_features

    out = Path(out_dir)
    count = int(num_clips or settings_for(smoke).num_clips)
    if smoke:
        count = min(count, settings_for(True).num_clips)
    with stage_progress("prepare data", ["sample clips", "features", "statistics"], progress) as bar:
        summary = build_sample_dataset(out, num_clips=count, seed=seed, progress=False)
        bar.next()
        clips, _ = load_clips(out / "train.npz", progress=False)
        features = clips_to_features(clips, progress=False)
        bar.next()
        # The floor keeps blocks that never vary in a small set (e.g. always-planted feet) from dividing by 0.
        stats_dir = compute_stats(features, std_floor=1e-3).save(out / "stats")
        bar.next()
    val = out / "val.npz"
    result = DataResult(data_dir=str(out), train=str(out / "train.npz"), val=str(val) if val.is_file() else None,
                        metadata=str(out / "metadata.json"), stats_dir=str(stats_dir),
                        num_clips=int(summary["num_clips"]), num_train=int(summary["num_train"]),
                        num_val=int(summary["num_val"]), feature_frames=int(sum(len(f) for f in features)),
                        seconds=bar.seconds)
    save_result(result, out)
    return result


def prepare_own_data(source: str | Path, out_dir: str | Path, *, val_every: int = 10,
                     progress: bool = True) -> tuple[DataResult, str]:
    """Your own clips (a .json/.npz/.bvh file or folder, e.g. MyDrive/kpop_work/data) read with
    load_clips(on_error="skip"): every `val_every`-th clip held out, features and Mean/Std as for the sample set.
    Returns (result, the load report as text)."""
    from kpop_helpers.data.io import load_clips, save_npz
    from kpop_helpers.motion.stats import compute_stats
    from kpop_helpers.train.dataset import clips_to_features

    source, out = Path(source), Path(out_dir)
    if not source.exists():
        raise DataError("not found", path=source, expected="a folder or file of .json/.npz/.bvh clips")
    with stage_progress("your data", ["load", "features", "statistics"], progress) as bar:
        clips, report = load_clips(source, on_error="skip", fps=20, progress=progress)
        if len(clips) < 2:
            raise DataError(f"{len(clips)} usable clips\n{report.summary()}", path=source,
                            expected="at least 2 clips (one for training, one held out)")
        val = [c for i, c in enumerate(clips) if i % val_every == val_every - 1] or clips[-1:]
        train = [c for c in clips if not any(c is v for v in val)] or clips[:1]
        save_npz(out / "train.npz", train)
        save_npz(out / "val.npz", val)
        bar.next()
        features = clips_to_features(train, progress=False)
        bar.next()
        stats_dir = compute_stats(features, std_floor=1e-3).save(out / "stats")
        bar.next()
    atomic_write_text(out / "metadata.json", json.dumps({"source": str(source), "files": report.files,
                                                         "num_train": len(train), "num_val": len(val),
                                                         "skipped": report.to_dict()["skip"]},
                                                        indent=1) + "\n")
    result = DataResult(data_dir=str(out), train=str(out / "train.npz"), val=str(out / "val.npz"),
                        metadata=str(out / "metadata.json"), stats_dir=str(stats_dir), num_clips=len(clips),
                        num_train=len(train), num_val=len(val), feature_frames=int(sum(len(f) for f in features)),
                        seconds=bar.seconds, synthetic=False)
    save_result(result, out)
    return result, report.summary()


def ensure_data(work: WorkDirs, *, smoke: bool = False, progress: bool = True) -> DataResult:
    """The data 01_setup prepared in this work folder; missing: a fresh smoke-size sample set under `smoke`,
    else MissingStageOutput naming the file and 01_setup."""
    found = load_result(DataResult, work.data)
    if found is not None and Path(found.train).is_file() and Path(found.stats_dir).is_dir():
        return found
    if not smoke:
        raise MissingStageOutput(work.data / "train.npz", "01_setup", work.run_name)
    logger.warning("no prepared data in %s: building the smoke-size sample set now (SMOKE only)", work.data)
    return prepare_data(work.data, smoke=True, progress=progress)
