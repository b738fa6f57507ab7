"""CLI: `python -m kpop_helpers.distill --teacher W --data NPZ --out DIR --resume auto [--stage guidance|steps]`.

Every flag of `python -m kpop_helpers.train` works here too (--steps, --batch-size, --drive-dir, --wandb, ...);
also under Accelerate: `accelerate launch -m kpop_helpers.distill ...`. Prints one JSON summary, with the
sampler the student is made for (`SamplerSpec`: guidance 1.0, and DDIM with --student-steps for stage "steps").
"""

from __future__ import annotations

import json
import logging

from kpop_helpers.distill.config import DistillConfig
from kpop_helpers.errors import DataError
from kpop_helpers.train.__main__ import config_from_args, config_parser


def main(argv: list[str] | None = None) -> int:
    """Distil; 0, or 2 with a DataError on stderr."""
    from kpop_helpers.distill.distiller import Distiller, student_sampling

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = config_parser(DistillConfig, prog="python -m kpop_helpers.distill", description=__doc__)
    try:
        cfg, args = config_from_args(argv, DistillConfig, parser)
        result = Distiller(cfg, progress=not args.quiet).train()
    except DataError as exc:
        parser.exit(2, f"error: {exc}\n")
    spec = student_sampling(cfg)
    print(json.dumps({"step": result.step, "train_loss": result.train_loss, "val_loss": result.val_loss,
                      "checkpoint": result.checkpoint, "weights": result.weights,
                      "sampling": {"sampler": spec.sampler, "steps": spec.steps, "guidance": spec.guidance},
                      "steps_per_second": round(result.steps_per_second, 3)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
