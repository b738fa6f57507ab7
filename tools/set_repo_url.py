"""Point the Colab badges and the notebooks' setup cells at a GitHub repository (for a fork).

    python tools/set_repo_url.py OWNER/REPO [--ref BRANCH]          # rewrite in place, report what changed
    python tools/set_repo_url.py OWNER/REPO [--ref BRANCH] --check  # exit 1 listing files that point elsewhere

Rewritten: every Colab badge link (colab.research.google.com/github/<owner>/<repo>/blob/<branch>/notebooks/...)
in README.md, notebooks/README.md and the notebooks' markdown cells, and the `REPO_URL = "https://github.com/..."`
line of the notebooks' code cells (trailing comments such as `#@param` are kept). With --ref, also the badges'
branch and the `REF = "..."` lines. The current address is read from the files, whatever it is. Notebooks are
edited as JSON and written back as nbformat writes them (indent 1, UTF-8, trailing newline), key order kept.
Standard library only, so a fork can run it before installing anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKDOWN_FILES = ("README.md", "notebooks/README.md")
NOTEBOOK_GLOB = "notebooks/*.ipynb"
_REPO = r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+"
BADGE = re.compile(rf"(?P<head>colab\.research\.google\.com/github/)(?P<repo>{_REPO}?)/blob/"
                   r"(?P<ref>[^\s)\"'\]]+?)(?P<tail>/notebooks/[^\s)\"'\]]*\.ipynb)")
REPO_URL = re.compile(rf"^(?P<head>[ \t]*REPO_URL[ \t]*=[ \t]*(?P<q>[\"'])https://github\.com/)(?P<repo>{_REPO}?)"
                      r"(?P<tail>(?:\.git)?/?(?P=q))", re.MULTILINE)
REF = re.compile(r"^(?P<head>[ \t]*REF[ \t]*=[ \t]*(?P<q>[\"']))(?P<ref>[^\"'\n]*)(?P<tail>(?P=q))", re.MULTILINE)


@dataclass(frozen=True)
class Found:
    """One address in a file: a badge, a REPO_URL line or a REF line, with the value it had."""

    kind: str
    repo: str | None
    ref: str | None

    def describe(self) -> str:
        """E.g. 'badge kpop-choreo/kpop-toolkit@main'."""
        if self.kind == "REF":
            return f'REF "{self.ref}"'
        return f"{self.kind} {self.repo}" + (f"@{self.ref}" if self.ref is not None else "")


def rewrite(text: str, cell: str, repo: str, ref: str | None) -> tuple[str, list[Found]]:
    """`text` with its addresses pointed at `repo` (and `ref`); cell is 'markdown' (badges) or 'code' (lines)."""
    found: list[Found] = []

    def badge(m: re.Match[str]) -> str:
        found.append(Found("badge", m["repo"], m["ref"]))
        return f"{m['head']}{repo}/blob/{ref or m['ref']}{m['tail']}"

    def repo_url(m: re.Match[str]) -> str:
        found.append(Found("REPO_URL", m["repo"], None))
        return f"{m['head']}{repo}{m['tail']}"

    def ref_line(m: re.Match[str]) -> str:
        found.append(Found("REF", None, m["ref"]))
        return f"{m['head']}{ref if ref is not None else m['ref']}{m['tail']}"

    if cell == "markdown":
        return BADGE.sub(badge, text), found
    return REF.sub(ref_line, REPO_URL.sub(repo_url, text)), found


def _rewrite_source(source: str | list[str], cell: str, repo: str, ref: str | None
                    ) -> tuple[str | list[str], list[Found]]:
    # nbformat stores source as one string or as a list of lines: edit each piece so the split is kept
    if isinstance(source, str):
        return rewrite(source, cell, repo, ref)
    pieces, found = [], []
    for piece in source:
        new, hits = rewrite(piece, cell, repo, ref)
        pieces.append(new)
        found += hits
    return pieces, found


def process_notebook(path: Path, repo: str, ref: str | None) -> tuple[str, str, list[Found]]:
    """(old text, new text, what was found) of one notebook."""
    old = path.read_text(encoding="utf-8")
    try:
        nb: dict[str, Any] = json.loads(old)
        cells = nb["cells"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: not a notebook (expected JSON with a 'cells' list): {exc}") from exc
    found: list[Found] = []
    dirty = False
    for index, cell in enumerate(cells):
        kind = cell.get("cell_type")
        if kind not in ("markdown", "code"):
            continue
        if not isinstance(cell.get("source"), (str, list)):
            raise SystemExit(f"{path}: cell {index} has no text source (expected a string or a list of strings)")
        source, hits = _rewrite_source(cell["source"], kind, repo, ref)
        dirty |= source != cell["source"]
        cell["source"] = source
        found += hits
    # re-serialise only when an address changed, so an untouched notebook keeps its bytes whatever wrote it
    return old, (json.dumps(nb, indent=1, ensure_ascii=False) + "\n" if dirty else old), found


def process_markdown(path: Path, repo: str, ref: str | None) -> tuple[str, str, list[Found]]:
    """(old text, new text, what was found) of one markdown file (line endings kept)."""
    with open(path, encoding="utf-8", newline="") as fh:
        old = fh.read()
    new, found = rewrite(old, "markdown", repo, ref)
    return old, new, found


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and os.replace (never a half-written notebook)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def target_files(root: Path) -> list[Path]:
    """The READMEs that exist and every notebook under notebooks/."""
    return [root / name for name in MARKDOWN_FILES if (root / name).is_file()] + sorted(root.glob(NOTEBOOK_GLOB))


def elsewhere(found: list[Found], repo: str, ref: str | None) -> list[Found]:
    """The addresses that do not point at `repo` (or, when given, `ref`)."""
    return [f for f in found
            if (f.repo is not None and f.repo != repo) or (ref is not None and f.ref is not None and f.ref != ref)]


def summary(found: list[Found]) -> str:
    """'badge a/b@main (x6), REPO_URL a/b': each distinct address once, with its count."""
    counts: dict[str, int] = {}
    for f in found:
        counts[f.describe()] = counts.get(f.describe(), 0) + 1
    return ", ".join(text + (f" (x{n})" if n > 1 else "") for text, n in counts.items())


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", help="OWNER/REPO on GitHub, e.g. my-name/kpop-toolkit")
    parser.add_argument("--ref", help="branch (or tag) for the badges and the REF lines")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file points elsewhere")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="repository root (default: the one holding this tool)")
    args = parser.parse_args(argv)
    if not re.fullmatch(_REPO, args.repo) or args.repo.endswith(".git"):
        parser.error(f"repo {args.repo!r}: expected OWNER/REPO (letters, digits, '-', '.', '_'), e.g. me/kpop-toolkit")
    if args.ref is not None and not re.fullmatch(r"[A-Za-z0-9._/-]+", args.ref):
        parser.error(f"--ref {args.ref!r}: expected a branch or tag name (letters, digits, '.', '_', '/', '-')")
    files = target_files(args.root)
    if not files:
        print(f"{args.root}: no README.md, notebooks/README.md or notebooks/*.ipynb found (wrong --root?)",
              file=sys.stderr)
        return 2
    stale: list[str] = []
    changed = total = 0
    previous: set[str] = set()
    for path in files:
        process = process_notebook if path.suffix == ".ipynb" else process_markdown
        old, new, found = process(path, args.repo, args.ref)
        total += len(found)
        off = elsewhere(found, args.repo, args.ref)
        previous |= {f.describe() for f in off}
        name = path.relative_to(args.root).as_posix()
        if args.check:
            if off:
                stale.append(f"{name}: {summary(off)}")
        elif new != old:
            atomic_write(path, new)
            changed += 1
            print(f"{name}: {summary(off)} -> {args.repo}" + (f"@{args.ref}" if args.ref else ""))
    if total == 0:
        print(f"no Colab badge or REPO_URL line found in {len(files)} files under {args.root}", file=sys.stderr)
        return 2
    if args.check:
        for line in stale:
            print(line, file=sys.stderr)
        if stale:
            print(f"{len(stale)} file(s) point elsewhere; run: python tools/set_repo_url.py {args.repo}"
                  + (f" --ref {args.ref}" if args.ref else ""), file=sys.stderr)
            return 1
        print(f"all {len(files)} files point at {args.repo}" + (f" ({args.ref})" if args.ref else ""))
        return 0
    print(f"changed {changed} of {len(files)} files" + (f" (was: {', '.join(sorted(previous))})" if changed else
                                                          f": everything already points at {args.repo}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
