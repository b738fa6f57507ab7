"""Strip notebook outputs for git while keeping the Colab metadata, and validate with nbformat.

    python tools/strip_notebooks.py [PATH ...]          # rewrite notebooks in place (default: notebooks/)
    python tools/strip_notebooks.py --check [PATH ...]  # exit 1 if any notebook is not stripped or invalid

Removed: outputs, execution counts, per-cell execution/UI metadata, saved widget state. Kept (and filled in
when missing): metadata.colab, metadata.accelerator = "GPU", kernelspec python3, cell ids and tags.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

from kpop_helpers.utils import atomic_write_text

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
# Cell metadata worth keeping in git: tags (e.g. "parameters") and Colab's form/collapse state.
KEEP_CELL_METADATA = ("tags", "cellView", "id")
DROP_NOTEBOOK_METADATA = ("widgets", "varInspector", "toc")
# Only fine-tuning asks Colab for a GPU (03 too, for the recovery fine-tune after pruning); the others are CPU
# work, and a CPU runtime saves the user's GPU quota.
GPU_NOTEBOOKS = ("02_finetune", "03_compress")


def wants_gpu(name: str) -> bool:
    """True for the notebooks whose runtime type is a GPU (by file name)."""
    return Path(name).stem in GPU_NOTEBOOKS


def strip(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """A stripped copy of `nb` with the Colab metadata in place."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k in KEEP_CELL_METADATA})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        elif "attachments" in cell and not cell.attachments:
            del cell["attachments"]
    meta = nb.metadata
    for key in DROP_NOTEBOOK_METADATA:
        meta.pop(key, None)
    colab = meta.setdefault("colab", {})
    colab.setdefault("name", name)
    colab.setdefault("provenance", [])
    if wants_gpu(name):
        meta["accelerator"] = "GPU"
        colab.setdefault("gpuType", "T4")
    else:
        meta.pop("accelerator", None)
        colab.pop("gpuType", None)
    meta["kernelspec"] = dict(KERNELSPEC)
    meta["language_info"] = {"name": "python"}
    return nb


def problems(nb: nbformat.NotebookNode, name: str | None = None) -> list[str]:
    """What keeps `nb` from being a valid, stripped, Colab-ready notebook (empty when fine)."""
    found = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        found.append(f"invalid nbformat: {exc.message}")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            found.append(f"cell {i} has outputs or an execution count")
    name = name or nb.metadata.get("colab", {}).get("name", "")
    if "colab" not in nb.metadata:
        found.append("metadata.colab missing")
    elif wants_gpu(name) and nb.metadata.get("accelerator") != "GPU":
        found.append("metadata.accelerator='GPU' missing (this notebook fine-tunes)")
    elif not wants_gpu(name) and "accelerator" in nb.metadata:
        found.append("metadata.accelerator set: this notebook is CPU work and should not ask Colab for a GPU")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        found.append("kernelspec is not python3")
    return found


def notebook_paths(paths: list[str]) -> list[Path]:
    """Every .ipynb named or inside the folders named (default: notebooks/)."""
    out: list[Path] = []
    for item in paths or ["notebooks"]:
        path = Path(item)
        out += sorted(path.glob("*.ipynb")) if path.is_dir() else [path]
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: notebooks/)")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when a notebook needs stripping")
    args = parser.parse_args(argv)
    status = 0
    for path in notebook_paths(args.paths):
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if args.check:
            issues = problems(nb, path.name)
            if strip(nb, path.name) != nb:
                issues.append("not stripped (run: python tools/strip_notebooks.py)")
            for issue in issues:
                print(f"{path}: {issue}", file=sys.stderr)
            status |= bool(issues)
            continue
        stripped = strip(nb, path.name)
        issues = problems(stripped, path.name)
        if issues:
            print(f"{path}: {'; '.join(issues)}", file=sys.stderr)
            status = 1
        elif stripped != nb:
            atomic_write_text(path, nbformat.writes(stripped) + "\n")
            print(f"stripped {path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
