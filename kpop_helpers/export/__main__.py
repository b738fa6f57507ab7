"""CLI: `python -m kpop_helpers.export --model-path M --output-dir D --format all|onnx|torchscript [--config C]`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from kpop_helpers.errors import DataError

FORMAT_CHOICES = {"all": ["onnx", "torchscript", "torch_export"], "onnx": ["onnx"], "torchscript": ["torchscript"],
                  "torch_export": ["torch_export"], "config": None}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kpop_helpers.export", description=__doc__)
    p.add_argument("--model-path", required=True, help=".safetensors export, training checkpoint .pt or official .pt")
    p.add_argument("--output-dir", required=True, help="folder for the artifacts and manifest.json")
    p.add_argument("--format", default="all", choices=sorted(FORMAT_CHOICES),
                   help="all = ONNX (+ the config's int8/fp16/pruned variants) + TorchScript + torch.export; "
                        "config = the config's export.formats")
    p.add_argument("--config", default="edge_config.json", help="edge_config.json (defaults if the default is absent)")
    p.add_argument("--stats", default=None, help="folder with Mean.npy/Std.npy when the weights carry none")
    p.add_argument("--train-data", default=None, help="clips for the recovery fine-tune after structured pruning")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads for the parity runs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the export; prints a short summary and returns 0, or 2 with the error message."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")
    from kpop_helpers.export.bundle import ModelExporter

    train_config = None
    if args.train_data:
        from kpop_helpers.train import TrainConfig

        train_config = TrainConfig(data=args.train_data)
    try:
        exporter = ModelExporter(args.model_path, args.config, stats_dir=args.stats, train_config=train_config,
                                 threads=args.threads, progress=not args.quiet)
        manifest = exporter.export_all(args.output_dir, FORMAT_CHOICES[args.format])
    except (DataError, RuntimeError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return 2
    summary = {name: {"file": v["file"], "MB": round(v["size_bytes"] / 1e6, 2),
                      "parity_max_abs": v.get("parity", {}).get("max_abs"),
                      "rel_rms_vs_fp32": v.get("error", {}).get("denoiser_rel_rms")}
               for name, v in manifest["variants"].items()}
    print(json.dumps({"output_dir": args.output_dir, "variants": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
