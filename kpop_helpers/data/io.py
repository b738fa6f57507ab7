"""Load and save motion clips: JSON records, NPZ archives and BVH files, with a report of what was skipped.

JSON: a list of records (or one record) ``{"motion": [[[x, y, z], ...], ...], "text": str, "style": str}``
with optional ``texts`` (list of captions), ``fps`` (default 20) and ``joint_names``.
NPZ (read with allow_pickle=False): ``motions`` [N, F, J, 3]; or [sum(lengths), J, 3] concatenated,
or [N, Fmax, J, 3] padded, each with ``lengths`` [N]; ``texts`` unicode [N] or [N, K] ("" pads);
``styles`` unicode [N] ("" = none); optional ``fps`` scalar or [N] and ``joint_names`` [J].
Positions are y up; ``unit`` converts other units to metres. 24-joint SMPL clips keep their first 22
joints, which are the T2M joints. A file with no records raises DataError ("no records"); a person whose
standing height is outside 1.0-2.3 m gives a DataWarning naming the unit= that fits (kpop_helpers.data.report).
load_clips fills clips without captions from sidecars and indexes (kpop_helpers.data.captions).
"""

from __future__ import annotations

import io as _stdio
import json
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kpop_helpers.data.bvh import read_bvh
from kpop_helpers.data.captions import INDEX_NAMES, CaptionFinder, FileCaptions, apply_captions, uncaptioned_warning
from kpop_helpers.data.clip import MotionClip
from kpop_helpers.data.report import DataWarning, LoadReport, SkippedItem, no_records, warn_sizes
from kpop_helpers.data.validate import (MIN_FRAMES, positions_from_nested, unit_scale, validate_clip, validate_fps,
                                        validate_style, validate_text, validate_texts)
from kpop_helpers.errors import DataError
from kpop_helpers.motion.resample import resample_positions
from kpop_helpers.motion.skeleton import FPS_HUMANML, NUM_T2M_JOINTS, SMPL_JOINT_NAMES
from kpop_helpers.utils import atomic_write_bytes

SUPPORTED_SUFFIXES = (".json", ".npz", ".bvh")
_PICKLE_HELP = (
    "it holds pickled Python objects (an object array, e.g. np.savez(path, data=dict)); np.load refuses them "
    "because unpickling can run arbitrary code. Re-save without objects: np.savez(path, motions=float32 "
    "[N, F, J, 3] (or [sum(lengths), J, 3] concatenated / [N, Fmax, J, 3] padded, with lengths=int [N]), "
    "texts=np.array(captions, dtype=str) ([N] or [N, K] padded with ''), styles=np.array(styles, dtype=str)), "
    "e.g. with kpop_helpers.data.save_npz; or pass allow_pickle=True only if you trust the file")


def _check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path, expected="an existing file") from None
    except OSError as exc:
        raise DataError(f"cannot read file: {exc}", path=path) from None


