"""Test stand-in for Colab's google.colab (see tests/colab_sim/README.md); never imported by kpop_helpers."""

from google.colab import drive, files, output, userdata  # noqa: F401  (Colab exposes these submodules)

__version__ = "0.0.1a2-sim"
