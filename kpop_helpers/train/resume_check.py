"""Crash-and-resume harness: kill the training CLI with SIGKILL at random moments and resume it.

Used by the tests (a few trials per CI run) and by `benchmarks/bench_resume.py` (many trials) to show that
a run resumed with `--resume auto` ends with weights bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class ResumeTrial:
    """One crash-and-resume trial."""

    kills: int
    launches: int
    identical: bool
    differing: list[str]
    seconds: float


def train_command(config: Path, out: Path, module: str = "kpop_helpers.train") -> list[str]:
    """The CLI call that trains `config` into `out`, resuming whatever is there (`module`: or the distiller)."""
    return [sys.executable, "-m", module, "--config", str(config), "--out", str(out), "--resume", "auto", "--quiet"]


def single_thread_env() -> dict[str, str]:
    """Same thread count in every process, so float reductions run in the same order."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def final_state(out: Path, steps: int) -> dict[str, torch.Tensor]:
    """Model and EMA tensors of the checkpoint written after `steps` steps."""
    from kpop_helpers.checkpoints import decode_state

    ckpt = next(Path(out).glob(f"checkpoint_epoch*_step{steps}.pt"))
    payload = torch.load(ckpt, weights_only=True)
    extra = decode_state(payload["extra"])
    state = {f"model.{k}": v for k, v in payload["model"].items()}
    state.update({f"ema.{k}": v for k, v in extra["ema"].items()})
    return state


def run_uninterrupted(config: Path, out: Path, steps: int,
                      module: str = "kpop_helpers.train") -> tuple[dict[str, torch.Tensor], float]:
    """Train once without interruption; returns (final state, wall seconds)."""
    start = time.perf_counter()
    subprocess.run(train_command(config, out, module), check=True, env=single_thread_env(), timeout=3600,
                   capture_output=True)
    return final_state(out, steps), time.perf_counter() - start


def kill_and_resume(config: Path, out: Path, steps: int, expected: dict[str, torch.Tensor], *, wall: float,
                    kills: int = 2, seed: int = 0, module: str = "kpop_helpers.train") -> ResumeTrial:
    """Launch, SIGKILL after a random delay (0.3-0.9 x wall) `kills` times, then let the run finish."""
    rng = random.Random(seed)
    start, done_kills, launches = time.perf_counter(), 0, 0
    while True:
        launches += 1
        proc = subprocess.Popen(train_command(config, out, module), env=single_thread_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        if done_kills < kills:
            try:
                proc.wait(timeout=rng.uniform(0.3, 0.9) * wall)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                done_kills += 1
                continue
        else:
            proc.wait(timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"training failed after {done_kills} kills: {proc.stderr.read().decode()[-3000:]}")
        break
    got = final_state(out, steps)
    differing = sorted(k for k in expected if k not in got or not torch.equal(expected[k], got[k]))
    return ResumeTrial(done_kills, launches, not differing and got.keys() == expected.keys(), differing,
                       time.perf_counter() - start)
