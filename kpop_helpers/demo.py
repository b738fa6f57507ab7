"""`make demo`: the whole pipeline on the SYNTHETIC sample data, offline, into one folder.

    python -m kpop_helpers.demo --out outputs [--smoke] [--resume] [--skip-benchmark]

Builds the sample data and its features, fine-tunes a small model (offline MiniLM text encoder), measures
the compressed variants, exports the edge folder with parity numbers, benchmarks every artifact, renders
sample dances, and writes `<out>/report.md`. Nothing is written outside `--out`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from kpop_helpers.pipeline import (
    DEMO_PROMPTS, WorkDirs, compress, compress_and_export, find_edge_config, finetune, prepare_data,
    render_previews, run_benchmark, settings_for, write_edge_config, write_report,
)
from kpop_helpers.pipeline.common import RESULT_FILE


def retire_previous_run(run_dir: Path) -> Path | None:
    """Move an earlier demo run's checkpoints to `<run_dir>.previous` (replacing an older one) before a fresh run.

    Checkpoint retention keeps the highest steps, so a fresh run must not share its folder with an earlier,
    longer one. Only a folder the pipeline wrote (it holds result.json) is moved; anything else is left alone.
    """
    if not (run_dir / RESULT_FILE).is_file():
        return None
    previous = run_dir.with_name(run_dir.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    run_dir.rename(previous)
    return previous


def run_demo(out: str | Path, *, smoke: bool = False, resume: bool = False, benchmark: bool = True,
             progress: bool = True) -> Path:
    """Run every stage into `out` and return the path of report.md."""
    work = WorkDirs(Path(out).resolve())
    work.root.mkdir(parents=True, exist_ok=True)
    s = settings_for(smoke)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def timed(name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        timings[name] = time.perf_counter() - t0
        return value

    # The demo's own copy of edge_config.json, with the recovery fine-tune cut to the demo's size.
    config = write_edge_config(work.root / "edge_config.json", base=find_edge_config(),
                               recovery_steps=s.recovery_steps)
    data = timed("prepare data", prepare_data, work.data, smoke=smoke, progress=progress)
    if not resume:
        retire_previous_run(work.checkpoints)
    run = timed("fine-tune", finetune, work.data, work.checkpoints, smoke=smoke, resume="auto" if resume else "none",
                progress=progress)
    comp = timed("compress", compress, run.weights, work.compress, config_path=config, smoke=smoke,
                 train_data=data.train, progress=progress)
    export = timed("export", compress_and_export, run.weights, work.export, config_path=config, smoke=smoke,
                   train_data=data.train, progress=progress)
    bench = None
    if benchmark:
        bench = timed("benchmark", run_benchmark, work.export, run.weights, work.benchmark, smoke=smoke,
                      reference_data=data.val or data.train, progress=progress)
    prompts = DEMO_PROMPTS[:2] if smoke else DEMO_PROMPTS
    previews = timed("render", render_previews, run.weights, work.previews, prompts, smoke=smoke,
                     export_dir=work.export, progress=progress)
    timings["total"] = time.perf_counter() - started
    return write_report(work.root, data=data, finetune=run, compression=comp, export=export, benchmark=bench,
                        previews=previews, timings=timings, smoke=smoke)


def idle_cores() -> int:
    """Cores not busy with other processes (1-minute load average), at least 1.

    PyTorch's OpenMP threads spin while they wait for each other: on cores shared with other processes
    two threads can be several times slower than one, so the demo only uses cores that are idle.
    """
    cores = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0])
    except (AttributeError, OSError):  # no load average on this platform
        busy = 0
    return max(1, min(cores, cores - busy))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m kpop_helpers.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    parser.add_argument("--smoke", action="store_true", help="CI size: tiny model, a few steps, short dances")
    parser.add_argument("--resume", action="store_true",
                        help="continue the fine-tuning run found in OUT/checkpoints instead of starting afresh")
    parser.add_argument("--skip-benchmark", action="store_true", help="leave out the benchmark stage")
    parser.add_argument("--threads", type=int, default=0,
                        help="PyTorch threads (default 0: the cores that other processes leave idle)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads if args.threads > 0 else idle_cores())
    # ONNX Runtime's quantizer logs every tensor at INFO through the root logger.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    report = run_demo(args.out, smoke=args.smoke, resume=args.resume, benchmark=not args.skip_benchmark,
                      progress=not args.quiet)
    print(f"\nreport: {report} ({time.perf_counter() - started:.0f} s, {torch.get_num_threads()} torch threads)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
