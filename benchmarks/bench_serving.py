"""Serving benchmark: each compression variant behind the real server, measured from outside under load.

    python benchmarks/bench_serving.py --export-dir EXPORT --variants fp32 int8 pruned_ffn_int8 \
        --clients 1 2 4 8 --seconds 60
    python benchmarks/bench_serving.py --export-dir EXPORT --soak                 # 8 clients x 5 min on int8
    python benchmarks/bench_serving.py --export-dir EXPORT --smoke --out /tmp/s   # seconds, for tests

Per variant: `python -m kpop_helpers.serve` in its own process (so RSS is that variant's alone) on a free
localhost port, the load generator (`kpop_helpers.serve.load`) at each client count for --seconds, the
monitor sampling the server's CPU and RSS; then SIGTERM. Rows: p50 / p95 / p99 latency, dances per minute,
errors, peak RSS. Writes serving.json, serving.md and serving.png (soak.* with --soak) to --out.
Variants missing from the export (e.g. the few-step student before it lands) are listed as skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from kpop_helpers.bench.protocol import cpu_info
from kpop_helpers.serve.load import parse_mix, run_load
from kpop_helpers.serve.process import running_server
from kpop_helpers.serve.report import write_report

REPO = Path(__file__).resolve().parents[1]
SOAK = {"variants": ["int8"], "clients": [8], "seconds": 300.0}
SOAK_RSS_GROWTH_PCT = 5.0  # the bar: RSS flat between the first and the last minute


def onnx_variants(export_dir: Path) -> list[str]:
    """The export's ONNX Runtime variants (manifest.json)."""
    manifest = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
    return sorted(k for k, v in manifest["variants"].items() if v.get("runtime") == "onnxruntime")


def measure(export_dir: Path, variant: str, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """One variant: start its server, run every client level, stop it; load.run_load's result plus the stop."""
    queue = args.queue or max(args.clients)  # room for every client: 429s would measure the queue, not the model
    server_args = ["--workers", str(args.workers), "--queue", str(queue), "--timeout", str(args.timeout)]
    if args.threads is not None:
        server_args += ["--threads", str(args.threads)]
    request = {"steps": args.steps} if args.steps is not None else None
    start, log = time.perf_counter(), logs / f"server_{variant}.log"
    with running_server(export_dir, variant=variant, args=server_args, log_path=log) as server:
        result = run_load(server.url, args.clients, args.seconds, parse_mix(args.mix), request=request,
                          warmup=args.warmup)
    result["server"]["log"] = str(log)
    result["server"]["exit_code"] = server.process.returncode
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export-dir", type=Path, required=True)
    p.add_argument("--variants", nargs="+", default=["fp32", "int8", "pruned_ffn_int8"])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--seconds", type=float, default=60.0, help="seconds per client level")
    p.add_argument("--mix", default="window", help="request mix (kpop_helpers.serve.load KINDS)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the export's)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--queue", type=int, default=None, help="server queue (default: the most clients)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--soak", action="store_true", help="8 clients for 5 minutes against int8 (not in CI)")
    p.add_argument("--smoke", action="store_true", help="a few seconds, for the tests")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    if args.soak:
        args.variants, args.clients, args.seconds = SOAK["variants"], SOAK["clients"], SOAK["seconds"]
    if args.smoke:
        args.clients, args.seconds = args.clients[:2], min(args.seconds, 2.0)
    name = "soak" if args.soak else "serving"
    available = onnx_variants(args.export_dir)
    skipped = [v for v in args.variants if v not in available]
    logs = args.out / f"{name}_logs"
    results = {}
    for variant in (v for v in args.variants if v in available):
        print(f"{variant}: {args.clients} clients x {args.seconds:g} s", file=sys.stderr)
        results[variant] = measure(args.export_dir, variant, args, logs)
    cpu = {k: v for k, v in cpu_info().items() if k != "flags"}
    notes = [f"{cpu.get('model')}, {cpu.get('usable_cores')} usable cores; one server process per variant, "
             f"{args.workers} worker(s), ORT threads {args.threads or 'default'}",
             f"{args.seconds:g} s per client level, mix {args.mix}, sampler steps {args.steps or 'the export default'}",
             "latency: request to answer at the client; dances/min: answered dances over the level's wall time; "
             "CPU % is of one core; RSS from the monitor (psutil) sampling the server every 0.5 s"]
    if skipped:
        notes.append(f"not in this export, skipped: {', '.join(skipped)}")
    verdict = None
    if args.soak and results:
        row = results["int8"]["rows"][0]
        verdict = {"http_5xx": row["http_5xx"], "latency_p99_s": row["latency_p99_s"],
                   "rss_growth_pct": row.get("rss_growth_pct"),
                   "pass": row["http_5xx"] == 0 and (row.get("rss_growth_pct") or 0.0) <= SOAK_RSS_GROWTH_PCT}
        notes.append(f"soak verdict: {verdict}")
    extra = {"protocol": {"export_dir": str(args.export_dir), "variants": args.variants, "clients": args.clients,
                          "seconds": args.seconds, "mix": args.mix, "steps": args.steps, "workers": args.workers,
                          "threads": args.threads, "cpu": cpu, "smoke": args.smoke},
             "skipped": skipped, "soak": verdict}
    paths = write_report(results, args.out, name=name, title="Serving: each variant under load" if not args.soak
                         else "Soak: int8 under 8 clients", notes=notes, extra=extra)
    print(" ".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
