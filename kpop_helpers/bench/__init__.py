"""One-protocol benchmark: every variant on one machine, one data set and one procedure, side by side.

`python -m kpop_helpers.bench --model PATH --export-dir DIR --out benchmarks/results` (or `run_benchmark`)
measures the MDM reference procedure (fp32 eager, full DDPM), fp32 DDIM samplers and every artifact of an
export folder: size, parameters, per-step latency, time per 196-frame dance, load time, peak memory,
fidelity to fp32 and dance quality (FID_k/FID_g/Div/PFC/foot skating) against a held-out set.
"""

from kpop_helpers.bench.protocol import DEFAULT_PROMPTS, BenchConfig, parse_sampler, smoke_config
from kpop_helpers.bench.report import (
    compare_markdown,
    results_markdown,
    speedup,
    target_check,
    write_csv,
    write_report,
)
from kpop_helpers.bench.runner import run_benchmark
from kpop_helpers.bench.schema import ROW_FIELDS, read_results, row_key
from kpop_helpers.bench.variants import Artifact, VariantSpec, discover_artifacts, plan_variants

__all__ = [
    "DEFAULT_PROMPTS", "ROW_FIELDS", "Artifact", "BenchConfig", "VariantSpec", "compare_markdown",
    "discover_artifacts", "parse_sampler", "plan_variants", "read_results", "results_markdown", "row_key",
    "run_benchmark", "smoke_config", "speedup", "target_check", "write_csv", "write_report",
]
