"""Captions and styles for motion files that have none inside (BVH above all), kept beside the files.

Two ways, both read by load_clips:
- a sidecar ``<name>.txt`` beside ``<name>.bvh`` (or .json/.npz): one caption per line, UTF-8; blank lines
  and lines starting with ``#`` are ignored. HumanML3D's ``caption#tokens#start#end`` lines are accepted: a
  line whose start/end (seconds) are not both 0 (or NaN) describes the cut ``[int(start * fps), int(end * fps))``
  of the clip, which becomes a clip of its own; the whole clip is kept when some line has no cut (or none
  has), as HumanML3D does.
- one index per folder, ``captions.csv`` or ``captions.json``, for the files in that folder and below (the
  nearest index naming a file wins). Per file: ``captions`` (CSV: several separated by `` | ``, or one row per
  caption), ``style``, and optionally ``fps`` (the true frame rate of a BVH whose header is wrong) and
  ``unit`` ('cm', 'mm', 'm', 'inch', 'cmu' or metres per unit). Files are named by their path relative to
  the index's folder, their file name or their stem. captions.json is ``{"take1.bvh": {"captions": [...],
  "style": "hiphop", "fps": 60, "unit": "cm"}, "take2.bvh": "one caption", ...}`` or a list of records
  with a ``file`` key.

Captions and styles only fill clips that have none of their own. A style can also come from the parent
folder's name (load_clips(style_from_folder=True)) when neither the file nor the index gives one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kpop_helpers.data.clip import MotionClip
from kpop_helpers.data.validate import MIN_FRAMES, unit_scale, validate_clip, validate_fps
from kpop_helpers.errors import DataError

INDEX_NAMES = ("captions.csv", "captions.json")
_CAPTION_KEYS = ("captions", "caption", "texts", "text")


@dataclass(frozen=True)
class Caption:
    """One caption; start/end in seconds when it describes a cut of the clip (None: the whole clip)."""

    text: str
    start: float | None = None
    end: float | None = None


@dataclass
class FileCaptions:
    """What the sidecar and the index say about one motion file."""

    captions: list[Caption] = field(default_factory=list)
    style: str | None = None
    fps: float | None = None
    unit: str | float | None = None
    sources: list[str] = field(default_factory=list)


def parse_caption_line(line: str, *, path: object = None, record: int | str | None = None) -> Caption | None:
    """A caption from one line: plain text or HumanML3D 'caption#tokens#start#end'; None for blanks/comments.

    record: the line number or index entry, for error messages."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    parts = line.split("#")
    text = parts[0].strip()
    if not text:
        raise DataError("caption is empty", path=path, record=record, expected="text before the first '#'")
    if len(parts) < 4:
        return Caption(text)
    try:
        start, end = float(parts[-2] or "nan"), float(parts[-1] or "nan")
    except ValueError:
        raise DataError(f"start/end '{parts[-2]}'/'{parts[-1]}' are not numbers", path=path, record=record,
                        expected="HumanML3D's caption#tokens#start#end with start and end in seconds") from None
    start, end = (0.0 if math.isnan(v) else v for v in (start, end))
    if start == 0.0 and end == 0.0:
        return Caption(text)
    if not 0 <= start < end:
        raise DataError(f"cut {start}-{end} s", path=path, record=record,
                        expected="0 <= start < end (seconds), or 0 and 0 for the whole clip")
    return Caption(text, start, end)


def read_sidecar(path: str | Path) -> list[Caption]:
    """The captions of a sidecar .txt (one per line)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read file: {exc}", path=path) from None
    found = (parse_caption_line(line, path=path, record=n + 1) for n, line in enumerate(text.splitlines()))
    return [c for c in found if c is not None]


def _entry(raw: Any, *, path: Path, key: str) -> FileCaptions:
    """One index entry (a caption, a list of captions or a record) as FileCaptions."""
    if isinstance(raw, (str, list)):
        raw = {"captions": raw}
    if not isinstance(raw, dict):
        raise DataError(f"is a {type(raw).__name__}", path=path, record=key,
                        expected="captions (a string or a list) or {captions, style, fps, unit}")
    texts: list[str] = []
    for name in _CAPTION_KEYS:
        value = raw.get(name)
        if value is None or value == "":
            continue
        values = value.split(" | ") if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DataError(f"is {value!r}", path=path, record=key, field=name,
                            expected="a string or a list of strings")
        texts += values
    captions = [c for c in (parse_caption_line(t, path=path, record=key) for t in texts) if c is not None]
    style = raw.get("style") or None
    if style is not None and not isinstance(style, str):
        raise DataError(f"is {style!r}", path=path, record=key, field="style", expected="a string such as 'hiphop'")
    fps = raw.get("fps")
    if isinstance(fps, str) and fps:
        try:
            fps = float(fps)
        except ValueError:
            pass  # validate_fps names it
    fps = None if fps in (None, "") else validate_fps(fps, path=path, record=key)
    unit = raw.get("unit")
    if unit in (None, ""):
        unit = None
    else:
        unit = _number_or_name(unit)
        unit_scale(unit, path=path)  # raises on an unknown unit
    return FileCaptions(captions, style, fps, unit, [str(path)])


def _number_or_name(value: Any) -> str | float:
    """'cm' stays a name; '0.01' (a CSV cell) becomes metres per unit."""
    try:
        return float(value) if isinstance(value, str) else value
    except ValueError:
        return value


def read_index(path: str | Path) -> dict[str, FileCaptions]:
    """A captions.csv / captions.json index: {file key: FileCaptions}."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the captions index: {exc}", path=path) from None
    entries: dict[str, FileCaptions] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"unreadable JSON at line {exc.lineno}: {exc.msg}", path=path) from None
        if isinstance(data, list):
            pairs = []
            for n, record in enumerate(data):
                if not isinstance(record, dict) or not isinstance(record.get("file"), str):
                    raise DataError("has no 'file'", path=path, record=n, expected="{file, captions, style, ...}")
                pairs.append((record["file"], record))
        elif isinstance(data, dict):
            pairs = list(data.items())
        else:
            raise DataError(f"top level is a {type(data).__name__}", path=path,
                            expected='{"take.bvh": {"captions": [...], "style": ...}} or a list of records')
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "file" not in [f.strip() for f in reader.fieldnames]:
            raise DataError(f"columns {reader.fieldnames}", path=path,
                            expected="a header row with 'file' and e.g. 'captions', 'style', 'fps', 'unit'")
        pairs = [((row.get("file") or "").strip(), {k.strip(): (v or "").strip() for k, v in row.items() if k})
                 for row in reader]
    for key, raw in pairs:
        if not key:
            raise DataError("a row has no file name", path=path, field="file")
        entry = _entry(raw, path=path, key=key)
        if key in entries:  # CSV: one row per caption
            old = entries[key]
            entry = FileCaptions(old.captions + entry.captions, old.style or entry.style, old.fps or entry.fps,
                                 old.unit if old.unit is not None else entry.unit, old.sources)
        entries[key] = entry
    return entries


