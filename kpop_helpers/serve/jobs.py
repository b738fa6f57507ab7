"""A bounded queue of generations run by N worker threads: 429 when full, cancel at any step, graceful shutdown.

Threads, not processes: ONNX Runtime and numpy release the GIL while they compute, so threads overlap as well
as processes would, share one loaded model (one RSS to watch on a small board) and can be cancelled between
denoiser steps through a flag (`Job.raise_if_cancelled`, called by the server's step hook). No torch here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("kpop_helpers.serve")

# Why a job ended; the labels of the `kpop_jobs_total{outcome=...}` metric.
OUTCOMES = ("done", "failed", "timeout", "disconnected", "shutdown", "rejected")


class QueueFull(Exception):
    """No room in the queue: answer 429 and ask the client to come back after `retry_after_s`."""

    def __init__(self, pending: int, retry_after_s: int):
        super().__init__(f"the queue is full ({pending} generations waiting); retry in {retry_after_s} s")
        self.pending, self.retry_after_s = pending, retry_after_s


class ShuttingDown(Exception):
    """The server is stopping: no new jobs, and waiting ones are dropped."""


class JobCancelled(Exception):
    """The job was cancelled (timeout, client gone, shutdown) before it finished."""

    def __init__(self, reason: str):
        super().__init__(f"job cancelled: {reason}")
        self.reason = reason


@dataclass(eq=False)  # compared and hashed by identity: jobs live in a set while they run
class Job:
    """One generation: its payload (what the runner needs), its state, and the future its request awaits."""

    payload: Any
    future: asyncio.Future
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "pending"  # pending -> running -> done | failed | cancelled
    reason: str | None = None
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def raise_if_cancelled(self) -> None:
        """Called from the worker thread between steps: stop here if someone cancelled the job."""
        if self.cancel_event.is_set():
            raise JobCancelled(self.reason or "cancelled")

    @property
    def wait_s(self) -> float:
        """Seconds the job waited in the queue."""
        return (self.started or time.monotonic()) - self.created

    @property
    def run_s(self) -> float:
        """Seconds the job ran (so far)."""
        return 0.0 if self.started is None else (self.finished or time.monotonic()) - self.started


class JobQueue:
    """At most `capacity` jobs wait; `workers` run at once, each as `run(worker_index, job)` in its own thread."""

    def __init__(self, run: Callable[[int, Job], Any], *, workers: int = 1, capacity: int = 8,
                 on_finished: Callable[[Job], None] | None = None):
        if workers < 1 or capacity < 1:
            raise ValueError(f"workers and capacity must be >= 1, got {workers} and {capacity}")
        self.run, self.workers, self.capacity = run, workers, capacity
        self.on_finished = on_finished
        self.pending: deque[Job] = deque()
        self.running: set[Job] = set()
        self.outcomes: Counter[str] = Counter({outcome: 0 for outcome in OUTCOMES})
        self.started_total = 0
        self.closing = False
        self._mean_run_s: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._tasks: list[asyncio.Task] = []
        self._wake: asyncio.Event | None = None
        self._shutdown: asyncio.Task | None = None

    async def start(self) -> None:
        """Start the worker threads and their loop-side tasks (inside the server's event loop)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kpop-gen")
        self._tasks = [asyncio.create_task(self._worker(i), name=f"kpop-worker-{i}") for i in range(self.workers)]
        for task in self._tasks:
            task.add_done_callback(_log_crash)

    def submit(self, payload: Any) -> Job:
        """Queue a job, or raise QueueFull (with a Retry-After estimate) or ShuttingDown."""
        if self.closing or self._loop is None:
            raise ShuttingDown("the server is shutting down")
        if len(self.pending) >= self.capacity:
            self.outcomes["rejected"] += 1
            raise QueueFull(len(self.pending), self.retry_after_s())
        job = Job(payload=payload, future=self._loop.create_future())
        # Nobody may await a cancelled job's future: mark its exception as seen so asyncio does not warn.
        job.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.pending.append(job)
        assert self._wake is not None
        self._wake.set()
        return job

    def cancel(self, job: Job, reason: str) -> None:
        """Drop a waiting job at once, or ask a running one to stop at its next step (no job is left behind)."""
        if job.state == "pending":
            self.pending.remove(job)
            self._finish(job, "cancelled", reason, JobCancelled(reason))
        elif job.state == "running" and not job.cancel_event.is_set():
            job.reason = reason
            job.cancel_event.set()

    def retry_after_s(self) -> int:
        """Seconds until a place is likely free: the waiting jobs' share of the workers times the mean job time."""
        per_job = self._mean_run_s if self._mean_run_s is not None else 1.0
        return max(1, min(600, math.ceil(per_job * (len(self.pending) / self.workers + 1))))

    async def _worker(self, index: int) -> None:
        assert self._wake is not None and self._loop is not None
        while True:
            if self.closing:
                return
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self.pending.popleft()
            job.state, job.started = "running", time.monotonic()
            self.running.add(job)
            self.started_total += 1
            try:
                result = await self._loop.run_in_executor(self._pool, self.run, index, job)
            except JobCancelled as exc:
                self._finish(job, "cancelled", exc.reason, exc)
            except Exception as exc:  # the request answers it (422 for bad input, 500 otherwise)
                self._finish(job, "failed", "failed", exc)
            else:
                if job.cancel_event.is_set():  # cancelled after its last step: its answer is not wanted
                    self._finish(job, "cancelled", job.reason or "cancelled", JobCancelled(job.reason or ""))
                else:
                    self._finish(job, "done", "done", result=result)
            finally:
                self.running.discard(job)

    def _finish(self, job: Job, state: str, outcome: str, exc: BaseException | None = None,
                result: Any = None) -> None:
        job.state, job.finished = state, time.monotonic()
        job.reason = job.reason or outcome
        self.outcomes[outcome if outcome in OUTCOMES else "failed"] += 1
        if job.started is not None and state == "done":
            # An exponential mean reacts to a change of request mix within a few jobs.
            run_s = job.run_s
            self._mean_run_s = run_s if self._mean_run_s is None else 0.7 * self._mean_run_s + 0.3 * run_s
        if not job.future.done():
            if exc is not None:
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
        if self.on_finished is not None:
            self.on_finished(job)

    def request_shutdown(self, grace_s: float) -> None:
        """Thread- and signal-safe: begin `shutdown(grace_s)` in the server's loop (from a signal handler)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.shutdown_task, grace_s)

    def shutdown_task(self, grace_s: float) -> asyncio.Task:
        """The one shutdown of this queue (started on the first call, shared by later ones)."""
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._shut(grace_s))
        return self._shutdown

    async def shutdown(self, grace_s: float) -> dict[str, list[str]]:
        """Stop taking jobs, drop waiting ones, let running ones finish for `grace_s`, cancel the rest; log which."""
        return await self.shutdown_task(grace_s)

    async def _shut(self, grace_s: float) -> dict[str, list[str]]:
        self.closing = True
        dropped = [job.id for job in list(self.pending)]
        for job in list(self.pending):
            self.cancel(job, "shutdown")
        running = list(self.running)
        if running:
            log.info("shutdown: waiting up to %.1f s for running jobs %s", grace_s, [j.id for j in running])
            await asyncio.wait([job.future for job in running], timeout=max(0.0, grace_s))
        for job in running:
            self.cancel(job, "shutdown")
        if self._wake is not None:
            self._wake.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # each ends once its thread has returned
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        summary = {"finished": [j.id for j in running if j.state in ("done", "failed")],
                   "cancelled": [j.id for j in running if j.state == "cancelled"], "dropped": dropped}
        log.info("shutdown: finished running jobs %s; cancelled running jobs %s; dropped waiting jobs %s",
                 summary["finished"], summary["cancelled"], summary["dropped"])
        return summary


def _log_crash(task: asyncio.Task) -> None:
    """A worker task must never die silently: its jobs would wait until their timeout."""
    if not task.cancelled() and task.exception() is not None:
        log.error("worker %s stopped", task.get_name(), exc_info=task.exception())
