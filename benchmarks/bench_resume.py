"""Crash-and-resume soak: N trials of SIGKILL-at-random-moments + `--resume auto`, counted bit-identical.

    python benchmarks/bench_resume.py --trials 20 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tqdm.auto import tqdm

from kpop_helpers.data.io import save_npz
from kpop_helpers.data.sample import generate_sample_clips
from kpop_helpers.train import TrainConfig
from kpop_helpers.train.resume_check import kill_and_resume, run_uninterrupted
from kpop_helpers.utils import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per trial")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        save_npz(tmp / "train.npz", generate_sample_clips(12, seed=3))
        cfg = TrainConfig(data=str(tmp / "train.npz"), preset="tiny", steps=args.steps, batch_size=4, save_every=2,
                          eval_every=8, log_every=2, wandb="off", sample_prompts=(), seed=7, max_checkpoints=3)
        config = tmp / "config.json"
        config.write_text(json.dumps(cfg.to_dict()))
        expected, wall = run_uninterrupted(config, tmp / "reference", args.steps)
        trials = []
        for i in tqdm(range(args.trials), desc="kill/resume trials"):
            trial = kill_and_resume(config, tmp / f"trial{i}", args.steps, expected, wall=wall, kills=args.kills,
                                    seed=i)
            trials.append({"kills": trial.kills, "launches": trial.launches, "identical": trial.identical,
                           "seconds": round(trial.seconds, 2)})
    identical = sum(t["identical"] for t in trials)
    result = {"benchmark": "resume_after_sigkill", "trials": args.trials, "identical": identical,
              "total_kills": sum(t["kills"] for t in trials), "steps": args.steps,
              "uninterrupted_seconds": round(wall, 2), "rows": trials, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(args.out)
    atomic_write_text(out / "resume.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "resume.md", (
        "# Exact resume after SIGKILL\n\n"
        f"{identical} of {args.trials} trials ended bit-identical to the uninterrupted run "
        f"({result['total_kills']} SIGKILLs in all, at random moments including during saves; "
        f"tiny preset, {args.steps} steps, a checkpoint every 2 steps).\n"))
    print(f"{identical}/{args.trials} identical, {result['total_kills']} kills")
    return 0 if identical == args.trials else 1


if __name__ == "__main__":
    raise SystemExit(main())
