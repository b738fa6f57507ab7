"""CLI: `python -m kpop_helpers.choreograph SONG --export-dir DIR [--prompt P | --sections S] [--bpm] --out DIR`.

The whole song, torch-free (numpy analysis + ONNX Runtime): dance.bvh (loads in Blender), dance.npz,
timeline.json, analysis.json/.png, choreography.json (beat alignment before/after, timings), preview.gif, and
with --mp4 preview.mp4 with the song's audio.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kpop_helpers.errors import DataError


def _prompts(args: argparse.Namespace):
    if args.sections:
        path = Path(args.sections)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read the section prompts: {exc}", path=path, field="--sections",
                            expected='{"A": "prompt", "B": "prompt"} or a list with one prompt per section') from exc
        if not isinstance(value, (dict, list)):
            raise DataError(f"got {type(value).__name__}", path=path, field="--sections",
                            expected='{"A": "prompt", ...} or a list of prompts')
        return value
    return args.prompt


def main(argv: list[str] | None = None) -> int:
    """Choreograph the song and write the outputs; prints one JSON summary line; 0, or 2 with the error."""
    from kpop_helpers.choreograph.core import ALIGN_METHODS, choreograph
    from kpop_helpers.choreograph.outputs import write_song_outputs
    from kpop_helpers.editing.song import DEFAULT_STYLE
    from kpop_helpers.utils import peak_rss_mib

    p = argparse.ArgumentParser(prog="python -m kpop_helpers.choreograph", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("song", help="audio file: WAV, FLAC, Ogg, MP3 (and what ffmpeg reads)")
    p.add_argument("--export-dir", required=True, help="an export folder (manifest.json, ONNX files)")
    p.add_argument("--variant", default="int8")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--prompt", help="one prompt for the whole song")
    what.add_argument("--sections", help='JSON: {"A": "prompt", "B": ...} by section label, or one prompt each')
    p.add_argument("--style", default=DEFAULT_STYLE, help="the style prompt sections get with an intensity word")
    p.add_argument("--bpm", type=float, default=None, help="force the tempo (and the grid for beatless audio)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--align", default="snap", choices=ALIGN_METHODS)
    p.add_argument("--max-speed-change", type=float, default=0.15)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--mp4", action="store_true", help="also render preview.mp4 with the song's audio (slow)")
    p.add_argument("--no-gif", action="store_true")
    p.add_argument("--no-figure", action="store_true", help="no analysis.png (a backend that needs only the data)")
    p.add_argument("--gif-frames", type=int, default=None, help="frames in preview.gif (default: the writer's cap)")
    p.add_argument("--excerpt", type=float, default=None, help="only the song's first seconds")
    p.add_argument("--analysis-in-process", action="store_true",
                   help="analyse the song in this process (default: a short-lived process of its own, so the "
                        "generating process never holds the decoding's memory)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        from kpop_helpers.edge.runtime import EdgeGenerator

        edge = EdgeGenerator(args.export_dir, variant=args.variant, threads=args.threads, progress=not args.quiet)
        sampling = {"steps": args.steps} if args.steps else {}
        dance = choreograph(args.song, edge, prompts=_prompts(args), style=args.style, bpm=args.bpm,
                            seed=args.seed, align=args.align, max_speed_change=args.max_speed_change,
                            excerpt_s=args.excerpt, isolate_analysis=not args.analysis_in_process, **sampling)
        paths = write_song_outputs(dance, args.out, gif=not args.no_gif, mp4=args.mp4, figure=not args.no_figure,
                                   gif_frames=args.gif_frames, progress=not args.quiet)
    except (DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"song": dance.song, "seconds": round(dance.seconds, 2),
                      "tempo_bpm": round(float(dance.analysis.tempo_bpm), 1),
                      "sections": "".join(s.label for s in dance.analysis.sections),
                      "bas_before": round(dance.bas_before, 3), "bas_after": round(dance.bas_after, 3),
                      "timings_s": {k: round(v, 2) for k, v in dance.timings.items()},
                      "peak_rss_mib": peak_rss_mib(), "analysis_process": dance.analysis_process,
                      "outputs": {k: str(v) for k, v in paths.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
