"""Notebook motion players built from core ipywidgets only, so they work in Colab without a widget manager.

Frames are rendered with matplotlib into PNG bytes shown by an `Image` widget; the `Play` widget drives
the frame slider in the browser through `jslink`, and the Python side redraws on every slider change.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from kpop_helpers.errors import DataError
from kpop_helpers.viz.animation import (
    DEFAULT_AZIM,
    DEFAULT_ELEV,
    Scene,
    StickFigureScene,
    StickStyle,
    as_joints,
    scene_png,
)

SPEEDS: tuple[tuple[str, float], ...] = (("0.25×", 0.25), ("0.5×", 0.5), ("1×", 1.0), ("2×", 2.0), ("4×", 4.0))
# Server-side matplotlib rendering rarely beats ~20 frames/s, so faster playback skips frames instead.
MIN_INTERVAL_MS = 50.0
_CACHE_SIZE = 256


def _widgets() -> Any:
    try:
        import ipywidgets
    except ImportError:
        raise ImportError("the motion player needs ipywidgets: pip install 'kpop-helpers[viz]'") from None
    return ipywidgets


class FramePlayer:
    """Play button, frame slider, speed and camera controls around PNG renders of a Scene."""

    def __init__(self, num_frames: int, *, fps: float = 20.0, azim: float = DEFAULT_AZIM,
                 elev: float = DEFAULT_ELEV, dpi: float = 72, extra_controls: Sequence[Any] = ()):
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        w = _widgets()
        self.fps = float(fps)
        self.dpi = dpi
        last = max(num_frames - 1, 0)
        self.play = w.Play(value=0, min=0, max=last, step=1, interval=round(1000 / self.fps), description="play")
        self.slider = w.IntSlider(value=0, min=0, max=last, description="frame", continuous_update=True)
        self.link = w.jslink((self.play, "value"), (self.slider, "value"))
        self.speed = w.Dropdown(options=list(SPEEDS), value=1.0, description="speed",
                                layout=w.Layout(width="160px"))
        self.azimuth = w.IntSlider(value=int(azim), min=-180, max=180, step=5, description="azimuth")
        self.elevation = w.IntSlider(value=int(elev), min=-10, max=90, step=5, description="elevation")
        self.time_label = w.Label()
        self.image = w.Image(format="png")
        self.widget = w.VBox([
            w.HBox([self.play, self.slider, self.time_label]),
            w.HBox([self.speed, *extra_controls]),
            w.HBox([self.azimuth, self.elevation]),
            self.image,
        ])
        self.current_png: bytes = b""
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._quiet = False
        self.slider.observe(lambda change: self._refresh(), names="value")
        self.azimuth.observe(lambda change: self._refresh(), names="value")
        self.elevation.observe(lambda change: self._refresh(), names="value")
        self.speed.observe(lambda change: self._apply_speed(change["new"]), names="value")

    # Subclasses say what is drawn: the current scene, and a key that names it in the render cache.
    def _scene(self) -> Scene:
        raise NotImplementedError

    def _scene_key(self) -> Any:
        return None

    @property
    def frame(self) -> int:
        """The frame currently shown."""
        return int(self.slider.value)

    def render(self, frame: int) -> bytes:
        """PNG bytes of `frame` with the current clip and camera (cached)."""
        key = (self._scene_key(), int(frame), self.azimuth.value, self.elevation.value)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        scene = self._scene()
        scene.set_view(float(self.azimuth.value), float(self.elevation.value))
        png = scene_png(scene, int(frame), self.dpi)
        self._cache[key] = png
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return png

    def _refresh(self) -> None:
        if self._quiet:
            return
        png = self.render(self.frame)
        self.image.value = png
        self.current_png = png
        self.time_label.value = f"{self.frame / self.fps:5.2f} s"

    def _apply_speed(self, speed: float) -> None:
        period_ms = 1000.0 / (self.fps * float(speed))
        step = max(1, math.ceil(MIN_INTERVAL_MS / period_ms))
        self.play.step = step
        self.play.interval = round(period_ms * step)

    @contextmanager
    def _batch(self) -> Iterator[None]:
        # Several control changes (clip, bounds, value) should cost one redraw, not one each.
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False
        self._refresh()

    def _set_num_frames(self, num_frames: int) -> None:
        last = max(num_frames - 1, 0)
        value = min(self.slider.value, last)
        for control in (self.slider, self.play):
            if last > control.max:
                control.max = last
                control.value = value
            else:
                control.value = value
                control.max = last

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _named_motions(motions: Any, captions: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Normalise the player's input to {name: joints} and {name: caption}."""
    if isinstance(motions, Mapping):
        if not motions:
            raise DataError("no motions given", field="motions", expected="a non-empty {name: joints[T,22,3]}")
        named = {str(k): as_joints(v, str(k)) for k, v in motions.items()}
    else:
        named = {"motion": as_joints(motions, "motion")}
    if captions is None:
        texts = {name: (name if isinstance(motions, Mapping) else "") for name in named}
    elif isinstance(captions, str):
        texts = {name: captions for name in named}
    elif isinstance(captions, Mapping):
        texts = {name: str(captions.get(name, name)) for name in named}
    else:
        captions = list(captions)
        if len(captions) != len(named):
            raise DataError(f"{len(captions)} captions for {len(named)} motions", field="captions",
                            expected="one caption per motion")
        texts = dict(zip(named, map(str, captions), strict=True))
    return named, texts


class MotionPlayer(FramePlayer):
    """Widget to play, scrub and orbit one or several motions [T,22,3]; a Dropdown picks the clip."""

    def __init__(self, motions: Mapping[str, Any] | Any, *, fps: float = 20.0,
                 captions: Mapping[str, str] | Sequence[str] | str | None = None,
                 azim: float = DEFAULT_AZIM, elev: float = DEFAULT_ELEV, dpi: float = 72,
                 figsize: tuple[float, float] = (4.0, 4.0), style: StickStyle | None = None):
        self.motions, self.captions = _named_motions(motions, captions)
        self._scene_options = dict(style=style, azim=azim, elev=elev, figsize=figsize, dpi=dpi)
        self._scenes: dict[str, StickFigureScene] = {}
        w = _widgets()
        names = list(self.motions)
        self.dropdown = w.Dropdown(options=names, value=names[0], description="clip",
                                   layout=w.Layout(width="420px"))
        super().__init__(len(self.motions[names[0]]), fps=fps, azim=azim, elev=elev, dpi=dpi,
                         extra_controls=[self.dropdown])
        self.dropdown.observe(lambda change: self.select(change["new"]), names="value")
        self._refresh()

    @property
    def clip(self) -> str:
        """Name of the clip shown."""
        return str(self.dropdown.value)

    def select(self, name: str) -> None:
        """Show another clip (keeps the frame index where the new clip is long enough)."""
        if name not in self.motions:
            raise KeyError(f"no clip named {name!r}; have {list(self.motions)}")
        with self._batch():
            if self.dropdown.value != name:
                self.dropdown.value = name
            self._set_num_frames(len(self.motions[name]))

    def _scene(self) -> Scene:
        name = self.clip
        if name not in self._scenes:
            self._scenes[name] = StickFigureScene(self.motions[name], caption=self.captions[name],
                                                  **self._scene_options)
        return self._scenes[name]

    def _scene_key(self) -> Any:
        return self.clip
