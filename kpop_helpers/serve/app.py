"""The ASGI app: `create_app(ServeSettings)` -> a FastAPI app around one `EdgeGenerator` (no torch, ever).

FastAPI on uvicorn, the ecosystem's default: request bodies are validated by pydantic (whose errors this
module rewrites to name the field), OpenAPI docs come for free at /docs, and uvicorn (h11, pure Python)
installs on any board that runs onnxruntime. One server process holds the model, the bounded queue and the
metrics; generations run in the queue's worker threads, off the event loop (`kpop_helpers.serve.jobs`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from kpop_helpers import __version__
from kpop_helpers.data.bvh import write_bvh
from kpop_helpers.data.clip import MotionClip
from kpop_helpers.data.io import save_npz
from kpop_helpers.edge.runtime import EdgeGenerator
from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import FPS_HUMANML
from kpop_helpers.serve import schemas
from kpop_helpers.serve.guard import Guard
from kpop_helpers.serve.jobs import Job, JobCancelled, JobQueue, QueueFull, ShuttingDown
from kpop_helpers.serve.metrics import CONTENT_TYPE, Metrics, rss_bytes
from kpop_helpers.serve.schemas import DanceJob, DanceRequest, FieldError, error_body
from kpop_helpers.utils import peak_rss_mib

log = logging.getLogger("kpop_helpers.serve")
VERSIONED = ("numpy", "onnxruntime", "tokenizers", "fastapi", "starlette", "pydantic", "uvicorn")


@dataclass
class ServeSettings:
    """How to serve: the export and variant, workers, queue size, timeouts, API key, body limit, folders."""

    export_dir: Path
    variant: str = "int8"
    workers: int = 1
    queue: int = 8
    timeout_s: float = 120.0
    api_key: str | None = None
    threads: int | None = None  # ONNX Runtime intra-op threads (None: its default, every core)
    max_body_bytes: int = 256 * 1024
    grace_s: float = 30.0  # how long shutdown lets running jobs finish before cancelling them
    work_dir: Path | None = None  # where the server-owned temp folder is made (None: the system's)


@dataclass
class Answer:
    """A finished generation, encoded: body bytes, media type and headers."""

    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


class _Slot:
    """The job a worker thread is running now: its denoiser hook checks this job's cancel flag each step."""

    job: Job | None = None


