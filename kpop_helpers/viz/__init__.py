"""Visualisation: stick-figure animations (HTML/GIF/MP4), notebook players, comparisons and result plots.

Everything renders on pyplot-free Agg figures, so it works headless (CI, Colab, SSH) without a display.
The widget players need ipywidgets; MP4 export needs imageio-ffmpeg (both in the `viz` extra).
"""

from kpop_helpers.viz.animation import (
    StickFigure,
    StickFigureScene,
    StickStyle,
    animate,
    draw_frame,
    render_frames_png,
    save_gif,
    save_mp4,
    show,
    to_html,
)
from kpop_helpers.viz.compare import ComparePlayer, MotionComparison, compare, mean_position_error
from kpop_helpers.viz.edits import (
    EditScene,
    LongDanceScene,
    edit_html,
    plot_seams,
    save_edit_gif,
    save_long_dance_gif,
)
from kpop_helpers.viz.inline import show_gifs
from kpop_helpers.viz.player import MotionPlayer
from kpop_helpers.viz.plots import (
    foot_contacts,
    load_results,
    plot_foot_contacts,
    plot_latency,
    plot_pareto,
    plot_pose_grid,
    plot_sizes,
    plot_training_curves,
)

__all__ = [
    "show_gifs",
    "ComparePlayer",
    "EditScene",
    "LongDanceScene",
    "MotionComparison",
    "MotionPlayer",
    "StickFigure",
    "StickFigureScene",
    "StickStyle",
    "animate",
    "compare",
    "draw_frame",
    "edit_html",
    "foot_contacts",
    "load_results",
    "mean_position_error",
    "plot_foot_contacts",
    "plot_latency",
    "plot_pareto",
    "plot_pose_grid",
    "plot_seams",
    "plot_sizes",
    "plot_training_curves",
    "render_frames_png",
    "save_edit_gif",
    "save_gif",
    "save_long_dance_gif",
    "save_mp4",
    "show",
    "to_html",
]
