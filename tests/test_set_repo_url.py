"""tools/set_repo_url.py on a copy of the repository's READMEs and notebooks, and on small hand-made notebooks."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "set_repo_url.py"
_spec = importlib.util.spec_from_file_location("set_repo_url", TOOL)
set_repo_url = importlib.util.module_from_spec(_spec)
sys.modules["set_repo_url"] = set_repo_url  # dataclasses look their module up there
_spec.loader.exec_module(set_repo_url)

BADGE_URL = re.compile(r"colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/(\S+?)/notebooks/([^)\s]+\.ipynb)")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """README.md, notebooks/README.md and notebooks/*.ipynb of this repository, copied under tmp_path."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    for path in [REPO / "notebooks" / "README.md", *sorted((REPO / "notebooks").glob("*.ipynb"))]:
        shutil.copy(path, tmp_path / "notebooks" / path.name)
    return tmp_path


def current_address(root: Path) -> str:
    """The owner/repo the READMEs' badges point at now (whatever the placeholder is today)."""
    found = {m.group(1) for m in BADGE_URL.finditer((root / "README.md").read_text(encoding="utf-8"))}
    assert len(found) == 1, found
    return found.pop()


def code_lines(nb: dict) -> list[str]:
    return [line for c in nb["cells"] if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()]


def test_fork_address_and_branch_reach_every_badge_and_setup_cell(copy, capsys):
    old = current_address(copy)
    before = {p: p.read_text(encoding="utf-8") for p in set_repo_url.target_files(copy)}
    assert set_repo_url.main(["me-fork/kpop.fork", "--ref", "feature/x", "--root", str(copy)]) == 0
    out = capsys.readouterr().out
    assert f"badge {old}@" in out and f"changed {len(before)} of {len(before)} files" in out

    for path, text in before.items():
        new = path.read_text(encoding="utf-8")
        assert f"github/{old}/" not in new and f"github.com/{old}\\\"" not in new, path  # prose may still name it
        badges = BADGE_URL.findall(new)
        assert badges and all(b[:2] == ("me-fork/kpop.fork", "feature/x") for b in badges), path
        if path.suffix != ".ipynb":
            continue
        assert badges[0][2] == path.name  # the badge opens the notebook it sits in
        nb_old, nb_new = json.loads(text), json.loads(new)
        assert new == json.dumps(nb_new, indent=1, ensure_ascii=False) + "\n"  # as nbformat writes it
        assert [c["metadata"] for c in nb_new["cells"]] == [c["metadata"] for c in nb_old["cells"]]
        assert nb_new["metadata"] == nb_old["metadata"]
        lines = code_lines(nb_new)
        repo_url = [line for line in lines if line.lstrip().startswith("REPO_URL =")]
        assert repo_url and all('"https://github.com/me-fork/kpop.fork"' in line for line in repo_url), path
        # trailing comments (Colab's #@param) survive
        old_url = [line for line in code_lines(nb_old) if line.lstrip().startswith("REPO_URL =")]
        assert [line.partition("#")[2] for line in repo_url] == [line.partition("#")[2] for line in old_url]
        assert all('"feature/x"' in line for line in lines if line.lstrip().startswith("REF =")), path
        # nothing else moved: the changed lines are exactly the address lines
        changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
        assert len(text.splitlines()) == len(new.splitlines())
        assert all(old in a or "REF =" in a for a, _ in changed), changed


def test_second_run_changes_nothing_and_check_passes(copy, capsys):
    assert set_repo_url.main(["me/fork", "--root", str(copy)]) == 0
    snapshot = {p: p.read_bytes() for p in set_repo_url.target_files(copy)}
    capsys.readouterr()
    assert set_repo_url.main(["me/fork", "--root", str(copy)]) == 0
    assert f"changed 0 of {len(snapshot)} files: everything already points at me/fork" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in set_repo_url.target_files(copy)} == snapshot
    assert set_repo_url.main(["me/fork", "--check", "--root", str(copy)]) == 0


def test_check_lists_what_points_elsewhere_and_changes_nothing(copy, capsys):
    old = current_address(copy)
    snapshot = {p: p.read_bytes() for p in set_repo_url.target_files(copy)}
    assert set_repo_url.main(["me/fork", "--check", "--root", str(copy)]) == 1
    err = capsys.readouterr().err
    assert f"README.md: badge {old}@main (x7)" in err and f"notebooks/01_setup.ipynb: badge {old}@main, " \
           f"REPO_URL {old}" in err and f"{len(snapshot)} file(s) point elsewhere" in err
    assert {p: p.read_bytes() for p in set_repo_url.target_files(copy)} == snapshot
    assert set_repo_url.main([old, "--check", "--root", str(copy)]) == 0  # today's address is consistent
    # a branch other than the badges' one counts as pointing elsewhere
    assert set_repo_url.main([old, "--ref", "dev", "--check", "--root", str(copy)]) == 1


def _write(path: Path, nb: dict, indent: int = 1) -> None:
    path.write_text(json.dumps(nb, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def _notebook(setup_source, badge_ref: str = "main") -> dict:
    return {"cells": [
        {"cell_type": "markdown", "id": "a", "metadata": {"tags": ["intro"]}, "source": [
            "# Tänze · 01\n",
            f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google"
            f".com/github/someone/old-repo/blob/{badge_ref}/notebooks/01_x.ipynb)"]},
        {"cell_type": "code", "execution_count": None, "id": "b", "metadata": {"cellView": "form"}, "outputs": [],
         "source": setup_source},
        {"cell_type": "raw", "id": "c", "metadata": {}, "source": "REPO_URL = 'https://github.com/raw/untouched'"},
    ], "metadata": {"colab": {"name": "01_x.ipynb"}}, "nbformat": 4, "nbformat_minor": 5}


def test_param_comments_quotes_git_suffix_and_string_sources(tmp_path):
    (tmp_path / "notebooks").mkdir()
    source = ("#@title Setup\n"
              "REPO_URL = 'https://github.com/someone/old-repo.git'  #@param {type:\"string\"}\n"
              "  REF = \"v1\"  #@param {type:\"string\"}\n"
              "print(REPO_URL)  # REPO_URL = \"https://github.com/not/assigned\"")
    path = tmp_path / "notebooks" / "01_x.ipynb"
    _write(path, _notebook(source))
    assert set_repo_url.main(["me/fork", "--ref", "dev", "--root", str(tmp_path)]) == 0
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["cells"][1]["source"] == (
        "#@title Setup\n"
        "REPO_URL = 'https://github.com/me/fork.git'  #@param {type:\"string\"}\n"
        "  REF = \"dev\"  #@param {type:\"string\"}\n"
        "print(REPO_URL)  # REPO_URL = \"https://github.com/not/assigned\"")
    assert nb["cells"][0]["source"][1].endswith("github/me/fork/blob/dev/notebooks/01_x.ipynb)")
    assert nb["cells"][0]["source"][0] == "# Tänze · 01\n" and "Tänze" in path.read_text(encoding="utf-8")
    assert nb["cells"][2]["source"] == "REPO_URL = 'https://github.com/raw/untouched'"
    assert nb["cells"][1]["metadata"] == {"cellView": "form"} and nb["cells"][0]["metadata"] == {"tags": ["intro"]}


def test_notebook_already_pointing_there_keeps_its_bytes(tmp_path):
    (tmp_path / "notebooks").mkdir()
    path = tmp_path / "notebooks" / "01_x.ipynb"
    nb = _notebook(['REPO_URL = "https://github.com/someone/old-repo"\n'])
    _write(path, nb, indent=2)  # not how this tool would write it: must stay as it is
    before = path.read_bytes()
    assert set_repo_url.main(["someone/old-repo", "--root", str(tmp_path)]) == 0
    assert path.read_bytes() == before


def test_bad_arguments_and_empty_roots_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        set_repo_url.main(["not a repo", "--root", str(tmp_path)])
    assert info.value.code == 2 and "expected OWNER/REPO" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        set_repo_url.main(["me/fork", "--ref", 'x" + evil', "--root", str(tmp_path)])
    assert set_repo_url.main(["me/fork", "--root", str(tmp_path)]) == 2
    assert "wrong --root?" in capsys.readouterr().err
    (tmp_path / "README.md").write_text("no badges here\n")
    assert set_repo_url.main(["me/fork", "--check", "--root", str(tmp_path)]) == 2
    assert "no Colab badge or REPO_URL line found in 1 files" in capsys.readouterr().err
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "broken.ipynb").write_text("{not json")
    with pytest.raises(SystemExit, match=r"broken\.ipynb: not a notebook"):
        set_repo_url.main(["me/fork", "--root", str(tmp_path)])


def test_command_line(copy):
    done = subprocess.run([sys.executable, str(TOOL), "me/fork", "--check", "--root", str(copy)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "point elsewhere" in done.stderr
    done = subprocess.run([sys.executable, str(TOOL), "me/fork", "--root", str(copy)],
                          capture_output=True, text=True, timeout=60)
    n = len(set_repo_url.target_files(copy))
    assert done.returncode == 0 and f"changed {n} of {n} files" in done.stdout
