"""Choreograph a song: audio in, a whole dance on the beat out (BVH, NPZ, previews), on a laptop CPU.

`choreograph(song, generator)` works with the torch-free `EdgeGenerator` or a PyTorch model
(`kpop_helpers.generate.TorchDanceGenerator`); `python -m kpop_helpers.choreograph SONG --export-dir DIR`.
"""

from kpop_helpers.choreograph.core import ALIGN_METHODS, DanceGenerator, SongDance, attribution_of, choreograph
from kpop_helpers.choreograph.outputs import song_video, write_song_outputs

__all__ = ["ALIGN_METHODS", "DanceGenerator", "SongDance", "attribution_of", "choreograph", "song_video",
           "write_song_outputs"]