class CaptionFinder:
    """Finds the sidecar and the nearest index entry of each motion file below a root (indexes read once)."""

    def __init__(self, root: str | Path):
        root = Path(root)
        self.root = root if root.is_dir() else root.parent
        self._indexes: dict[Path, list[tuple[Path, dict[str, FileCaptions]]]] = {}
        self.used: set[tuple[str, str]] = set()

    def _index_files(self, folder: Path) -> list[tuple[Path, dict[str, FileCaptions]]]:
        if folder not in self._indexes:
            self._indexes[folder] = [(folder / n, read_index(folder / n)) for n in INDEX_NAMES
                                     if (folder / n).is_file()]
        return self._indexes[folder]

    def find(self, file: str | Path) -> FileCaptions:
        """The sidecar's captions and the nearest index entry (captions, style, fps, unit) of one file."""
        file = Path(file)
        found = FileCaptions()
        sidecar = file.with_suffix(".txt")
        if sidecar.is_file():
            found.captions += read_sidecar(sidecar)
            found.sources.append(str(sidecar))
        folder = file.parent
        while True:
            for index_path, entries in self._index_files(folder):
                rel = file.relative_to(folder).as_posix()
                key = next((k for k in (rel, file.name, file.stem) if k in entries), None)
                if key is not None:
                    entry = entries[key]
                    self.used.add((str(index_path), key))
                    known = {c.text for c in found.captions}
                    found.captions += [c for c in entry.captions if c.text not in known]
                    found.style, found.fps, found.unit = entry.style, entry.fps, entry.unit
                    found.sources += entry.sources
                    return found
            if folder == self.root or folder.parent == folder or self.root not in folder.parents:
                return found
            folder = folder.parent

    def unused_entries(self) -> list[str]:
        """Index entries that named no loaded file (a typo, or a file that is not there)."""
        return [f"{path}: '{key}'" for folder in self._indexes.values() for path, entries in folder
                for key in entries if (str(path), key) not in self.used]


def apply_captions(clip: MotionClip, found: FileCaptions, *, style: str | None = None,
                   min_frames: int = MIN_FRAMES, expected_joints: int | None = None,
                   errors: list[DataError] | None = None) -> list[MotionClip]:
    """The clip with the captions and style found (only where it has none), and one clip per HumanML3D cut.

    style: a fallback style (e.g. the folder's name). A cut shorter than min_frames raises DataError, or is
    left out and its error appended to `errors` when a list is given."""
    style = clip.style or found.style or style
    if clip.texts or not found.captions:
        return [replace(clip, style=style)]
    whole = [c.text for c in found.captions if c.start is None]
    out = [replace(clip, texts=whole, style=style)] if whole else []
    cuts: dict[tuple[float, float], list[str]] = {}
    for c in found.captions:
        if c.start is not None and c.end is not None:
            cuts.setdefault((c.start, c.end), []).append(c.text)
    for (start, end), texts in cuts.items():
        first, last = int(start * clip.fps), min(int(end * clip.fps), clip.num_frames)
        cut = replace(clip, positions=clip.positions[first:last], texts=texts, style=style)
        try:
            out.append(validate_clip(cut, path=clip.source, record=f"cut {start:g}-{end:g} s",
                                     expected_joints=expected_joints, min_frames=min_frames, check_scale=False))
        except DataError as exc:
            if errors is None:
                raise
            errors.append(exc)
    return out


def uncaptioned_warning(clips: list[MotionClip], *, where: str = "") -> str | None:
    """A message when most clips have no caption (training on them is unconditioned), else None."""
    missing = sum(1 for c in clips if not c.texts)
    if not clips or missing * 2 <= len(clips):
        return None
    share = "none" if missing == len(clips) else f"only {len(clips) - missing}"
    counted = "its one clip has no caption" if len(clips) == 1 else \
        f"{share} of the {len(clips)} clips {'has' if share == 'none' else 'have'} a caption"
    return (f"{where}{counted}: "
            "fine-tuning a text-to-motion model on them trains it unconditioned. Put captions beside the files "
            "(<name>.txt, one caption per line, or a captions.csv / captions.json index; see the README, "
            "'Bring your own data')")
