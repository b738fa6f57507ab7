"""Training throughput on this machine and the share of wall time blocked in checkpointing (Drive sync on).

    python benchmarks/bench_training.py --preset small --steps 200 --save-every 50 --out benchmarks/results

Drive is a real second folder here; the Drive copy runs in a background thread, so only the local
atomic save blocks the loop. Goal: blocked share <= 5%.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from kpop_helpers.data.io import save_npz
from kpop_helpers.data.sample import generate_sample_clips
from kpop_helpers.train import TrainConfig
from kpop_helpers.train.trainer import Trainer
from kpop_helpers.utils import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        save_npz(tmp / "train.npz", generate_sample_clips(60, seed=0))
        cfg = TrainConfig(data=str(tmp / "train.npz"), out=str(tmp / "local"), drive_dir=str(tmp / "drive"),
                          preset=args.preset, steps=args.steps, batch_size=args.batch_size,
                          save_every=args.save_every, eval_every=args.steps, log_every=10, wandb="off",
                          sample_prompts=(), resume="none")
        trainer = Trainer(cfg, progress=True)
        params = trainer.model.num_parameters()
        result = trainer.train()
        drive_files = sorted(p.name for p in (tmp / "drive").rglob("*.pt"))
    blocked = result.checkpoint_seconds / result.wall_seconds
    row = {"benchmark": "training", "preset": args.preset, "params": params, "batch_size": args.batch_size,
           "steps": args.steps, "save_every": args.save_every, "threads": args.threads,
           "steps_per_second": round(result.steps_per_second, 3), "wall_seconds": round(result.wall_seconds, 2),
           "checkpoint_seconds": round(result.checkpoint_seconds, 3), "blocked_fraction": round(blocked, 4),
           "drive_copies": drive_files, "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(args.out)
    atomic_write_text(out / "training.json", json.dumps(row, indent=2) + "\n")
    atomic_write_text(out / "training.md", (
        "# Training throughput (CPU)\n\n| preset | params | batch | threads | steps/s | blocked in checkpointing |\n"
        "|---|---:|---:|---:|---:|---:|\n"
        f"| {args.preset} | {params / 1e6:.2f} M | {args.batch_size} | {args.threads} | "
        f"{row['steps_per_second']:.2f} | {100 * blocked:.2f}% (goal <= 5%) |\n\n"
        f"A checkpoint every {args.save_every} steps, mirrored to a second folder by the Drive-sync thread; "
        f"{len(drive_files)} checkpoint(s) on the mirror at the end.\n"))
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