class DanceService:
    """One app's state: the model loaded once, a per-worker view of it, the queue, the metrics, the temp folder."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.edge = EdgeGenerator(settings.export_dir, variant=settings.variant, threads=settings.threads)
        self.slots = [_Slot() for _ in range(settings.workers)]
        # Shallow copies share the ONNX Runtime sessions (their run() is thread-safe) but each has its own
        # `last` result and a denoiser wrapped with its worker's cancel check.
        self.generators = [self._worker_view(slot) for slot in self.slots]
        self.metrics = Metrics()
        self.jobs = JobQueue(self._run, workers=settings.workers, capacity=settings.queue)
        self.folder = Path(tempfile.mkdtemp(prefix="kpop-serve-", dir=settings.work_dir))
        self.started = time.time()

    def _worker_view(self, slot: _Slot) -> EdgeGenerator:
        view = copy.copy(self.edge)
        denoise = self.edge.denoise

        def checked(*args: Any) -> np.ndarray:
            if slot.job is not None:
                slot.job.raise_if_cancelled()  # a cancelled job stops here, within one denoiser call
            return denoise(*args)

        view.denoise = checked
        return view

    def _run(self, index: int, job: Job) -> Answer:
        """Worker thread: generate the job's dance and encode it."""
        dance: DanceJob = job.payload
        self.slots[index].job = job
        try:
            result = self.generators[index].generate_result(**dance.kwargs)
        finally:
            self.slots[index].job = None
        job.raise_if_cancelled()
        self.metrics.observe_generation(self.settings.variant, result.timings.get("total_s", job.run_s))
        return self._answer(job, dance, result)

    def _answer(self, job: Job, dance: DanceJob, result: Any) -> Answer:
        joints = np.asarray(result.joints[0], dtype=np.float32)
        meta = {"id": job.id, "variant": self.settings.variant, "prompt": dance.prompt, "frames": int(joints.shape[0]),
                "fps": FPS_HUMANML, "seconds": joints.shape[0] / FPS_HUMANML, "seed": result.seed,
                "sampler": result.sampler, "steps": result.steps, "guidance": result.guidance,
                "windows": 1 if result.plan.windows is None else result.plan.windows.count,
                "timings_s": {k: round(v, 4) for k, v in result.timings.items()}}
        headers = {"X-Job-Id": job.id, "X-Dance-Frames": str(meta["frames"]),
                   "X-Queue-Seconds": f"{job.wait_s:.3f}", "X-Generation-Seconds": f"{job.run_s:.3f}"}
        if dance.format == "json":
            # float32 -> Python float is exact and JSON floats round-trip: the client gets the same bits back.
            body = json.dumps({**meta, "joints": joints.tolist()}).encode("utf-8")
            return Answer(body, schemas.MEDIA_TYPES["json"], headers)
        clip = MotionClip(positions=joints, fps=FPS_HUMANML, texts=[dance.prompt], source=f"dance-{job.id}")
        path = self.folder / f"{uuid.uuid4().hex}.{dance.format}"  # a generated name: no client text on disk
        try:
            if dance.format == "npz":
                save_npz(path, [clip])
            else:
                write_bvh(path, clip)
            body = path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
        headers["Content-Disposition"] = f'attachment; filename="dance-{job.id}.{dance.format}"'
        return Answer(body, schemas.MEDIA_TYPES[dance.format], headers)

    def info(self) -> dict[str, Any]:
        """GET /v1/info: the model, variant, sampler, limits, versions and this process's pid (for monitors)."""
        manifest, steps = self.edge.manifest, int(self.edge.config["diffusion_steps"])
        versions = {"kpop_helpers": __version__, "python": platform.python_version()}
        for name in VERSIONED:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
        s = self.settings
        return {"service": "kpop_helpers.serve", "pid": os.getpid(), "variant": s.variant,
                "variants": sorted(k for k, v in manifest["variants"].items() if v.get("runtime") == "onnxruntime"),
                "model": self.edge.config, "params": manifest.get("params"), "sampling": self.edge.sampling,
                "text_encoder": manifest["text_encoder"].get("name"), "max_frames": self.edge.max_frames,
                "fps": FPS_HUMANML, "workers": s.workers, "queue": s.queue, "timeout_s": s.timeout_s,
                "limits": {"seconds": [schemas.MIN_SECONDS, schemas.MAX_SECONDS], "steps": [2, steps],
                           "guidance": [0.0, schemas.MAX_GUIDANCE], "eta": [0.0, 1.0], "seed": [0, schemas.MAX_SEED],
                           "prompt_chars": schemas.MAX_PROMPT_CHARS,
                           "timeline_entries": schemas.MAX_TIMELINE_ENTRIES, "formats": list(schemas.FORMATS),
                           "max_body_bytes": s.max_body_bytes},
                "versions": versions, "uptime_s": round(time.time() - self.started, 3)}

    def render_metrics(self) -> str:
        """GET /metrics: the Prometheus text."""
        rss, peak = rss_bytes(), peak_rss_mib()
        gauges = {"kpop_queue_pending": ("Generations waiting in the queue.", len(self.jobs.pending)),
                  "kpop_queue_capacity": ("Most generations that may wait.", self.jobs.capacity),
                  "kpop_jobs_running": ("Generations running now.", len(self.jobs.running)),
                  "kpop_jobs_started": ("Generations started since the server started.", self.jobs.started_total),
                  "kpop_workers": ("Worker threads.", self.jobs.workers),
                  "process_resident_memory_bytes": ("Resident memory now.", float("nan") if rss is None else rss),
                  "kpop_peak_resident_memory_bytes": ("Peak resident memory (VmHWM).",
                                                      float("nan") if peak is None else peak * 2**20),
                  "kpop_uptime_seconds": ("Seconds since the app was made.", time.time() - self.started)}
        return self.metrics.render(gauges, self.jobs.outcomes)

    async def close(self) -> dict[str, list[str]]:
        """Finish or cancel the jobs (logged by the queue), then remove the server-owned folder."""
        summary = await self.jobs.shutdown(self.settings.grace_s)
        shutil.rmtree(self.folder, ignore_errors=True)
        return summary


