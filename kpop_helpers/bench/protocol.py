"""The benchmark protocol: settings, the machine it ran on, and the shared inputs (prompts, noise) of every variant.

Every variant sees the same text embeddings, the same initial noise and the same per-step noise. They are drawn
once with numpy in the parent process and written to the run folder, so a worker (or a later resumed run)
reads exactly the numbers every other variant read.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_DIM
from kpop_helpers.prompts import DANCE_PROMPTS
from kpop_helpers.utils import atomic_write_bytes

PROTOCOL_VERSION = 1
DEFAULT_PROMPTS = DANCE_PROMPTS  # the quality set: one prompt per generated dance
LIBRARIES = ("torch", "onnxruntime", "onnx", "numpy", "scipy", "transformers", "kpop-helpers")


@dataclass
class BenchConfig:
    """What to measure and how; everything here is recorded in results.json["protocol"]."""

    out: str = "benchmarks/results"
    export_dirs: tuple[str, ...] = ()  # export folders (manifest.json); artifacts of later folders add to earlier
    model: str | None = None
    reference_data: str | None = None  # None: data/sample/val.npz (built when missing)
    work_dir: str | None = None  # None: <out>/.work (noise, samples, worker logs; git-ignored)
    prompts: tuple[str, ...] = DEFAULT_PROMPTS[:8]  # 8 keeps the 1000-step reference to ~10 CPU minutes
    frames: int = 196
    guidance: float = 2.5
    seed: int = 0
    # Noise draws of the quality set: each draw is one dance per prompt with fresh noise; scores are the mean over
    # draws with their spread, so a quality target can be judged against sampling noise (see docs/metrics.md).
    draws: int = 1
    threads: tuple[int, ...] = (1, 2)
    batches: tuple[int, ...] = (1, 2)
    eager_samplers: tuple[str, ...] = ("ddim50", "ddim20", "ddim10")  # fp32 eager besides the DDPM reference
    artifact_samplers: tuple[str, ...] = ("ddim10",)  # sampler(s) every exported/compressed artifact runs
    warmup_steps: int = 3
    timed_steps: int = 20
    max_gen_seconds: float = 60.0  # a batch/threads setting whose loop would take longer is estimated
    # "corrected": compat's F1 quirk divides by the reference set's std + 1e-10, so a geometric feature that never
    # fires in the reference set (common in a small one) sends FID_g to ~1e18 whenever a variant fires it.
    metrics_mode: str = "corrected"
    only: tuple[str, ...] = ()  # run only variants whose name contains one of these
    skip: tuple[str, ...] = ()
    smoke: bool = False
    resume: bool = False
    compare: str | None = None
    worker_timeout_s: float = 4 * 3600.0
    progress: bool = True
    notes: str = ""  # free text recorded with the protocol (how the model was made, why these settings)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise DataError naming the first bad setting."""
        def bad(name: str, value: Any, expected: str) -> DataError:
            return DataError(f"got {value!r}", path="bench config", field=name, expected=expected)

        if not self.prompts or not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise bad("prompts", self.prompts, "a non-empty list of non-empty prompts")
        for name in ("frames", "warmup_steps", "timed_steps", "draws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "warmup_steps" else 1):
                raise bad(name, value, "a positive integer")
        if self.timed_steps < 2:
            raise bad("timed_steps", self.timed_steps, "at least 2 (p50 and p95 need several timings)")
        for name in ("threads", "batches"):
            values = getattr(self, name)
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise bad(name, values, "a non-empty list of positive integers")
        if any(b not in (1, 2) for b in self.batches):
            raise bad("batches", self.batches, "1 (one unguided forward) and/or 2 (the guided pair of one prompt)")
        for name in ("eager_samplers", "artifact_samplers"):
            for spec in getattr(self, name):
                parse_sampler(spec)
        if self.metrics_mode not in ("compat", "corrected"):
            raise bad("metrics_mode", self.metrics_mode, "'compat' or 'corrected'")
        if float(self.guidance) <= 0:
            raise bad("guidance", self.guidance, "a positive guidance scale")

    @property
    def num_samples(self) -> int:
        """Dances per draw of the quality set (one per prompt)."""
        return len(self.prompts)

    @property
    def total_samples(self) -> int:
        """Dances generated per variant over all draws; sample d * prompts + p is prompt p of draw d."""
        return len(self.prompts) * self.draws

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data


def parse_sampler(spec: str) -> tuple[str, int | None]:
    """'ddim10' -> ('ddim', 10), 'ddpm' -> ('ddpm', None) (the model's full schedule): `SamplerSpec.parse`."""
    from kpop_helpers.sampling import SamplerSpec

    parsed = SamplerSpec.parse(str(spec), path="bench config", field="sampler")
    return parsed.sampler, parsed.steps


def smoke_config(**overrides: Any) -> BenchConfig:
    """The CI setting: 3 short prompts, one thread, few steps (about a minute on a 2-core machine)."""
    values: dict[str, Any] = dict(prompts=DEFAULT_PROMPTS[:3], frames=40, threads=(1,), batches=(1, 2),
                                  eager_samplers=("ddim4",), artifact_samplers=("ddim4",), warmup_steps=1,
                                  timed_steps=5, max_gen_seconds=30.0, smoke=True)
    values.update(overrides)
    return BenchConfig(**values)


# ---------------------------------------------------------------- the machine


def cpu_info() -> dict[str, Any]:
    """CPU model, flags, and core counts from /proc/cpuinfo and the scheduler (best effort off Linux)."""
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "flags": [],
                            "logical_cores": os.cpu_count()}
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["usable_cores"] = os.cpu_count()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    physical = set()
    current: dict[str, str] = {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current:
                physical.add((current.get("physical id"), current.get("core id")))
            current = {}
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        current[key] = value
        if key == "model name":
            info["model"] = value
        elif key in ("flags", "Features") and not info["flags"]:
            info["flags"] = sorted(value.split())
    info["physical_cores"] = len(physical) or None
    # The flags that decide which matmul kernels torch and ORT can use.
    info["simd"] = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                                "avx_vnni", "amx_int8", "amx_bf16", "asimd", "sve") if f in info["flags"]]
    return info


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide the numbers."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """Everything about the machine a reader needs to judge the timings."""
    return {"cpu": cpu_info(), "platform": platform.platform(), "libraries": library_versions(),
            "loadavg_start": load_average(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join([Path(sys.executable).name, "-m", "kpop_helpers.bench", *sys.argv[1:]])}


# ---------------------------------------------------------------- shared inputs


@dataclass
class BenchInputs:
    """The arrays every worker reads: text embeddings, noise and the de-normalisation statistics."""

    text_emb: np.ndarray  # [P, D] float32, one row per prompt
    initial_noise: np.ndarray  # [P * draws, 263, 1, frames] float32
    mean: np.ndarray  # [263]
    std: np.ndarray  # [263]
    inputs_path: Path
    step_noise_path: Path  # [P * draws, max_steps, 263, 1, frames] float32 .npy
    digest: str = ""
    draw_digests: list[str] = field(default_factory=list)  # per draw; draw 0's equals `digest` of a 1-draw run
    meta: dict[str, Any] = field(default_factory=dict)


def inputs_digest(text_emb: np.ndarray, initial_noise: np.ndarray, mean: np.ndarray, std: np.ndarray) -> str:
    """sha256 of the arrays a set of dances depends on (besides the model and the per-step noise seed)."""
    arrays = (text_emb, initial_noise, mean, std)
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


def draw_noise(seed: int, num_samples: int, frames: int, max_steps: int, step_noise_path: Path,
               progress: bool = True) -> np.ndarray:
    """Initial noise [N,263,1,T]; writes per-step noise [N,S,263,1,T] to a .npy. Sample i depends on (seed, i) only."""
    from tqdm.auto import tqdm

    shape = (FEATURE_DIM, 1, frames)
    initial = np.empty((num_samples, *shape), dtype=np.float32)
    step_noise_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = step_noise_path.with_name(f".{step_noise_path.name}.{os.getpid()}.tmp")
    # Written through a memmap sample by sample: the full-schedule noise of 8 dances is 1.6 GB.
    steps = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(num_samples, max_steps, *shape))
    try:
        for i in tqdm(range(num_samples), desc="drawing noise", disable=not progress, leave=False):
            rng = np.random.default_rng([int(seed), i])
            initial[i] = rng.standard_normal(shape, dtype=np.float32)
            for k in range(max_steps):
                steps[i, k] = rng.standard_normal(shape, dtype=np.float32)
        steps.flush()
        del steps
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, step_noise_path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return initial


def prepare_inputs(config: BenchConfig, work_dir: Path, text_emb: np.ndarray, mean: np.ndarray, std: np.ndarray,
                   max_steps: int) -> BenchInputs:
    """Draw (or, on resume, re-draw identically) the shared noise and write inputs.npz + step_noise.npy."""
    import io

    work_dir.mkdir(parents=True, exist_ok=True)
    step_noise_path = work_dir / "step_noise.npy"
    total = config.total_samples
    meta = {"seed": config.seed, "num_samples": total, "frames": config.frames, "max_steps": max_steps}
    meta_path = work_dir / "noise_meta.json"
    reuse = (step_noise_path.is_file() and meta_path.is_file() and json.loads(meta_path.read_text()) == meta)
    if reuse:
        initial = np.stack([np.random.default_rng([config.seed, i]).standard_normal(
            (FEATURE_DIM, 1, config.frames), dtype=np.float32) for i in range(total)])
    else:
        initial = draw_noise(config.seed, total, config.frames, max_steps, step_noise_path,
                             config.progress)
        atomic_write_bytes(meta_path, json.dumps(meta).encode())
    arrays = {"text_emb": np.asarray(text_emb, np.float32), "initial_noise": initial,
              "mean": np.asarray(mean, np.float32), "std": np.asarray(std, np.float32)}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    inputs_path = work_dir / "inputs.npz"
    atomic_write_bytes(inputs_path, buffer.getvalue())
    prompts = config.num_samples
    draw_digests = [inputs_digest(arrays["text_emb"], initial[d * prompts:(d + 1) * prompts], arrays["mean"],
                                  arrays["std"]) for d in range(config.draws)]
    return BenchInputs(text_emb=arrays["text_emb"], initial_noise=initial, mean=arrays["mean"], std=arrays["std"],
                       inputs_path=inputs_path, step_noise_path=step_noise_path,
                       digest=inputs_digest(*arrays.values()), draw_digests=draw_digests, meta=meta)


def load_inputs(inputs_path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of inputs.npz (no pickles)."""
    with np.load(inputs_path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class StepNoise:
    """Per-step noise of some samples, read from step_noise.npy one step at a time (no memory map).

    A memory map would leave every page it touched in the worker's resident set and inflate its peak RSS
    by the noise file itself (1.6 GB for eight 1000-step dances).
    """

    def __init__(self, path: str | Path, samples: int | list[int], steps: int):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            self._offset = fh.tell()
        if fortran or dtype != np.float32 or len(shape) != 5:
            raise DataError(f"got shape {shape}, dtype {dtype}", path=self.path,
                            expected="C-ordered float32 [samples, steps, 263, 1, frames]")
        self._shape = shape
        self.samples = [samples] if isinstance(samples, int) else list(samples)
        if not self.samples or not all(0 <= i < shape[0] for i in self.samples) or not 0 < steps <= shape[1]:
            raise DataError(f"samples {self.samples} / {steps} steps outside the file's {shape[0]} x {shape[1]}",
                            path=self.path, expected="samples and a step count the noise was drawn for")
        self.steps = steps
        self._step_bytes = int(np.prod(shape[2:])) * 4
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.steps

    @property
    def shape(self) -> tuple[int, ...]:
        """[steps, len(samples), 263, 1, T]: the per-step noise these samples read."""
        return (self.steps, len(self.samples), *self._shape[2:])

    def __getitem__(self, k: int) -> np.ndarray:
        """Noise of step k as a numpy array [len(samples), 263, 1, T] (the sampling core's step noise)."""
        if not 0 <= k < self.steps:
            raise IndexError(k)
        rows = []
        for i in self.samples:
            offset = self._offset + (i * self._shape[1] + k) * self._step_bytes
            rows.append(np.frombuffer(os.pread(self._fd, self._step_bytes, offset), dtype=np.float32))
        return np.stack(rows).reshape(len(self.samples), *self._shape[2:])

    def close(self) -> None:
        """Close the file descriptor."""
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()
