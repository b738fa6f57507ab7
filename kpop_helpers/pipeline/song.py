"""Notebook 07's stage: a song in, a whole dance on its beats out, written to `<work>/songs/<song>` (Drive in Colab).

pick_song (a path, a file in a music folder, Colab's upload dialog or a synthetic demo) -> analyse_song (tempo,
beats, sections) -> song_plan (the prompt each section dances) -> choreograph_song (the dance with the edge runtime
or PyTorch, put on the beat: BVH, NPZ, GIF, MP4 with the song, alignment.png; a SongPreview) -> song_player_html
(the preview with sound) -> download_song_dance (the BVH).
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kpop_helpers.errors import DataError
from kpop_helpers.pipeline.common import load_result, markdown_table, save_result, stage_progress
from kpop_helpers.pipeline.edits import SMOKE_GIF_FRAMES, edit_sampling
from kpop_helpers.pipeline.results import SongPreview
from kpop_helpers.pipeline.settings import WorkDirs
from kpop_helpers.utils import atomic_write_text, staged_path

RUNTIMES = ("edge int8", "PyTorch")  # what RUNTIME in notebook 07 offers
AUDIO_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg",
               ".opus": "audio/ogg", ".flac": "audio/flac", ".m4a": "audio/mp4", ".aac": "audio/aac",
               ".aif": "audio/aiff", ".aiff": "audio/aiff"}
SMOKE_EXCERPT_S = 15.0  # smoke dances only the song's first seconds
MAX_EMBED_MB = 40.0  # larger previews are named, not embedded in the notebook
ALIGNMENT_PLOT_S = 20.0  # the beat plot shows the dance's first seconds (ticks of a whole song would merge)
SHARED_MUSIC = Path(__file__).resolve().parents[3] / "shared" / "data" / "music"  # songs beside a checkout
PROMPTS_EXAMPLE = "A: a smooth groove with small steps; B: powerful hip-hop hits"
_PART = re.compile(r"^\s*([A-Za-z]\d*)\s*:\s*(.*?)\s*$", re.S)


def drive_music_dir(work: WorkDirs) -> Path:
    """Where uploads go: MyDrive/kpop_work/music (shared by every run) when Drive is mounted, else <work>/music."""
    from kpop_helpers.colab import WORK_FOLDER, drive_mounted, my_drive

    return my_drive() / WORK_FOLDER / "music" if drive_mounted() else work.root / "music"


def music_folders(work: WorkDirs, folder: str | Path = "") -> list[Path]:
    """Folders a SONG name is looked up in, in order: `folder`, the uploads folder, $KPOP_MUSIC_DIR, SHARED_MUSIC."""
    chosen = [Path(str(folder).strip()).expanduser()] if str(folder or "").strip() else []
    chosen.append(drive_music_dir(work))
    if os.environ.get("KPOP_MUSIC_DIR", "").strip():
        chosen.append(Path(os.environ["KPOP_MUSIC_DIR"].strip()).expanduser())
    return [f for f in [*chosen, SHARED_MUSIC] if f.is_dir()]


def songs_in(folder: Path) -> list[Path]:
    """The audio files of a folder, by name."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_TYPES and p.name[0] != ".")


def demo_song(folder: Path) -> Path:
    """A synthetic A-B-A song (music.synth: drums, bass and chords, 120 BPM, 48 s) and its credit, made once."""
    from kpop_helpers.music import synth

    path = folder / "demo_song_aba_120bpm.wav"
    if not path.is_file():
        synth.aba_song(120.0).write(path)
        atomic_write_text(path.with_suffix(".txt"), "A synthetic A-B-A demo song (drums, bass and chords) made by "
                                                    "kpop_helpers.music.synth; free to use.\n")
    return path


def pick_song(work: WorkDirs, song: str | Path = "", *, folder: str | Path = "", upload: bool = False) -> Path:
    """The song to dance. song: "upload" (or upload=True: Colab's dialog; files, with any `<song>.txt` credit, go
    to drive_music_dir), a file path, a file name in `music_folders`, or empty: the first song there, else a demo."""
    from kpop_helpers.colab import in_colab

    text = str(song or "").strip()
    if upload or text.lower() == "upload":
        target = drive_music_dir(work)
        if in_colab():
            from kpop_helpers.pipeline.handoff import upload_clips  # Colab's dialog; saves any file to `target`

            found = [p for p in upload_clips(target) if p.suffix.lower() in AUDIO_TYPES]
            if found:
                return found[0]
            print(f"no audio file uploaded (one of {', '.join(AUDIO_TYPES)}): taking the default song")
        else:
            print(f"not in Colab, so no upload dialog: set SONG to a file path or copy songs into {target}")
        text = "" if text.lower() == "upload" else text
    folders = music_folders(work, folder)
    if text:
        given = Path(text).expanduser()
        for path in [given, *([] if given.is_absolute() else [f / text for f in folders])]:
            found = songs_in(path)[:1] if path.is_dir() else [path] if path.is_file() else []
            if found:
                return found[0].absolute()
        raise DataError(f"no song {text!r} in {', '.join(map(str, folders)) or 'any music folder'}", field="SONG",
                        expected='"upload", a path to an audio file or folder, a file name in one of those folders, '
                                 "or empty for the default song")
    found = [p for folder in folders for p in songs_in(folder)]
    return found[0].absolute() if found else demo_song(work.local / "music")


