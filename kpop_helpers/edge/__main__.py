"""CLI: `python -m kpop_helpers.edge --export-dir DIR [--variant int8] --prompt TEXT | --timeline FILE --out F ...`.

Dances (of any length, edits of a kept clip) with ONNX Runtime and numpy only: no torch is imported.
The arguments are `kpop_helpers.editing.cli`'s, the same as `python -m kpop_helpers.generate`.
"""

from __future__ import annotations

import argparse
import sys

from kpop_helpers.errors import DataError


def main(argv: list[str] | None = None) -> int:
    """Generate and write the dance(s); prints one JSON summary line and returns 0, or 2 with the error."""
    from kpop_helpers.editing.cli import add_dance_arguments, request_from_args, summary, write_outputs

    p = argparse.ArgumentParser(prog="python -m kpop_helpers.edge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export-dir", required=True, help="an export folder (manifest.json, ONNX files)")
    p.add_argument("--variant", default="int8", help="the manifest's ONNX variant (int8, fp32, fp16, ...)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = add_dance_arguments(p).parse_args(argv)
    try:
        from kpop_helpers.edge.runtime import EdgeGenerator

        request = request_from_args(args)
        edge = EdgeGenerator(args.export_dir, variant=args.variant, threads=args.threads, progress=not args.quiet)
        result = edge.generate_result(sampler=args.sampler, steps=args.steps, guidance=args.guidance, **request)
        written = write_outputs(result.joints, args.out, prompts=result.prompts, seams=result.plan.seams(),
                                progress=not args.quiet)
    except (DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(result.joints, written, result.plan, result.timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
