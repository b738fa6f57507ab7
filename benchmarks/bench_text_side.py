"""The edge runtime's text side: fp32 vs int8 MiniLM tower, peak memory and time of a whole 196-frame dance.

For each text tower of an export (fp32, and int8 when the export has it) and each thread count, a fresh
interpreter (no torch) loads `EdgeGenerator(export, variant=<denoiser>, text_precision=...)`, embeds one prompt
and generates a 196-frame dance with the export's sampler; its peak RSS is that process's VmHWM (MiB). The
embeddings of both towers are compared on prompts the export's own check did not see (cosine).

    python benchmarks/bench_text_side.py --export-dir EXPORT [--variant int8] [--repeats 3]
    python benchmarks/bench_text_side.py --export-dir EXPORT --repeats 1 --out /tmp/b     # tests
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.utils import json_from_process, markdown_table, write_result_files

REPO = Path(__file__).resolve().parents[1]
GOAL_MIB = 160.0
PROMPT = "a fierce girl-crush routine that points up and out with the hands on the beat"
# Not in compress.text_quant.PARITY_PROMPTS: a check on prompts the export never saw.
HELD_OUT = ("a slow lyrical turn with the arms reaching up", "robot dance", "a jazzy shuffle then a big jump",
            "the dancer drops to the floor and rolls back up", "two quick spins and a freeze on the last beat",
            "a relaxed walk that turns into a bouncy groove", "aegyo", "a ballet pirouette into a hip-hop stance")
ONE_RUN = """
import json, sys, time
start = time.perf_counter()
from kpop_helpers.edge import EdgeGenerator
from kpop_helpers.utils import peak_rss_mib
edge = EdgeGenerator(sys.argv[1], variant=sys.argv[2], threads=int(sys.argv[3]), text_precision=sys.argv[4])
loaded = time.perf_counter()
result = edge.generate_result([sys.argv[5]], frames=196, seed=0)
done = time.perf_counter()
print(json.dumps({"load_s": loaded - start, "dance_s": done - loaded, "text_s": result.timings.get("text_s"),
                  "peak_rss_mib": peak_rss_mib(), "torch": "torch" in sys.modules,
                  "text_file": edge.text_encoder.path.name}))
"""


def one_run(export_dir: Path, variant: str, threads: int, precision: str) -> dict[str, Any]:
    """A fresh interpreter's load time, dance time and peak RSS."""
    return json_from_process([sys.executable, "-c", ONE_RUN, str(export_dir), variant, str(threads), precision,
                              PROMPT], f"{precision} text, {threads} threads", cwd=REPO)


def held_out_cosine(export_dir: Path) -> dict[str, float]:
    """Cosine of the int8 tower's embeddings to fp32's on the held-out prompts."""
    from kpop_helpers.compress.text_quant import cosine_rows
    from kpop_helpers.edge import EdgeGenerator

    towers = [EdgeGenerator(export_dir, text_precision=p, threads=1).encode(list(HELD_OUT)) for p in ("fp32", "int8")]
    cosine = cosine_rows(*towers)
    return {"min": float(cosine.min()), "mean": float(cosine.mean()), "prompts": len(HELD_OUT)}


def markdown(result: dict[str, Any]) -> str:
    """text_side.md."""
    p = result["protocol"]
    lines = ["# The edge runtime's text side: fp32 vs int8 MiniLM tower", "",
             f"{p['date']} · {p['machine']} · export `{p['export_dir']}`, denoiser `{p['variant']}`, the export's "
             f"sampler, 196 frames, one prompt, a fresh interpreter per run (no torch), {p['repeats']} runs each "
             f"(median time, max peak RSS). Goal: peak RSS <= {GOAL_MIB:.0f} MiB.", "",
             markdown_table(result["rows"], (("text", "text tower"), ("threads", "threads"),
                                             ("size_mb", "text files (MB)"), ("dance_s", "dance (s)"),
                                             ("load_s", "load (s)"), ("peak_rss_mib", "peak RSS (MiB)"),
                                             ("goal", "goal"))), ""]
    if result["cosine"]:
        c, check = result["cosine"], result["export_check"]
        lines += [f"int8 embeddings vs fp32 on {c['prompts']} prompts the export's check did not see: cosine min "
                  f"{c['min']:.4f}, mean {c['mean']:.4f}. The export keeps the int8 tower only when every one of its "
                  f"{check['prompts']} check prompts reaches {check['threshold']} (worst {check['min_cosine']:.4f}).", ""]
    else:
        lines += ["This export has no int8 text tower (`python -m kpop_helpers.compress.text_quant EXPORT` adds it).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-dir", type=Path, required=True)
    parser.add_argument("--variant", default="int8", help="the denoiser variant")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    manifest = json.loads((args.export_dir / "manifest.json").read_text())
    info = manifest["text_encoder"]
    towers = {"fp32": [info["onnx"], info["data"]]}
    if isinstance(info.get("int8"), dict) and info["int8"].get("onnx"):
        towers["int8"] = [info["int8"]["onnx"], info["int8"]["data"]]
    rows = []
    for precision, files in towers.items():
        for threads in args.threads:
            runs = [one_run(args.export_dir, args.variant, threads, precision) for _ in range(args.repeats)]
            peak = max(r["peak_rss_mib"] for r in runs)
            rows.append({"text": precision, "threads": threads, "text_file": runs[0]["text_file"],
                         "size_mb": sum((args.export_dir / f).stat().st_size for f in files) / 1e6,
                         "dance_s": float(np.median([r["dance_s"] for r in runs])),
                         "load_s": float(np.median([r["load_s"] for r in runs])), "peak_rss_mib": peak,
                         "goal": peak <= GOAL_MIB, "torch_imported": any(r["torch"] for r in runs), "runs": runs})
    import onnxruntime

    result = {"protocol": {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "export_dir": str(args.export_dir),
                           "variant": args.variant, "repeats": args.repeats, "goal_mib": GOAL_MIB,
                           "machine": f"{platform.processor() or platform.machine()}, onnxruntime "
                                      f"{onnxruntime.__version__}"},
              "rows": rows, "cosine": held_out_cosine(args.export_dir) if "int8" in towers else {},
              "export_check": info.get("int8", {})}
    write_result_files(args.out, "text_side", result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
