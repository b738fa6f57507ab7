"""CLI: export a model, or turn an export folder into a Triton model repository.

    python -m kpop_helpers.export --model-path M --output-dir D --format all|onnx|torchscript|torch_export|config
    python -m kpop_helpers.export --format triton --export-dir D --output-dir R [--variant int8]
        [--max-batch-size 64] [--instance cpu|gpu|auto] [--threads N]

--format triton reads an existing export folder (no model is loaded, --model-path is not taken) and writes
R/kpop_denoiser/ (config.pbtxt, 1/model.onnx, README.txt) for `tritonserver --model-repository=R`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from kpop_helpers.errors import DataError

FORMAT_CHOICES = {"all": ["onnx", "torchscript", "torch_export"], "onnx": ["onnx"], "torchscript": ["torchscript"],
                  "torch_export": ["torch_export"], "config": None, "triton": None}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kpop_helpers.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", default=None,
                   help=".safetensors export, training checkpoint .pt or official .pt (every format but triton)")
    p.add_argument("--output-dir", required=True,
                   help="folder for the artifacts and manifest.json (triton: the model repository)")
    p.add_argument("--format", default="all", choices=sorted(FORMAT_CHOICES),
                   help="all = ONNX (+ the config's int8/fp16/pruned variants) + TorchScript + torch.export; "
                        "config = the config's export.formats; triton = a Triton repository from --export-dir")
    p.add_argument("--config", default="edge_config.json", help="edge_config.json (defaults if the default is absent)")
    p.add_argument("--stats", default=None, help="folder with Mean.npy/Std.npy when the weights carry none")
    p.add_argument("--train-data", default=None, help="clips for the recovery fine-tune after structured pruning")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime threads for the parity runs (triton: intra_op_thread_count per instance)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    triton = p.add_argument_group("--format triton")
    triton.add_argument("--export-dir", default=None, help="an export folder written by this CLI (manifest.json)")
    triton.add_argument("--variant", default="int8", help="the manifest's ONNX variant to serve (int8, fp32, ...)")
    triton.add_argument("--max-batch-size", type=int, default=None,
                        help="largest batch Triton forms or accepts (default 64; 0: no batching)")
    triton.add_argument("--instance", default="cpu", choices=["cpu", "gpu", "auto"],
                        help="instance_group kind (int8 is a CPU model; auto: Triton decides)")
    return p


def _triton(args: argparse.Namespace) -> int:
    from kpop_helpers.export.triton import DEFAULT_MAX_BATCH, write_triton_repository

    max_batch = DEFAULT_MAX_BATCH if args.max_batch_size is None else args.max_batch_size
    try:
        model_dir = write_triton_repository(args.export_dir, args.output_dir, variant=args.variant,
                                            max_batch_size=max_batch, instance=args.instance, threads=args.threads)
    except (DataError, OSError) as exc:
        print(f"triton repository failed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"repository": args.output_dir, "model": model_dir.name, "variant": args.variant,
                      "config": str(model_dir / "config.pbtxt"), "readme": str(model_dir / "README.txt")}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the export; prints a short summary and returns 0, or 2 with the error message."""
    p = _parser()
    args = p.parse_args(argv)
    if args.format == "triton":
        if args.export_dir is None or args.model_path is not None:
            p.error("--format triton takes --export-dir (an existing export folder), not --model-path")
        return _triton(args)
    if args.model_path is None:
        p.error(f"--format {args.format} needs --model-path")
    if args.export_dir is not None or args.max_batch_size is not None:
        p.error("--export-dir and --max-batch-size belong to --format triton")
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
