"""One experiment logger: TensorBoard event files always, Weights & Biases when a key (or offline mode) allows.

    tracker = Tracker("runs/run1", project="kpop-mdm", run_name="run1", config=cfg,
                      resume_step=state["step"] if state else 0,
                      wandb_run_id=state.get("wandb_run_id") if state else None)
    tracker.log_scalars({"train/loss": loss}, step)
    tracker.log_image("samples/pose", "pose.png", step)
    tracker.log_gif("samples/dance", "dance.gif", step)
    manager.save_checkpoint(..., wandb_run_id=tracker.run_id)
    tracker.close()

W&B is used when ``use_wandb`` is True/"auto" and an API key is found in ``WANDB_API_KEY``, a Colab secret
``WANDB_API_KEY`` or ``~/.netrc`` (what ``wandb login`` writes); "offline" logs locally for a later
``wandb sync``. Without a key, "auto" disables W&B and True falls back to offline, with a log line --
never a login prompt that would block a notebook. When W&B ends up off, the Tracker prints one line
saying why (``wandb_off_reason``: wandb='off', no key, wandb not installed, start failed). Resuming passes
the stored run id with ``resume="allow"`` and TensorBoard's ``purge_step``, so both continue the same
curves. Config dicts are scrubbed of credentials (api_key, token, secret, password ...) before they are written anywhere.
"""

from __future__ import annotations

import io
import json
import logging
import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from kpop_helpers.checkpoints.state import scrub_secrets
from kpop_helpers.colab import get_secret
from kpop_helpers.utils import json_ready

log = logging.getLogger("kpop_helpers.tracking")

STEP_KEY = "global_step"


def find_wandb_key() -> str | None:
    """The W&B API key from WANDB_API_KEY, a Colab secret, or ~/.netrc; None when there is none."""
    key = os.environ.get("WANDB_API_KEY") or get_secret("WANDB_API_KEY")
    if key:
        return key.strip()
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        entry = netrc.netrc().authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return entry[2] if entry and entry[2] else None


def resolve_wandb_mode(use_wandb: bool | str | None) -> tuple[str, str | None]:
    """("online" | "offline" | "disabled", api key or None) for a ``use_wandb`` setting, without prompting."""
    mode, key, _ = _resolve_wandb(use_wandb)
    return mode, key


def _resolve_wandb(use_wandb: bool | str | None) -> tuple[str, str | None, str | None]:
    """(mode, api key, why W&B is off or None): resolve_wandb_mode plus the reason shown to the user."""
    if use_wandb not in (True, False, None, "auto", "offline"):
        raise ValueError(f"use_wandb must be True, False, 'auto' or 'offline', got {use_wandb!r}")
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if use_wandb in (False, None):
        return "disabled", None, "wandb='off'"
    if env_mode == "disabled":
        return "disabled", None, "WANDB_MODE=disabled in the environment"
    if os.environ.get("WANDB_DISABLED", "").lower() == "true":
        return "disabled", None, "WANDB_DISABLED=true in the environment"
    if use_wandb == "offline" or env_mode in ("offline", "dryrun"):
        return "offline", None, None
    key = find_wandb_key()
    if key:
        return "online", key, None
    if use_wandb is True:
        log.warning("W&B: no API key (set WANDB_API_KEY or a Colab secret); logging offline for a later `wandb sync`")
        return "offline", None, None
    log.info("W&B disabled: no API key found (WANDB_API_KEY, Colab secret or ~/.netrc); TensorBoard only")
    return "disabled", None, "no WANDB_API_KEY in the environment or Colab secrets"


