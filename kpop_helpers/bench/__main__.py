"""CLI: `python -m kpop_helpers.bench --model PATH --export-dir DIR --out benchmarks/results [--smoke] ...`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from kpop_helpers.bench.protocol import DEFAULT_PROMPTS, BenchConfig, smoke_config


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kpop_helpers.bench", description=__doc__)
    p.add_argument("--model", help="the fp32 PyTorch model (.safetensors from the trainer, or an MDM .pt)")
    p.add_argument("--export-dir", nargs="+", help="export folder(s) (manifest.json) whose artifacts are measured")
    p.add_argument("--out", default="benchmarks/results", help="results folder (default: %(default)s)")
    p.add_argument("--work-dir", help="noise, samples and worker logs (default: OUT/.work, git-ignored)")
    p.add_argument("--reference-data", help="held-out real clips (.npz/.json/.bvh or a folder); "
                                            "default data/sample/val.npz")
    p.add_argument("--smoke", action="store_true", help="CI setting: tiny random model, 3 prompts, short dances")
    p.add_argument("--threads", type=int, nargs="+", help="thread counts (default 1 2; smoke: 1)")
    p.add_argument("--batches", type=int, nargs="+", choices=(1, 2), help="network batches (default 1 2)")
    p.add_argument("--prompts", nargs="+", help="prompts of the quality set (one dance each)")
    p.add_argument("--num-prompts", type=int, help="use the first N default prompts")
    p.add_argument("--frames", type=int, help="frames per dance (default 196 = 9.8 s)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default 2.5)")
    p.add_argument("--seed", type=int, help="noise seed (default 0)")
    p.add_argument("--draws", type=int, help="noise draws of the quality set (default 1); scores are the mean "
                                             "over draws with their spread")
    p.add_argument("--eager-samplers", nargs="*", help="fp32 eager samplers besides the DDPM reference "
                                                        "(default ddim50 ddim20 ddim10)")
    p.add_argument("--artifact-samplers", nargs="+", help="sampler(s) for every export artifact (default ddim10)")
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--timed-steps", type=int)
    p.add_argument("--max-gen-seconds", type=float, help="estimate (steps x p50) rather than measure a "
                                                         "generation longer than this")
    p.add_argument("--metrics-mode", choices=("compat", "corrected"))
    p.add_argument("--only", nargs="+", help="run only variants whose name contains one of these")
    p.add_argument("--skip", nargs="+", help="skip variants whose name contains one of these")
    p.add_argument("--compare", help="an earlier results.json: write compare.md with new/old ratios")
    p.add_argument("--resume", action="store_true", help="keep the rows of OUT/results.json and run the rest")
    p.add_argument("--report-only", action="store_true", help="only rewrite csv/md/plots from OUT/results.json")
    p.add_argument("--worker-timeout", type=float, help="seconds before a worker is killed")
    p.add_argument("--notes", help="free text recorded with the protocol (how the model was made, ...)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def config_from_args(argv: list[str] | None = None) -> tuple[BenchConfig, argparse.Namespace]:
    """Parse the command line into a BenchConfig (smoke defaults under --smoke)."""
    args = _parser().parse_args(argv)
    values = {
        "out": args.out, "export_dirs": args.export_dir, "model": args.model, "work_dir": args.work_dir,
        "reference_data": args.reference_data, "threads": args.threads, "batches": args.batches,
        "frames": args.frames, "guidance": args.guidance, "seed": args.seed, "draws": args.draws,
        "eager_samplers": args.eager_samplers,
        "artifact_samplers": args.artifact_samplers, "warmup_steps": args.warmup_steps,
        "timed_steps": args.timed_steps, "max_gen_seconds": args.max_gen_seconds, "metrics_mode": args.metrics_mode,
        "only": args.only, "skip": args.skip, "compare": args.compare, "resume": args.resume,
        "worker_timeout_s": args.worker_timeout, "progress": not args.quiet, "notes": args.notes,
        "prompts": args.prompts or (DEFAULT_PROMPTS[:args.num_prompts] if args.num_prompts else None),
    }
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if v is not None}
    return (smoke_config(**values) if args.smoke else BenchConfig(**values)), args


def main(argv: list[str] | None = None) -> int:
    # WARNING at the root: ONNX Runtime's quantizer logs every tensor at INFO through the root logger.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config, args = config_from_args(argv)
    from kpop_helpers.bench.report import results_markdown, write_report
    from kpop_helpers.bench.runner import run_benchmark
    from kpop_helpers.bench.schema import read_results

    if args.report_only:
        results = read_results(Path(config.out) / "results.json")
        if results is None:
            print(f"no results.json in {config.out}", file=sys.stderr)
            return 1
        write_report(results, Path(config.out), compare=config.compare)
    else:
        results = run_benchmark(config)
    print(results_markdown(results))
    print(json.dumps({"results": str(Path(config.out) / "results.json"), "rows": len(results["rows"]),
                      "errors": sum(1 for r in results["rows"] if r.get("error"))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
