"""How much training time does checkpointing with Drive sync cost?

Runs a training-like loop with an MDM-sized transformer (a few million parameters, AdamW, EMA copy) and
saves a full checkpoint every ``--save-every`` steps through :class:`CheckpointManager` with Drive sync on
to a second folder. Reports the fraction of wall time the loop spends *blocked* in ``save_checkpoint``
(goal: <= 5 % at a realistic interval) and, by re-running the same loop without checkpoints, the total
slow-down including the background copy's competition for CPU and disk.

    python benchmarks/bench_checkpoint_overhead.py                      # both modes, sync and async saves
    python benchmarks/bench_checkpoint_overhead.py --mode sleep --save sync   # simulated 50 ms GPU step
    python benchmarks/bench_checkpoint_overhead.py --mode train         # real CPU forward/backward steps
    python benchmarks/bench_checkpoint_overhead.py --drive-dir /content/drive/MyDrive/bench   # real Drive

Writes ``benchmarks/results/checkpoint_overhead.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from kpop_helpers.checkpoints import CheckpointManager, SyncRetry
from kpop_helpers.checkpoints.atomic import atomic_write_bytes, atomic_write_json, file_digest


@dataclass
class BenchConfig:
    """Loop and model sizes; defaults mimic a Colab fine-tune saving every 200 steps."""

    mode: str = "sleep"  # "sleep": simulated GPU-bound step (GIL released); "train": real CPU steps
    steps: int = 1000
    save_every: int = 200
    step_time_s: float = 0.05
    latent_dim: int = 256
    layers: int = 4
    batch: int = 2  # train mode: small enough for a CPU to reach a few steps per second
    frames: int = 30
    max_checkpoints: int = 3
    async_save: bool = False
    local_dir: str | None = None
    drive_dir: str | None = None


class MiniMDM(torch.nn.Module):
    """MDM-shaped denoiser: 263-d motion in/out, timestep + text conditioning, transformer encoder."""

    def __init__(self, latent_dim: int, layers: int, text_dim: int = 384):
        super().__init__()
        self.inp = torch.nn.Linear(263, latent_dim)
        self.time = torch.nn.Embedding(1000, latent_dim)
        self.text = torch.nn.Linear(text_dim, latent_dim)
        layer = torch.nn.TransformerEncoderLayer(latent_dim, 4, 4 * latent_dim, dropout=0.1, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = torch.nn.Linear(latent_dim, 263)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([(self.time(t) + self.text(text))[:, None], self.inp(x)], dim=1)
        return self.out(self.encoder(tokens)[:, 1:])


def _run_loop(cfg: BenchConfig, manager: CheckpointManager | None, desc: str) -> dict:
    torch.manual_seed(0)
    model = MiniMDM(cfg.latent_dim, cfg.layers)
    ema = MiniMDM(cfg.latent_dim, cfg.layers)
    ema.load_state_dict(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(cfg.batch, cfg.frames, 263)
    text = torch.randn(cfg.batch, 384)
    # One real step so AdamW holds its moment buffers (the checkpoint is full size from the first save).
    optimizer.zero_grad()
    model(x, torch.zeros(cfg.batch, dtype=torch.long), text).pow(2).mean().backward()
    optimizer.step()
    save_latencies, step_times = [], []
    started = time.perf_counter()
    for step in tqdm(range(cfg.steps), desc=desc, leave=False, mininterval=5.0):
        step_started = time.perf_counter()
        if cfg.mode == "sleep":
            time.sleep(cfg.step_time_s)
        else:
            t = torch.randint(0, 1000, (cfg.batch,))
            optimizer.zero_grad()
            loss = (model(x, t, text) - x).pow(2).mean()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 1e-3)
        step_times.append(time.perf_counter() - step_started)
        if manager is not None and (step + 1) % cfg.save_every == 0:
            t0 = time.perf_counter()
            manager.save_checkpoint(model, optimizer, 0, step + 1, 1.0, metrics={"val_loss": 1.0 / (step + 1)},
                                    ema=ema.state_dict(), data_position=step + 1)
            save_latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    return {"wall_s": wall, "save_latencies_s": save_latencies, "params": params,
            "step_p50_s": statistics.median(step_times)}


def run(cfg: BenchConfig, baseline: dict | None = None) -> tuple[dict, dict]:
    """Run the loop with checkpointing (and, unless given, without); returns (result record, baseline)."""
    baseline = baseline or _run_loop(cfg, None, f"{cfg.mode}: baseline (no checkpoints)")
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(cfg.local_dir or Path(scratch) / "local")
        drive = Path(cfg.drive_dir or Path(scratch) / "drive")
        manager = CheckpointManager(local, cfg.max_checkpoints, True, drive, best_metric="val_loss",
                                    sync_retry=SyncRetry(0.5, 10.0), flush_on_exit_s=None,
                                    async_save=cfg.async_save)
        measured = _run_loop(cfg, manager, f"{cfg.mode}: {'async' if cfg.async_save else 'sync'} save + Drive sync")
        t0 = time.perf_counter()
        caught_up = manager.flush(timeout=300)
        flush_s = time.perf_counter() - t0
        newest = manager.list_checkpoints()[0]
        drive_ok = file_digest(drive / newest["name"]).sha256 == newest["sha256"]
        write_s = manager.last_write_seconds
        manager.close()
    latencies = measured["save_latencies_s"]
    blocked = sum(latencies)
    mean_save = statistics.mean(latencies)
    projected = {f"{step_time:g}": mean_save / (cfg.save_every * step_time + mean_save)
                 for step_time in (0.02, 0.05, 0.1, 0.25, 0.5)}
    result = {
        "config": asdict(cfg), "params": measured["params"], "checkpoint_mb": newest["size"] / 1e6,
        "saves": len(latencies), "save_latency_s": {"mean": mean_save, "p50": statistics.median(latencies),
                                                    "max": max(latencies)},
        "last_write_s": write_s, "baseline_wall_s": baseline["wall_s"],
        "baseline_step_s": baseline["wall_s"] / cfg.steps, "wall_s": measured["wall_s"],
        "blocked_in_save_s": blocked, "blocked_fraction": blocked / measured["wall_s"],
        "total_overhead_fraction": (measured["wall_s"] - baseline["wall_s"]) / measured["wall_s"],
        # Medians shrug off bursts of load from other processes that make the wall-clock difference noisy.
        "baseline_step_p50_s": baseline["step_p50_s"], "step_p50_s": measured["step_p50_s"],
        "background_step_slowdown": measured["step_p50_s"] / baseline["step_p50_s"] - 1.0,
        "goal_fraction": 0.05, "meets_goal": blocked / measured["wall_s"] <= 0.05,
        "drive_flush_after_loop_s": flush_s, "drive_caught_up": caught_up, "drive_newest_verified": drive_ok,
        "projected_blocked_fraction_by_step_time_s": projected,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return result, baseline


def to_markdown(results: list[dict]) -> str:
    """Human-readable summary table of one or more runs."""
    lines = ["# Checkpoint overhead (save every N steps, Drive sync to a second folder)", "",
             "| mode | save | params | ckpt MB | step p50 s | saves | save p50 s | save max s | write s | blocked % "
             "| step slowdown % | wall overhead % | Drive flush s | meets 5 % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['config']['mode']} | {_save_kind(r)} | {r['params'] / 1e6:.2f} M | {r['checkpoint_mb']:.1f} "
            f"| {r['baseline_step_p50_s']:.3f} | {r['saves']} every {r['config']['save_every']} "
            f"| {r['save_latency_s']['p50']:.3f} | {r['save_latency_s']['max']:.3f} | {r['last_write_s']:.3f} "
            f"| {100 * r['blocked_fraction']:.2f} | {100 * r['background_step_slowdown']:.1f} "
            f"| {100 * r['total_overhead_fraction']:.1f} "
            f"| {r['drive_flush_after_loop_s']:.2f} | {'yes' if r['meets_goal'] else 'NO'} |")
    step_times = list(results[0]["projected_blocked_fraction_by_step_time_s"])
    lines += ["", "Projected blocked fraction for other step times (same save latency and interval):", "",
              "| mode | save | " + " | ".join(f"{k} s/step" for k in step_times) + " |",
              "|---|---|" + "---|" * len(step_times)]
    for r in results:
        values = r["projected_blocked_fraction_by_step_time_s"].values()
        cells = " | ".join(f"{100 * v:.2f} %" for v in values)
        lines.append(f"| {r['config']['mode']} | {_save_kind(r)} | {cells} |")
    machine = results[0]["machine"]
    lines += ["", "*blocked*: time inside `save_checkpoint` / loop wall time (the goal: <= 5 %). *step slowdown*:",
              "median training step with checkpointing vs without (the background write and Drive copy competing",
              "for CPU and disk). *wall overhead*: wall-clock difference of the two loops; on a shared machine it",
              "mostly measures other processes. *write s*: file work of the last save (in the background for",
              "async). *sync* is the default; *async* is `CheckpointManager(..., async_save=True)`.",
              f"Machine: {machine['platform']}, torch {machine['torch']}, {machine['threads']} threads, "
              f"load average {machine['load_average']}.", ""]
    return "\n".join(lines)


def _save_kind(result: dict) -> str:
    return "async" if result["config"]["async_save"] else "sync"


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["sleep", "train", "both"], default="both")
    parser.add_argument("--save", choices=["sync", "async", "both"], default="both")
    for name, value in asdict(BenchConfig()).items():
        if name not in ("mode", "async_save"):
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value) if value is not None else str,
                                default=value)
    parser.add_argument("--train-steps", type=int, default=400, help="steps for --mode train (slower per step)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = vars(parser.parse_args(argv))
    out, train_steps = Path(args.pop("out")), args.pop("train_steps")
    modes = ["sleep", "train"] if args["mode"] == "both" else [args["mode"]]
    saves = [False, True] if args["save"] == "both" else [args.pop("save") == "async"]
    args.pop("save", None)
    results = []
    for mode in modes:
        baseline = None
        for async_save in saves:
            steps = train_steps if mode == "train" else args["steps"]
            cfg = BenchConfig(**{**args, "mode": mode, "steps": steps, "async_save": async_save})
            result, baseline = run(cfg, baseline)
            results.append(result)
            print(json.dumps({k: result[k] for k in ("params", "checkpoint_mb", "blocked_fraction",
                                                     "total_overhead_fraction", "save_latency_s")}))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "checkpoint_overhead.json", {"results": results})
    atomic_write_bytes(out / "checkpoint_overhead.md", to_markdown(results).encode("utf-8"))
    print(to_markdown(results))


if __name__ == "__main__":
    main()
