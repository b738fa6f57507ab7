"""The command line of dance generation, shared by `python -m kpop_helpers.generate` (PyTorch or an export
folder) and `python -m kpop_helpers.edge` (ONNX Runtime only): the same arguments, the same outputs.

    python -m kpop_helpers.edge --export-dir export --prompt "a hip-hop dance" --seconds 60 --out dance.bvh
    python -m kpop_helpers.edge --export-dir export --timeline timeline.json --out dance.npz --out dance.gif
    python -m kpop_helpers.generate --model model.safetensors --keep-clip take.bvh --keep lower --out edit.bvh
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.data.bvh import write_bvh
from kpop_helpers.data.clip import MotionClip
from kpop_helpers.data.io import load_clips, save_json, save_npz
from kpop_helpers.editing.constraints import BODY_PARTS, body_parts, continuation, keyframes
from kpop_helpers.errors import DataError
from kpop_helpers.motion.skeleton import FPS_HUMANML

OUTPUT_SUFFIXES = (".bvh", ".npz", ".json", ".gif")


def add_dance_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments every dance CLI takes: what to dance, how long, what to keep, how to sample, where to write."""
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", action="append", help="a text prompt (repeat for several dances)")
    what.add_argument("--timeline", help="JSON file: [{\"start\": s, \"end\": s, \"prompt\": ...}, ...]")
    p.add_argument("--seconds", type=float, default=None, help="dance length (default: the timeline's end, the "
                   "kept clip's length, or the model's default)")
    p.add_argument("--keep-clip", help="a clip to edit or continue (.bvh, .npz, .json, as the data loaders read)")
    p.add_argument("--clip-index", type=int, default=0, help="which clip of --keep-clip's file")
    p.add_argument("--keep", default="frames",
                   help="frames (keyframes/spans of the clip), lower, upper, or comma-separated T2M joint names")
    p.add_argument("--keep-seconds", default=None, help="spans of the clip to keep, e.g. 0-2,8-9.5 (default all)")
    p.add_argument("--at", type=float, default=0.0, help="where the kept clip starts in the dance (seconds)")
    p.add_argument("--continue-seconds", type=float, default=None, help="continue the clip by this many seconds")
    p.add_argument("--sampler", default=None, help="ddpm or ddim (default: the export's / ddpm)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overlap", type=int, default=None, help="frames shared by neighbouring windows of a long dance")
    p.add_argument("--blend", default=None, choices=["taper", "mean", "first"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", action="append", required=True,
                   help=f"output file, by suffix {', '.join(OUTPUT_SUFFIXES)} (repeat for several)")
    return p


def _spans(text: str | None) -> list[tuple[float, float]] | None:
    if text is None:
        return None
    spans = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            spans.append((float(lo), float(hi)))
        except ValueError as exc:
            raise DataError(f"span {part!r}", field="--keep-seconds", expected="start-end in seconds, e.g. 0-2,8-9.5") from exc
        if not sep:
            raise DataError(f"span {part!r}", field="--keep-seconds", expected="start-end in seconds")
    return spans


def request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of `generate` / `EdgeGenerator.generate_result` from parsed CLI arguments."""
    for out in args.out:
        if Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
            raise DataError(f"output {out}", field="--out", expected=f"a file ending in one of {OUTPUT_SUFFIXES}")
    request: dict[str, Any] = {"seconds": args.seconds, "seed": args.seed, "overlap": args.overlap, "blend": args.blend}
    if args.timeline:
        request["timeline"] = Path(args.timeline)
    else:
        request["prompts"] = list(args.prompt)
    if args.keep_clip:
        clips, _ = load_clips(args.keep_clip, progress=False)
        if not 0 <= args.clip_index < len(clips):
            raise DataError(f"clip {args.clip_index} of {len(clips)}", path=args.keep_clip, field="--clip-index",
                            expected=f"0..{len(clips) - 1}")
        clip = clips[args.clip_index]
        at = round(args.at * FPS_HUMANML)
        if args.continue_seconds is not None:
            request["constraints"] = continuation(clip, args.continue_seconds)
        elif args.keep == "frames":
            request["constraints"] = keyframes(clip, seconds=_spans(args.keep_seconds), at=at)
        else:
            keep = args.keep if args.keep in BODY_PARTS else [name.strip() for name in args.keep.split(",")]
            request["constraints"] = body_parts(clip, keep, at=at)
    return request


def write_outputs(joints: np.ndarray, outputs: list[str], *, prompts: list[str], seams: list[tuple[int, int]],
                  progress: bool = True) -> list[Path]:
    """Write dances [B,T,22,3] to every output (BVH, NPZ/JSON clips, GIF); several dances get _0, _1 ... names."""
    written = []
    for out in outputs:
        path = Path(out)
        for b in range(joints.shape[0]):
            target = path if joints.shape[0] == 1 else path.with_name(f"{path.stem}_{b}{path.suffix}")
            clip = MotionClip(positions=joints[b], fps=FPS_HUMANML, texts=[prompts[min(b, len(prompts) - 1)]],
                              source=target.name)
            suffix = target.suffix.lower()
            if suffix == ".bvh":
                write_bvh(target, clip)
            elif suffix == ".npz":
                save_npz(target, [clip])
            elif suffix == ".json":
                save_json(target, [clip])
            else:
                from kpop_helpers.viz.edits import save_long_dance_gif

                save_long_dance_gif(joints[b], target, seams=seams, caption=clip.text, progress=progress)
            written.append(target)
    return written


def summary(joints: np.ndarray, written: list[Path], plan: Any, timings: dict[str, float] | None = None) -> str:
    """One JSON line for the terminal: frames, seconds, windows, outputs (and timings when measured)."""
    info = {"dances": int(joints.shape[0]), "frames": int(joints.shape[1]),
            "seconds": round(joints.shape[1] / FPS_HUMANML, 2),
            "windows": 1 if plan.windows is None else plan.windows.count, "outputs": [str(p) for p in written]}
    if timings:
        info["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    return json.dumps(info)