def _to_t2m(positions: np.ndarray, names: Sequence[str] | None,
            expected_joints: int | None) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Drop SMPL's two hand joints when T2M joints are expected (SMPL's first 22 joints are the T2M joints)."""
    names = None if names is None else tuple(names)
    if expected_joints == NUM_T2M_JOINTS and positions.ndim == 3 and positions.shape[1] == len(SMPL_JOINT_NAMES):
        return positions[:, :NUM_T2M_JOINTS], None if names is None else names[:NUM_T2M_JOINTS]
    return positions, names


def _collect(items: Iterable[tuple[int, Any]], path: Path, on_error: str, report: LoadReport | None,
             build) -> list[MotionClip]:
    """Build a clip per record; on 'skip', note failing records in the report instead of raising."""
    clips = []
    for index, item in items:
        try:
            clips.append(build(index, item))
        except DataError as exc:
            if on_error == "raise":
                raise
            if report is not None:
                report.skipped.append(SkippedItem(str(path), index, str(exc)))
    return clips


def load_json(path: str | Path, *, default_fps: float = FPS_HUMANML, unit: str | float = "m",
              expected_joints: int | None = NUM_T2M_JOINTS, min_frames: int = MIN_FRAMES,
              on_error: str = "raise", report: LoadReport | None = None) -> list[MotionClip]:
    """Load the records of a JSON file (a list of records or one record); 'skip' lists bad records in `report`."""
    _check_on_error(on_error)
    path = Path(path)
    try:
        data = json.loads(_read_bytes(path).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"unreadable JSON at line {exc.lineno}, column {exc.colno}: {exc.msg} (truncated file?)",
                        path=path, expected="a list of records {\"motion\": ..., \"text\": ...}") from None
    records = [data] if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise DataError(f"top level is a {type(data).__name__}", path=path,
                        expected="a list of records, or one record object")
    scale = unit_scale(unit, path=path)
    if not records:
        return no_records(path, on_error, report, "an empty list")

    def build(index: int, record: Any) -> MotionClip:
        if not isinstance(record, dict):
            raise DataError(f"is a {type(record).__name__}", path=path, record=index,
                            expected="an object with 'motion' and 'text'")
        if "motion" not in record:
            raise DataError(f"missing (keys: {sorted(record)})", path=path, record=index, field="motion",
                            expected="[frames][joints][x, y, z] positions")
        positions = positions_from_nested(record["motion"], path=path, record=index) * scale
        texts = validate_texts(record["texts"], path=path, record=index) if "texts" in record else []
        if "text" in record:
            text = validate_text(record["text"], path=path, record=index)
            texts = texts if text in texts else [text, *texts]
        names = record.get("joint_names")
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
            raise DataError("is not a list of strings", path=path, record=index, field="joint_names")
        positions, names = _to_t2m(positions, names, expected_joints)
        clip = MotionClip(positions, validate_fps(record.get("fps", default_fps), path=path, record=index), texts,
                          validate_style(record.get("style"), path=path, record=index), str(path), names)
        return validate_clip(clip, path=path, record=index, expected_joints=expected_joints, min_frames=min_frames)

    clips = _collect(enumerate(records), path, on_error, report, build)
    warn_sizes(clips, path, scale, unit)
    return clips


def _npz_arrays(path: Path, allow_pickle: bool) -> dict[str, Any]:
    """Every array of an NPZ, read eagerly so that truncation and pickles surface here as DataError."""
    raw = _read_bytes(path)
    if not raw.startswith(b"PK"):
        kind = "a single .npy array" if raw.startswith(b"\x93NUMPY") else "not a zip archive"
        raise DataError(f"is {kind} (truncated or not an .npz?)", path=path,
                        expected="an .npz archive: np.savez(path, motions=..., texts=..., styles=...)")
    try:
        archive = np.load(_stdio.BytesIO(raw), allow_pickle=allow_pickle)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if "pickle" in str(exc):
            raise DataError(_PICKLE_HELP, path=path) from None
        raise DataError(f"not a readable .npz archive ({exc}); the file may be truncated", path=path) from None
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError as exc:
                if "allow_pickle" in str(exc) or "pickle" in str(exc):
                    raise DataError(_PICKLE_HELP, path=path, field=key) from None
                raise DataError(f"array is truncated or corrupt ({exc})", path=path, field=key) from None
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
                raise DataError(f"array is truncated or corrupt ({exc})", path=path, field=key) from None
    if set(arrays) != {"motions"} and len(arrays) == 1:
        only = next(iter(arrays.values()))
        if only.dtype == object and only.ndim == 0 and isinstance(only.item(), dict):
            arrays = dict(only.item())  # np.savez(path, data={...}) read with allow_pickle=True
    return arrays


def _split_motions(motions: Any, lengths: np.ndarray | None, path: Path) -> list[np.ndarray]:
    if isinstance(motions, (list, tuple)) or (isinstance(motions, np.ndarray) and motions.dtype == object):
        return [np.asarray(m) for m in motions]  # only reachable with allow_pickle=True
    motions = np.asarray(motions)
    if motions.dtype.kind not in "iuf":
        raise DataError(f"has non-numeric dtype {motions.dtype}", path=path, field="motions",
                        expected="float positions")
    if lengths is None:
        if motions.ndim != 4:
            raise DataError(f"has shape {motions.shape} (rank {motions.ndim}) and there is no 'lengths'", path=path,
                            field="motions", expected="[N, F, J, 3], or [sum(lengths), J, 3] with 'lengths'")
        return list(motions)
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or (lengths < 0).any():
        raise DataError(f"has shape {lengths.shape}, dtype {lengths.dtype}", path=path, field="lengths",
                        expected="non-negative integers [N]")
    if motions.ndim == 4:
        if len(motions) != len(lengths) or (lengths > motions.shape[1]).any():
            raise DataError(f"{lengths.tolist()[:8]} do not fit padded motions {motions.shape}", path=path,
                            field="lengths", expected=f"{len(motions)} lengths, each <= {motions.shape[1]}")
        return [m[:n] for m, n in zip(motions, lengths)]
    if motions.ndim != 3 or int(lengths.sum()) != len(motions):
        raise DataError(f"sum {int(lengths.sum())} does not match motions of shape {motions.shape}", path=path,
                        field="lengths", expected="[sum(lengths), J, 3] concatenated or [N, Fmax, J, 3] padded")
    return np.split(motions, np.cumsum(lengths)[:-1])


def _per_clip_texts(texts: Any, count: int, path: Path) -> list[list[str]]:
    if texts is None:
        return [[] for _ in range(count)]
    if isinstance(texts, np.ndarray) and texts.dtype.kind in "US":
        texts = np.char.decode(texts, "utf-8") if texts.dtype.kind == "S" else texts
        rows = texts.reshape(count, -1).tolist() if texts.ndim in (1, 2) and len(texts) == count else None
    elif (isinstance(texts, list) or getattr(texts, "dtype", None) == object) and len(texts) == count:
        rows = [[t] if isinstance(t, str) else list(t) for t in texts]  # object arrays (allow_pickle=True)
    else:
        rows = None
    if rows is None:
        shape = getattr(texts, "shape", None)
        raise DataError(f"has shape {shape}, dtype {getattr(texts, 'dtype', type(texts).__name__)}", path=path,
                        field="texts", expected=f"unicode strings [{count}] or [{count}, K] (one row per clip)")
    return [[t for t in row if t != ""] for row in rows]


def load_npz(path: str | Path, *, allow_pickle: bool = False, default_fps: float = FPS_HUMANML,
             unit: str | float = "m", expected_joints: int | None = NUM_T2M_JOINTS, min_frames: int = MIN_FRAMES,
             on_error: str = "raise", report: LoadReport | None = None) -> list[MotionClip]:
    """Load the clips of an NPZ (pickles refused unless allow_pickle=True); 'skip' lists bad clips in `report`."""
    _check_on_error(on_error)
    path = Path(path)
    arrays = _npz_arrays(path, allow_pickle)
    if "motions" not in arrays:
        raise DataError(f"missing (arrays: {sorted(arrays)})", path=path, field="motions",
                        expected="positions [N, F, J, 3] or [sum(lengths), J, 3] with 'lengths'")
    lengths = arrays.get("lengths")
    motions = [] if lengths is not None and np.size(lengths) == 0 else _split_motions(arrays["motions"], lengths, path)
    count = len(motions)
    if count == 0:
        return no_records(path, on_error, report, "zero motions")
    texts = _per_clip_texts(arrays.get("texts"), count, path)
    styles = arrays.get("styles")
    if styles is not None and (np.ndim(styles) != 1 or len(styles) != count):
        raise DataError(f"has shape {np.shape(styles)}", path=path, field="styles", expected=f"[{count}] strings")
    fps = np.asarray(arrays.get("fps", default_fps))
    if fps.ndim > 1 or (fps.ndim == 1 and len(fps) != count):
        raise DataError(f"has shape {fps.shape}", path=path, field="fps", expected=f"a scalar or [{count}]")
    names = arrays.get("joint_names")
    scale = unit_scale(unit, path=path)

    def build(index: int, positions: np.ndarray) -> MotionClip:
        for t, text in enumerate(texts[index]):
            validate_text(text, path=path, record=index, field=f"texts[{t}]")
        if positions.dtype.kind not in "iuf":
            raise DataError(f"has non-numeric dtype {positions.dtype}", path=path, record=index, field="motions",
                            expected="float positions")
        style = None if styles is None else styles[index]
        style = style.item() if isinstance(style, np.generic) else style
        clip_fps = validate_fps((fps[index] if fps.ndim else fps).item(), path=path, record=index)
        positions, joint_names = _to_t2m(positions.astype(np.float64) * scale,
                                         None if names is None else names.tolist(), expected_joints)
        clip = MotionClip(positions, clip_fps, texts[index],
                          validate_style(style, path=path, record=index, field="styles"), str(path), joint_names)
        return validate_clip(clip, path=path, record=index, expected_joints=expected_joints, min_frames=min_frames,
                             positions_field="motions")

    clips = _collect(enumerate(motions), path, on_error, report, build)
    warn_sizes(clips, path, scale, unit)
    return clips


def save_json(path: str | Path, clips: Sequence[MotionClip]) -> Path:
    """Write clips as a JSON list of records (atomic; float32 positions round-trip bit for bit)."""
    path = Path(path)
    records = []
    for index, clip in enumerate(clips):
        clip = validate_clip(clip, path=path, record=index, expected_joints=None, min_frames=1, check_scale=False)
        record: dict[str, Any] = {"motion": clip.positions.tolist(), "fps": clip.fps, "style": clip.style}
        if clip.texts:
            record.update(text=clip.texts[0], texts=list(clip.texts))
        if clip.joint_names is not None:
            record["joint_names"] = list(clip.joint_names)
        records.append(record)
    atomic_write_bytes(path, json.dumps(records, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    return path


def save_npz(path: str | Path, clips: Sequence[MotionClip]) -> Path:
    """Write clips as an NPZ without pickles: concatenated motions + lengths, unicode texts/styles, fps (atomic)."""
    path = Path(path)
    if not clips:
        raise DataError("no clips to save", path=path, field="clips", expected="at least one clip")
    clips = [validate_clip(c, path=path, record=i, expected_joints=None, min_frames=1, check_scale=False)
             for i, c in enumerate(clips)]
    joints = {c.num_joints for c in clips}
    if len(joints) != 1:
        raise DataError(f"clips have different joint counts {sorted(joints)}", path=path, field="motions",
                        expected="the same joints in every clip")
    width = max(1, max(len(c.texts) for c in clips))
    texts = np.array([list(c.texts) + [""] * (width - len(c.texts)) for c in clips], dtype=str)
    arrays = {"motions": np.concatenate([c.positions for c in clips]),
              "lengths": np.array([c.num_frames for c in clips], dtype=np.int64),
              "texts": texts[:, 0] if width == 1 else texts,
              "styles": np.array([c.style or "" for c in clips], dtype=str),
              "fps": np.array([c.fps for c in clips], dtype=np.float64)}
    names = {c.joint_names for c in clips}
    if len(names) == 1 and None not in names:
        arrays["joint_names"] = np.array(next(iter(names)), dtype=str)
    buffer = _stdio.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _iter_files(root: Path) -> list[Path]:
    if root.is_dir():
        files = sorted((p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                        and p.name.lower() not in INDEX_NAMES), key=lambda p: p.relative_to(root).as_posix())
        if not files:
            raise DataError("no .json, .npz or .bvh files in this folder (searched recursively)", path=root)
        return files
    if not root.exists():
        raise DataError("file not found", path=root, expected="a .json, .npz or .bvh file or a folder of them")
    if root.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataError(f"unsupported file type '{root.suffix}'", path=root, expected="one of .json, .npz, .bvh")
    return [root]


def load_clips(path: str | Path, *, on_error: str = "raise", fps: float | None = None, allow_pickle: bool = False,
               unit: str | float | None = None, expected_joints: int | None = NUM_T2M_JOINTS,
               min_frames: int = MIN_FRAMES, progress: bool = True, captions: bool = True,
               style_from_folder: bool = False, **bvh_kwargs: Any) -> tuple[list[MotionClip], LoadReport]:
    """Load a .json/.npz/.bvh file or a folder of them (recursively, sorted); returns (clips, report).

    fps: resample every clip to this rate (linear interpolation); None keeps each clip's own rate
    (BVH files go to read_bvh's target_fps, 20 by default). unit: None means metres for JSON/NPZ and
    'auto' for BVH. on_error='skip' leaves bad files and records out and lists them in the report.
    captions: fill clips that have no captions/style from a sidecar <name>.txt or a captions.csv/.json index
    (which may also give a file's unit and true fps; kpop_helpers.data.captions); style_from_folder: else use
    the parent folder's name as the style. The report lists the BVH name map chosen per file, every clip left
    without a caption, and the DataWarnings (unit, captions), which are also issued.
    bvh_kwargs go to read_bvh (source_fps, joint_map, up_axis, start_frame, ...).
    """
    _check_on_error(on_error)
    report = LoadReport()
    clips: list[MotionClip] = []
    root = Path(path)
    files = _iter_files(root)
    finder = CaptionFinder(root) if captions else None
    if fps is not None:
        validate_fps(fps, path=path, record=None)
        bvh_kwargs.setdefault("target_fps", fps)
    common = dict(expected_joints=expected_joints, min_frames=min_frames, on_error=on_error, report=report)
    for file in tqdm(files, desc="loading motion", unit="file", disable=not progress or len(files) < 2):
        report.files.append(str(file))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            try:
                found = finder.find(file) if finder is not None else FileCaptions()
                loaded = _load_one(file, found, unit, allow_pickle, common, bvh_kwargs)
            except DataError as exc:
                if on_error == "raise":
                    raise
                report.skipped.append(SkippedItem(str(file), None, str(exc)))
                loaded, found = [], FileCaptions()
            style = file.parent.name if style_from_folder else None
            captioned: list[MotionClip] = []
            for clip in loaded:
                errors: list[DataError] = []
                captioned += apply_captions(clip, found, style=style, min_frames=min_frames,
                                            expected_joints=expected_joints, errors=errors)
                if errors and on_error == "raise":
                    raise errors[0]
                report.skipped += [SkippedItem(str(file), e.record, str(e)) for e in errors]
        for w in caught:
            if issubclass(w.category, DataWarning):
                report.warnings.append(str(w.message))
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if file.suffix.lower() == ".bvh" and loaded and loaded[0].rig:
            report.rigs[str(file)] = loaded[0].rig
        name = file.relative_to(root).as_posix() if root.is_dir() else file.name
        report.uncaptioned += [name + (f" clip {k}" if len(captioned) > 1 else "")
                               for k, c in enumerate(captioned) if not c.texts]
        clips.extend(_resample_all(captioned, fps))
    report.num_clips = len(clips)
    messages = [uncaptioned_warning(clips, where=f"{path}: ")]
    if finder is not None and root.is_dir() and finder.unused_entries():
        messages.append(f"captions index entries that name no loaded file: {', '.join(finder.unused_entries())}")
    for message in filter(None, messages):
        warnings.warn(message, DataWarning, stacklevel=2)
        report.warnings.append(message)
    return clips, report


def _load_one(file: Path, found: FileCaptions, unit: str | float | None, allow_pickle: bool, common: dict,
              bvh_kwargs: dict) -> list[MotionClip]:
    """The clips of one file; a captions index may give its unit and (BVH) its true frame rate."""
    unit = found.unit if found.unit is not None else unit
    suffix = file.suffix.lower()
    if suffix == ".json":
        return load_json(file, unit=unit or "m", **common)
    if suffix == ".npz":
        return load_npz(file, allow_pickle=allow_pickle, unit=unit or "m", **common)
    kwargs = {**bvh_kwargs, **({} if found.fps is None else {"source_fps": found.fps})}
    clip = read_bvh(file, unit=unit or "auto", min_frames=common["min_frames"], **kwargs)
    if common["expected_joints"] is not None:
        validate_clip(clip, path=file, expected_joints=common["expected_joints"], min_frames=common["min_frames"])
    return [clip]


def _resample_all(clips: Iterable[MotionClip], fps: float | None) -> Iterator[MotionClip]:
    for clip in clips:
        if fps is None or abs(clip.fps - fps) <= 1e-6 * fps:
            yield clip
        else:
            yield replace(clip, positions=resample_positions(clip.positions, clip.fps, float(fps)), fps=float(fps))
