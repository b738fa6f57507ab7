"""Images shown inline in a notebook without widgets (Colab without the custom widget manager, GitHub, HTML)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def show_gifs(paths: Sequence[str | Path] | str | Path) -> None:
    """Show GIF (or PNG) files inline in a notebook; outside one, print their paths."""
    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print("dances:", ", ".join(map(str, files)))
        return
    for path in files:
        display(Image(filename=str(path)))
