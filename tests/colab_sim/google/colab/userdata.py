"""google.colab.userdata: secrets from $KPOP_SIM_SECRETS (JSON), else Colab's SecretNotFoundError."""

from __future__ import annotations

import json
import os


class SecretNotFoundError(Exception):
    """Colab raises this when the notebook has no secret of that name."""

    def __init__(self, key: str):
        super().__init__(f"Secret {key} does not exist.")


class NotebookAccessError(Exception):
    """Colab raises this when the secret exists but this notebook was not granted access."""


def get(key: str) -> str:
    """The secret's value, as Colab returns it."""
    secrets = json.loads(os.environ.get("KPOP_SIM_SECRETS", "{}") or "{}")
    if key not in secrets:
        raise SecretNotFoundError(key)
    return secrets[key]