class Tracker:
    """Scalars, images and GIFs to TensorBoard (always) and W&B (when configured); resumable."""

    def __init__(self, log_dir: str | Path, *, project: str | None = None, run_name: str | None = None,
                 use_wandb: bool | str = "auto", config: dict | None = None, resume_step: int = 0,
                 wandb_run_id: str | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir).expanduser()
        self.run_name = run_name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config = scrub_secrets(json_ready(dict(config or {})))
        self.resume_step = int(resume_step)
        self._next_step = self.resume_step
        # purge_step drops events a crashed run wrote after its last checkpoint, so curves do not fold back.
        # flush_secs=30: a runtime that dies loses at most half a minute of curves.
        self._tb = SummaryWriter(log_dir=str(self.log_dir), purge_step=self.resume_step or None, flush_secs=30)
        if self.config:
            text = "```json\n" + json.dumps(self.config, indent=2, sort_keys=True) + "\n```"
            self._tb.add_text("config", text, self.resume_step)
        self.wandb_mode, key, self.wandb_off_reason = _resolve_wandb(use_wandb)
        self._run = None
        if self.wandb_mode != "disabled":
            self._run = self._start_wandb(project, run_name, key, wandb_run_id)
        if self._run is None:
            message = f"W&B off: {self.wandb_off_reason or 'not started'}; TensorBoard logs in {self.log_dir}"
            if use_wandb is False or use_wandb == "off":
                log.info(message)  # turned off on purpose (e.g. a recovery fine-tune): nothing to explain
            else:
                # print, not only log: a notebook shows no INFO logs, and a missing W&B dashboard must be explained.
                print(message, flush=True)

    def _start_wandb(self, project: str | None, run_name: str | None, key: str | None, run_id: str | None) -> Any:
        try:
            import wandb
        except ImportError:
            log.warning("W&B requested but the wandb package is not installed; TensorBoard only")
            self.wandb_mode, self.wandb_off_reason = "disabled", "wandb not installed (pip install wandb)"
            return None
        for mode in ([self.wandb_mode, "offline"] if self.wandb_mode == "online" else [self.wandb_mode]):
            settings = wandb.Settings(silent=True, console="off", init_timeout=60,
                                      **({"api_key": key} if mode == "online" and key else {}))
            kwargs: dict[str, Any] = {"project": project or "kpop-helpers", "name": run_name, "config": self.config,
                                      "mode": mode, "settings": settings, "reinit": _reinit_value(wandb),
                                      "dir": None if os.environ.get("WANDB_DIR") else str(self.log_dir)}
            if run_id:
                kwargs.update(id=run_id, resume="allow")
            try:
                run = wandb.init(**kwargs)
            except Exception as exc:  # network down, bad key...: training must go on
                log.warning("W&B %s start failed (%s)%s", mode, type(exc).__name__,
                            "; retrying offline" if mode == "online" else "; TensorBoard only")
                self.wandb_off_reason = f"wandb.init failed ({type(exc).__name__})"  # no message: it may echo a key
                continue
            run.define_metric(STEP_KEY)
            run.define_metric("*", step_metric=STEP_KEY)
            self.wandb_mode = mode
            log.info("W&B %s run %s", mode, run.id)
            return run
        self.wandb_mode = "disabled"
        return None

    @property
    def run_id(self) -> str | None:
        """The W&B run id to store in checkpoints (None without W&B)."""
        return None if self._run is None else self._run.id

    @property
    def wandb_enabled(self) -> bool:
        """True while a W&B run (online or offline) receives the logs."""
        return self._run is not None

    def _step(self, step: int | None) -> int:
        step = self._next_step if step is None else int(step)
        self._next_step = max(self._next_step, step + 1)
        return step

    def log_scalars(self, values: dict[str, Any], step: int | None = None) -> None:
        """Log numbers (floats, 0-d tensors/arrays) at ``step`` (default: one after the last logged step)."""
        step = self._step(step)
        clean = {}
        for tag, value in values.items():
            number = _to_float(value)
            if number is None:
                raise TypeError(f"log_scalars: '{tag}' is a {type(value).__name__}, expected a number")
            clean[tag] = number
            self._tb.add_scalar(tag, number, step)
        if self._run is not None:
            self._run.log({**clean, STEP_KEY: step})

    def log_image(self, tag: str, image: np.ndarray | str | Path, step: int | None = None) -> None:
        """Log an image: a PNG/JPEG path or an array [H, W] / [H, W, C] (uint8, or float in [0, 1])."""
        step = self._step(step)
        is_path = isinstance(image, (str, Path))
        if is_path:
            self._add_encoded_image(tag, Path(image), step)
        else:
            image = _image_array(image)
            self._tb.add_image(tag, image, step, dataformats="HW" if image.ndim == 2 else "HWC")
        if self._run is not None:
            import wandb

            self._run.log({tag: wandb.Image(str(image) if is_path else image), STEP_KEY: step})

    def log_gif(self, tag: str, path: str | Path, step: int | None = None) -> None:
        """Log an animated GIF (TensorBoard shows it animated in the Images tab)."""
        step = self._step(step)
        self._add_encoded_image(tag, Path(path), step)
        if self._run is not None:
            import wandb

            self._run.log({tag: wandb.Video(str(path), format="gif"), STEP_KEY: step})

    def _add_encoded_image(self, tag: str, path: Path, step: int) -> None:
        """Write the file's bytes unchanged as an image summary (keeps GIF animation, no re-encoding)."""
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            channels = len(img.getbands())
        summary = Summary(value=[Summary.Value(tag=tag, image=Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=data))])
        self._tb._get_file_writer().add_summary(summary, step)

    def flush(self) -> None:
        """Push buffered events to disk."""
        self._tb.flush()

    def close(self) -> None:
        """Close the TensorBoard writer and finish the W&B run."""
        self._tb.close()
        if self._run is not None:
            try:
                self._run.finish()
            finally:
                self._run = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _reinit_value(wandb: Any) -> str | bool:
    """wandb >= 0.19 takes "finish_previous" (re-running a notebook cell starts a new run); older takes True."""
    try:
        major, minor = (int(part) for part in wandb.__version__.split(".")[:2])
    except ValueError:
        return True
    return "finish_previous" if (major, minor) >= (0, 19) else True


def _to_float(value: Any) -> float | None:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # 0-d tensors, numpy scalars
        value = value.item()
    return float(value) if isinstance(value, (bool, int, float)) else None


def _image_array(image: Any) -> np.ndarray:
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # CHW tensors -> HWC
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"log_image: expected an [H, W] or [H, W, C] image with C in 1/3/4, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return array
