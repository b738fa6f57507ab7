"""google.colab.output: the custom widget manager switch (recorded; the test kernel renders widgets anyway)."""

from __future__ import annotations

ENABLED: list[bool] = []


def enable_custom_widget_manager() -> None:
    """Colab: lets third-party ipywidgets render in the output area."""
    ENABLED.append(True)


def disable_custom_widget_manager() -> None:
    """Colab: back to the built-in widget manager."""
    ENABLED.append(False)