def song_credit(song: str | Path) -> str:
    """"Music: <the credit in <song>.txt>", or a line asking for the credit its licence wants."""
    from kpop_helpers.choreograph import attribution_of

    credit = attribution_of(song)
    return f"Music: {credit}" if credit else (f"Music: {Path(song).name} (no {Path(song).stem}.txt credit beside it: "
                                              "credit the song as its licence asks)")


def parse_section_prompts(text: str) -> dict[str, str]:
    """{label: prompt} of "A: a smooth groove; B: powerful hip-hop hits" (split by ";" or new lines); {} when empty."""
    expected = f'"LABEL: prompt" parts split by ";", one per section label (A, B, ...), e.g. "{PROMPTS_EXAMPLE}"'
    prompts: dict[str, str] = {}
    for i, part in enumerate(p for p in re.split(r"[;\n]", str(text or "")) if p.strip()):
        match = _PART.match(part)
        if match is None or not match.group(2):
            raise DataError(f"part {i + 1} {part.strip()!r} is not 'LABEL: prompt'", field="SECTION_PROMPTS",
                            expected=expected)
        label = match.group(1).upper()
        if label in prompts:
            raise DataError(f"section {label} is given twice", field="SECTION_PROMPTS", expected=expected)
        prompts[label] = match.group(2)
    return prompts


def song_folder(work: WorkDirs, song: str | Path) -> Path:
    """`<work>/songs/<song name>`: where a song's analysis and dance go."""
    return work.root / "songs" / (re.sub(r"[^\w.-]+", "_", Path(song).stem).strip("._") or "song")


def _excerpt(excerpt_s: float, smoke: bool) -> float | None:
    limit = float(excerpt_s or 0)
    if limit < 0:
        raise DataError(f"got {excerpt_s!r}", field="EXCERPT_S", expected="seconds >= 0 (0: the whole song)")
    return min(limit or SMOKE_EXCERPT_S, SMOKE_EXCERPT_S) if smoke else limit or None


def analyse_song(work: WorkDirs, song: str | Path, *, bpm: float = 0, excerpt_s: float = 0, smoke: bool = False):
    """Tempo, beats and sections (a MusicAnalysis) of the song's first `excerpt_s` s (0: all; smoke: at most 15 s;
    bpm 0: detected), written as analysis.json/.png into song_folder."""
    from kpop_helpers.music import analyze, load_audio, plot_analysis

    audio = load_audio(song).head(_excerpt(excerpt_s, smoke))  # as choreograph(excerpt_s=) cuts it
    analysis = analyze(audio, bpm=float(bpm) or None)
    out = song_folder(work, song)
    out.mkdir(parents=True, exist_ok=True)
    analysis.save(out / "analysis.json")
    plot_analysis(analysis, path=out / "analysis.png")  # as write_song_outputs draws it
    return analysis


def _known(analysis: Any, prompts: Mapping[str, str] | None) -> dict[str, str]:
    """The prompts whose label is a section of this song (the others are named and left out)."""
    labels = {s.label for s in analysis.sections} or {"A"}
    unknown = sorted(set(prompts or {}) - labels)
    if unknown:
        print(f"SECTION_PROMPTS: this song has no section {', '.join(unknown)} (its sections: "
              f"{', '.join(sorted(labels))}); left out")
    return {k: v for k, v in (prompts or {}).items() if k in labels}