def _error(status: int, field: str, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = error_body([{"field": field, "message": message, **extra}])
    return JSONResponse(body, status_code=status, headers=headers)


class _ClientGone(Exception):
    """The client closed the connection while its job waited or ran."""


async def _wait(job: Job, request: Request, deadline: float) -> Answer:
    """The job's answer; TimeoutError past the deadline, _ClientGone when the client disconnects (checked 4x/s)."""
    loop = asyncio.get_running_loop()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError
        done, _ = await asyncio.wait({job.future}, timeout=min(0.25, remaining))
        if done:
            return job.future.result()
        if await request.is_disconnected():
            raise _ClientGone


def create_app(settings: ServeSettings) -> FastAPI:
    """The app: loads the model now (errors surface before the port opens), starts the workers at startup."""
    service = DanceService(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.jobs.start()
        log.info("serving %s (variant %s, %d workers, queue %d) from %s", settings.export_dir, settings.variant,
                 settings.workers, settings.queue, service.folder)
        yield
        await service.close()

    app = FastAPI(title="kpop_helpers dance service", version=__version__, lifespan=lifespan,
                  description="Text (or a timeline of prompts) to K-pop dance joints, BVH or NPZ.")
    app.state.service = service
    app.add_middleware(Guard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes,
                       observe=service.metrics.observe_request)

    @app.exception_handler(RequestValidationError)
    async def readable_422(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(schemas.validation_items(list(exc.errors()))), status_code=422)

    @app.exception_handler(FieldError)
    async def field_error(request: Request, exc: FieldError) -> JSONResponse:
        extra = {"expected": exc.expected} if exc.expected else {}
        return _error(exc.status, exc.field, exc.message if exc.message.startswith(exc.field) else str(exc), **extra)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """200 while serving; 503 once shutdown has begun (load balancers stop sending)."""
        if service.jobs.closing:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return JSONResponse({"status": "ok", "variant": settings.variant})

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        """The model, variant, sampler, limits and package versions."""
        return service.info()

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text: request counts and latency, generation time, queue, jobs, RSS."""
        return Response(service.render_metrics(), media_type=CONTENT_TYPE)

    @app.post("/v1/dances", response_model=None, responses={
        200: {"content": {t: {} for t in schemas.MEDIA_TYPES.values()}, "description": "the dance"},
        422: {"description": "a field is invalid (named in `fields`)"}, 429: {"description": "queue full"},
        504: {"description": "timed out"}})
    async def dances(body: DanceRequest, request: Request) -> Response:
        """One dance from a prompt or a timeline: joints [T,22,3] as JSON, or an NPZ / BVH file."""
        steps = int(service.edge.config["diffusion_steps"])
        dance = schemas.dance_job(body, sampling=service.edge.sampling, diffusion_steps=steps,
                                  accept=request.headers.get("accept"))
        deadline = asyncio.get_running_loop().time() + settings.timeout_s
        try:
            job = service.jobs.submit(dance)
        except QueueFull as exc:
            return _error(429, "queue", str(exc), headers={"Retry-After": str(exc.retry_after_s)},
                          retry_after_s=exc.retry_after_s)
        except ShuttingDown as exc:
            return _error(503, "server", str(exc))
        try:
            answer = await _wait(job, request, deadline)
        except asyncio.CancelledError:  # uvicorn gave up on this request (forced shutdown)
            service.jobs.cancel(job, "shutdown")
            raise
        except TimeoutError:
            service.jobs.cancel(job, "timeout")
            return _error(504, "timeout", f"no dance within {settings.timeout_s:g} s (job {job.id}, cancelled)")
        except _ClientGone:
            service.jobs.cancel(job, "disconnected")
            return _error(499, "client", "the client closed the connection")  # nginx's code; nobody reads it
        except JobCancelled as exc:
            return _error(503, "server", f"job {job.id} was cancelled: {exc.reason}")
        except DataError as exc:
            item = schemas.data_error_item(exc)
            return JSONResponse(error_body([item]), status_code=422)
        except Exception:
            log.exception("job %s failed", job.id)
            return _error(500, "server", f"generation failed (job {job.id}; see the server log)")
        return Response(answer.body, media_type=answer.media_type, headers=answer.headers)

    # Song jobs land here with the song issue: POST /v1/songs (an uploaded audio file and section prompts ->
    # a job id, answered at once with 202) and GET /v1/jobs/{id} (progress, then the BVH / NPZ / MP4). They
    # reuse this JobQueue (Job.id, cancel, shutdown); what they add is a registry of finished jobs kept for
    # polling, with results written under `service.folder` by generated names.
    return app
