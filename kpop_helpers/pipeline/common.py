"""What every stage shares: a per-stage progress bar and `result.json` files that let later stages find earlier ones."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from kpop_helpers.errors import DataError
from kpop_helpers.utils import atomic_write_text, fmt, json_ready, markdown_table, staged_path

__all__ = ["MissingStageOutput", "StageProgress", "fmt", "json_ready", "load_result", "markdown_table", "publish",
           "read_json", "save_result", "stage_progress"]

RESULT_FILE = "result.json"
T = TypeVar("T")


class MissingStageOutput(FileNotFoundError):
    """A stage's input is missing: names the file and the notebook (same RUN_NAME) that makes it."""

    def __init__(self, missing: str | Path, made_by: str, run_name: str | None = None, detail: str = ""):
        run = f" with RUN_NAME = {run_name!r}" if run_name else ""
        super().__init__(f"{missing} is missing: it is made by notebook {made_by}. Run {made_by}{run} first "
                         f"(every notebook of a run must use the same RUN_NAME){'; ' + detail if detail else ''}.")
        self.missing, self.made_by = Path(missing), made_by


def publish(files: Sequence[str | Path], folder: str | Path) -> list[Path]:
    """Copy finished files into `folder` (the Drive work folder) atomically; returns the copies' paths."""
    import shutil

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for source in map(Path, files):
        dest = target / source.name
        if source.resolve() == dest.resolve():
            copies.append(dest)
            continue
        with staged_path(dest) as temp:  # a half-copied file never carries the final name
            shutil.copyfile(source, temp)
        copies.append(dest)
    return copies


class StageProgress:
    """An outer progress bar over the named steps of one stage (inner loops keep their own bars)."""

    def __init__(self, stage: str, steps: Sequence[str], enabled: bool = True):
        self.steps = list(steps)
        self.started = time.perf_counter()
        self._done = 0
        self.bar = tqdm(total=len(self.steps), desc=stage, unit="step", disable=not enabled, leave=True)
        self._label()

    def _label(self) -> None:
        if self._done < len(self.steps):
            self.bar.set_postfix_str(self.steps[self._done])

    def next(self) -> None:
        """Mark the current step done and show the next one."""
        self._done += 1
        self.bar.update(1)
        self._label()

    @property
    def seconds(self) -> float:
        """Wall time since the stage started."""
        return time.perf_counter() - self.started

    def close(self) -> None:
        """Fill the bar (skipped steps count as done) and close it."""
        if self._done < len(self.steps):
            self.bar.update(len(self.steps) - self._done)
            self._done = len(self.steps)
        self.bar.set_postfix_str(f"done in {self.seconds:.0f} s")
        self.bar.close()


@contextmanager
def stage_progress(stage: str, steps: Sequence[str], enabled: bool = True) -> Iterator[StageProgress]:
    """`with stage_progress("fine-tune", ["setup", "train"]) as bar: ...; bar.next()`."""
    progress = StageProgress(stage, steps, enabled)
    try:
        yield progress
    finally:
        progress.close()


def save_result(result: Any, folder: str | Path) -> Path:
    """Write a stage result dataclass as `<folder>/result.json` (atomic)."""
    path = Path(folder) / RESULT_FILE
    atomic_write_text(path, json.dumps(json_ready(result), indent=1) + "\n")
    return path


def read_json(path: Path, expected: str) -> Any:
    """The JSON in `path`, None when the file is absent; DataError naming the file when it is not JSON."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON ({exc})", path=path, expected=expected) from exc


def load_result(cls: type[T], folder: str | Path) -> T | None:
    """The stage result stored in `<folder>/result.json`, or None when absent."""
    path = Path(folder) / RESULT_FILE
    data = read_json(path, f"a {cls.__name__} written by the pipeline")
    if data is None:
        return None
    known = {f.name for f in fields(cls)}
    if not isinstance(data, dict):
        raise DataError(f"top level is a {type(data).__name__}", path=path, expected="a JSON object")
    missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING
               and f.default_factory is MISSING]
    if missing:
        raise DataError(f"missing fields {missing}", path=path, expected=f"a {cls.__name__} written by the pipeline")
    return cls(**{k: v for k, v in data.items() if k in known})