def song_plan(analysis: Any, prompts: Mapping[str, str] | None = None, *, style: str | None = None) -> str:
    """A markdown table: each section's label, span, bars, loudness and the prompt it dances."""
    from kpop_helpers.editing.song import DEFAULT_STYLE, song_timeline

    timeline = song_timeline(analysis, _known(analysis, prompts), style=style or DEFAULT_STYLE)
    sections = list(analysis.sections)
    rows = [{"section": s.label if s else "A", "span": f"{e.start_s:.1f}-{e.end_s:.1f} s",
             "bars": s.bars if s else "–", "level": f"{s.loudness_db:.1f} dB" if s else "–", "prompt": e.prompt}
            for e, s in zip(timeline.entries, sections if len(sections) == len(timeline.entries) else
                            [None] * len(timeline.entries))]
    return markdown_table(rows, (("section", "section"), ("span", "dances from-to"), ("bars", "bars"),
                                 ("level", "loudness"), ("prompt", "prompt")))


def _generator(work: WorkDirs, runtime: str, smoke: bool, progress: bool) -> tuple[Any, dict[str, Any], str]:
    """(generator, sampler settings, its name) of RUNTIME; smoke: stand-ins via ensure_* and few steps."""
    if runtime == "edge int8":
        from kpop_helpers.edge import EdgeGenerator, read_manifest
        from kpop_helpers.pipeline.edge_stages import ensure_export

        export = Path(ensure_export(work, smoke=smoke, progress=progress).export_dir)
        has_int8 = read_manifest(export)["variants"].get("int8", {}).get("runtime") == "onnxruntime"
        variant = "int8" if has_int8 else "fp32"  # an export made with quantization off has no int8 file
        return (EdgeGenerator(export, variant=variant, progress=progress), edit_sampling(export, smoke),
                f"ONNX Runtime {variant}")
    import torch

    from kpop_helpers.generate import TorchDanceGenerator
    from kpop_helpers.pipeline.previews import load_preview_model
    from kpop_helpers.pipeline.training import ensure_weights

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_preview_model(ensure_weights(work, smoke=smoke, progress=progress).weights).to(device)
    export = work.export if (work.export / "manifest.json").is_file() else None  # its sampler, as the edge runs
    return TorchDanceGenerator(model, device=device, progress=progress), edit_sampling(export, smoke), \
        f"PyTorch ({device})"


