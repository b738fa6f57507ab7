"""CLI: `python -m kpop_helpers.train --data ... --out ... --resume auto [--config cfg.json] [--key value ...]`.

Also runs under Hugging Face Accelerate: `accelerate launch -m kpop_helpers.train ...`.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields
from typing import Any

from kpop_helpers.train.config import TrainConfig


def config_parser(config_cls: type = TrainConfig, prog: str = "python -m kpop_helpers.train",
                  description: str | None = __doc__) -> argparse.ArgumentParser:
    """A flag per field of the config dataclass (--steps, --batch-size, ...), plus --config and --quiet."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help=f"JSON file with {config_cls.__name__} fields; command-line flags override it")
    for f in fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "sample_prompts":
            p.add_argument(flag, nargs="*", default=None)
        elif f.type in ("bool", bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=None)
        elif f.type in ("int", int):
            p.add_argument(flag, type=int, default=None)
        elif f.type in ("float", float):
            p.add_argument(flag, type=float, default=None)
        else:
            p.add_argument(flag, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(argv: list[str] | None = None, config_cls: type = TrainConfig,
                     parser: argparse.ArgumentParser | None = None) -> tuple[Any, argparse.Namespace]:
    """Parse the command line into a TrainConfig (or `config_cls`, a TrainConfig subclass)."""
    args = (parser or config_parser(config_cls)).parse_args(argv)
    overrides: dict[str, Any] = {f.name: getattr(args, f.name) for f in fields(config_cls)
                                 if getattr(args, f.name) is not None}
    cfg = config_cls.load(args.config, **overrides) if args.config else config_cls.from_dict(overrides)
    return cfg, args


def train(cfg: TrainConfig, *, progress: bool = True):
    """Build a Trainer for `cfg` and run it to the end."""
    from kpop_helpers.train.trainer import Trainer

    return Trainer(cfg, progress=progress).train()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg, args = config_from_args(argv)
    result = train(cfg, progress=not args.quiet)
    print(json.dumps({"step": result.step, "train_loss": result.train_loss, "val_loss": result.val_loss,
                      "checkpoint": result.checkpoint, "weights": result.weights,
                      "steps_per_second": round(result.steps_per_second, 3)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
