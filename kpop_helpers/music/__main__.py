"""CLI: `python -m kpop_helpers.music SONG [--bpm 120] [--excerpt 30] [--out analysis.json] [--figure analysis.png]`.

Analyses a song (tempo, beats, downbeats, eight-counts, sections), writes analysis.json and optionally its
figure, and prints one JSON line: the summary, the peak memory of this process (MiB) and the seconds it took.
`music.isolated.analyze_in_process` runs this so a generating process never holds the analysis' memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from kpop_helpers.errors import DataError


def main(argv: list[str] | None = None) -> int:
    """Analyse, write, print the JSON line; 0, or 2 with the error on stderr."""
    p = argparse.ArgumentParser(prog="python -m kpop_helpers.music", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("song", help="audio file: WAV, FLAC, Ogg, MP3 (and what ffmpeg reads)")
    p.add_argument("--bpm", type=float, default=None, help="force the tempo (and the grid for beatless audio)")
    p.add_argument("--excerpt", type=float, default=None, help="only the song's first seconds")
    p.add_argument("--out", default="analysis.json", help="where analysis.json goes")
    p.add_argument("--figure", default=None, help="also draw the analysis figure to this PNG")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        from kpop_helpers.music import analyze, load_audio
        from kpop_helpers.utils import peak_rss_mib

        analysis = analyze(load_audio(args.song).head(args.excerpt), bpm=args.bpm)
        path = analysis.save(args.out)
        peak = peak_rss_mib()  # before the figure: matplotlib is not part of the analysis
        if args.figure:
            from kpop_helpers.music import plot_analysis

            plot_analysis(analysis, path=args.figure)
    except (DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"analysis": str(path), "summary": analysis.summary(), "peak_rss_mib": peak,
                      "seconds": round(time.perf_counter() - start, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