def plot_alignment(before: np.ndarray, dance: Any, path: str | Path, *, seconds: float = ALIGNMENT_PLOT_S) -> Path:
    """Music beats and the dance's motion beats before and after alignment (its first `seconds`) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kpop_helpers.editing.beats import motion_beat_times

    music = np.asarray(dance.analysis.beat_times, dtype=np.float64)
    rows = {f"dance, {dance.align} (BAS {dance.bas_after:.2f})": motion_beat_times(dance.features),
            f"dance as generated (BAS {dance.bas_before:.2f})": motion_beat_times(before), "music beats": music}
    fig = Figure(figsize=(12, 2.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.vlines(music, -0.5, len(rows) - 0.5, color="0.85", lw=0.8, zorder=0)
    for i, (colour, times) in enumerate(zip(("tab:green", "tab:orange", "black"), rows.values())):
        ax.plot(times, np.full(len(times), i), "|" if i == 2 else "o", color=colour, ms=12 if i == 2 else 6)
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_xlim(0, min(seconds, dance.seconds))
    ax.set_xlabel("time (s)")
    ax.set_title(f"motion beats (speed minima) against the music's beats: the first {ax.get_xlim()[1]:.0f} s")
    path = Path(path)
    with staged_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    return path


def choreograph_song(work: WorkDirs, song: str | Path, *, analysis: Any = None,
                     prompts: Mapping[str, str] | None = None, style: str | None = None, bpm: float = 0,
                     seed: int = 0, align: str = "snap", runtime: str = "edge int8", mp4: bool = False,
                     excerpt_s: float = 0, smoke: bool = False, progress: bool = True) -> SongPreview:
    """The song danced (analysis: analyse_song's, else made here) with RUNTIME, put on the beat (ALIGN); writes
    write_song_outputs' files, alignment.png and result.json into song_folder."""
    from kpop_helpers.choreograph import ALIGN_METHODS, choreograph, write_song_outputs
    from kpop_helpers.editing.song import DEFAULT_STYLE

    if runtime not in RUNTIMES:
        raise DataError(f"got {runtime!r}", field="RUNTIME", expected=f"one of {', '.join(RUNTIMES)}")
    if align not in ALIGN_METHODS:
        raise DataError(f"got {align!r}", field="ALIGN", expected=f"one of {', '.join(ALIGN_METHODS)}")
    if analysis is None or Path(analysis.source) != Path(song):  # none, or another song's
        analysis = analyse_song(work, song, bpm=bpm, excerpt_s=excerpt_s, smoke=smoke)
    out = song_folder(work, song)
    with stage_progress("choreograph", ["model", "dance", "files", "beat plot"], progress) as bar:
        generator, sampling, used = _generator(work, runtime, smoke, progress)
        bar.next()
        dance = choreograph(song, generator, prompts=_known(analysis, prompts), style=style or DEFAULT_STYLE,
                            seed=seed, align=align, analysis=analysis, **sampling)
        bar.next()
        paths = write_song_outputs(dance, out, mp4=mp4, gif_frames=SMOKE_GIF_FRAMES if smoke else None,
                                   progress=progress)
        bar.next()
        png = plot_alignment(dance.generated, dance, out / "alignment.png")
    preview = SongPreview(
        out_dir=str(out), song=str(song), attribution=song_credit(song), runtime=used,
        dance_seconds=dance.seconds, tempo_bpm=float(analysis.tempo_bpm),
        sections=[[s.start_s, s.end_s, s.label] for s in analysis.sections],
        timeline=[[e.start_s, e.end_s, e.prompt] for e in dance.timeline.entries], align=align,
        bas_before=dance.bas_before, bas_after=dance.bas_after, alignment=dict(dance.alignment),
        outputs={k: str(v) for k, v in paths.items()}, alignment_png=str(png), timings=dict(dance.timings),
        warnings=list(analysis.warnings), seconds=bar.seconds)
    save_result(preview, out)
    return preview


def alignment_summary(preview: SongPreview) -> str:
    """One line: the beat alignment score before and after, beats matched, the speed range used."""
    info = preview.alignment
    line = f"beat alignment score {preview.bas_before:.3f} -> {preview.bas_after:.3f} ({preview.align})"
    if preview.align != "none" and "slope_min" in info:
        line += (f": {info.get('matched', 0)} of {info.get('dance_beats', 0)} motion beats matched to music beats, "
                 f"local speed {info['slope_min']:.2f}-{info['slope_max']:.2f}x")
    return line


def _embed(tag: str, path: str | Path, mime: str, max_mb: float) -> str:
    path = Path(path)
    size = path.stat().st_size / 2**20
    if size > max_mb:
        return f"<p>{html.escape(path.name)} ({size:.0f} MiB) is too large to show here: {html.escape(str(path))}</p>"
    src = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
    if tag == "img":
        return f'<img src="{src}" style="max-width:100%"/>'
    return f'<{tag} controls preload="metadata" src="{src}" style="max-width:100%; display:block"></{tag}>'


def song_player_html(preview: SongPreview, *, max_mb: float = MAX_EMBED_MB) -> str:
    """The preview with sound, embedded: preview.mp4 (the song muxed in) in a <video>, else preview.gif above an
    <audio> player of the song (they play separately); the song's credit beneath."""
    outputs = preview.outputs
    if outputs.get("mp4"):
        parts = [_embed("video", outputs["mp4"], "video/mp4", max_mb)]
    else:
        song = Path(preview.song)
        parts = [_embed("img", outputs["gif"], "image/gif", max_mb),
                 _embed("audio", song, AUDIO_TYPES.get(song.suffix.lower(), "audio/mpeg"), max_mb),
                 "<p><small>The GIF and the song play separately: tick MP4 for the dance with its sound.</small></p>"]
    credit = html.escape(preview.attribution or song_credit(preview.song)).replace("\n", "<br/>")
    return f'<div>{"".join(parts)}<p style="font-size:90%">{credit}</p></div>'


def song_files(preview: SongPreview) -> str:
    """A markdown table of the files written for the song (kind, file, size)."""
    rows = [{"kind": kind, "file": Path(p).name, "size": f"{Path(p).stat().st_size / 1024:.1f} KiB"}
            for kind, p in [*preview.outputs.items(), ("beat plot", preview.alignment_png)] if Path(p).is_file()]
    return markdown_table(rows, (("kind", "kind"), ("file", f"file in {preview.out_dir}"), ("size", "size")))


def download_song_dance(work: WorkDirs, preview: SongPreview) -> Path:
    """In Colab, download the BVH as `<song>_dance.bvh` (a copy on the local disk); elsewhere print where it is."""
    from kpop_helpers.colab import in_colab

    bvh, blender = Path(preview.outputs["bvh"]), "Blender: File > Import > Motion Capture (.bvh)"
    if not in_colab():
        print(f"BVH: {bvh} ({blender})")
        return bvh
    from google.colab import files

    named = work.local / "downloads" / f"{Path(preview.out_dir).name}_dance.bvh"
    named.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bvh, named)
    files.download(str(named))
    print(f"downloading {named.name} ({blender})")
    return named
