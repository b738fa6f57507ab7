"""The fine-tuning loop: MDM x0-prediction diffusion training with EMA, exact resume and Drive checkpoints.

Determinism: every random draw of step `s` (batch order, captions, diffusion timesteps and noise,
condition dropout, dropout) comes from generators seeded by (seed, s). A run resumed from the
checkpoint written after step s therefore continues bit-identically on the same machine and thread
count, and the RNG states stored in the checkpoint are restored as well for anything else.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from kpop_helpers.checkpoints import CheckpointManager, capture_rng_state, restore_rng_state
from kpop_helpers.diffusion import GaussianDiffusion, masked_l2
from kpop_helpers.motion.stats import MotionStats
from kpop_helpers.precision import choose_precision
from kpop_helpers.train.config import TrainConfig
from kpop_helpers.train.dataset import WindowBatcher
from kpop_helpers.train.ema import EMA, lr_lambda
from kpop_helpers.train.fingerprint import FINGERPRINT_KEY, run_fingerprint
from kpop_helpers.train.resume import resume_mode, start_fresh, verify_checkpoint_run
from kpop_helpers.train.setup import build_data, build_model, build_text_cache, resolve_device

logger = logging.getLogger(__name__)
DRIVE_FLUSH_TIMEOUT_S = 120  # at the end of a run; training itself never waits for Drive


@dataclass
class TrainResult:
    """What a finished (or resumed-and-finished) run reports."""

    step: int
    train_loss: float
    val_loss: float | None
    checkpoint: str | None
    weights: str | None
    history: list[dict[str, float]] = field(default_factory=list)
    steps_per_second: float = 0.0
    checkpoint_seconds: float = 0.0
    wall_seconds: float = 0.0


class Trainer:
    """Fine-tunes (or trains from scratch) an MDM denoiser on MotionClips."""

    def __init__(self, cfg: TrainConfig, *, progress: bool = True, tracker: Any = None, model: Any = None,
                 stats: MotionStats | None = None, on_sample: Callable[[int, list[Path]], None] | None = None):
        """`model`/`stats`: train this model object (e.g. a pruned one) instead of building from cfg.init.

        `on_sample(step, gif_paths)` is called after the sample GIFs are rendered (every cfg.sample_every
        steps and at the end), e.g. to show them in the notebook.
        """
        self.cfg, self.progress, self.on_sample = cfg, progress, on_sample
        self.resume_mode = resume_mode(cfg.resume)  # a typo fails now, not after the data is loaded
        # TensorBoard event files (and W&B's local folder); in Colab the pipeline points it at Drive.
        self.log_dir = Path(cfg.log_dir) if cfg.log_dir else Path(cfg.out) / "logs"
        self.device = resolve_device(cfg.device)
        self.accelerator = _maybe_accelerator(cfg, self.device)
        if self.accelerator is not None:
            self.device = self.accelerator.device
        # Checkpoints first: a run mismatch fails in seconds, before data, model and base weights are loaded.
        self.fingerprint = self.make_fingerprint(cfg)
        self.archived_runs: list[Path] = []  # where resume="fresh" moved an earlier run
        if self.resume_mode == "fresh" and self.is_main:  # before the manager's Drive mirror starts
            self.archived_runs = start_fresh(cfg.out, cfg.drive_dir)
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
        self.ckpt = CheckpointManager(cfg.out, max_checkpoints=cfg.max_checkpoints,
                                      google_drive_sync=cfg.google_drive_sync and cfg.drive_dir is not None,
                                      drive_dir=cfg.drive_dir, best_metric="val_loss")
        try:
            resume_state = self._read_resume_state()
        except BaseException:
            self.ckpt.close(timeout=0)  # stop the Drive mirror thread of a trainer that will never run
            raise
        torch.manual_seed(cfg.seed)
        if model is not None:
            from kpop_helpers.text import get_text_encoder

            self.encoder = get_text_encoder(cfg.text_encoder)
            self.model, self.stats = model.to(self.device), stats if stats is not None else getattr(model, "stats", None)
        else:
            self.model, self.stats, self.encoder = build_model(cfg, self.device)
        train_windows, val_windows = build_data(cfg, progress=progress)
        if self.stats is None:
            from kpop_helpers.motion.stats import compute_stats

            self.stats = compute_stats([w.features for w in train_windows], std_floor=1e-3)
        self.model.stats = self.stats
        texts = {t for w in train_windows + val_windows for t in w.texts} | set(cfg.sample_prompts)
        cache = build_text_cache(self.encoder, sorted(texts))
        self.batch_size = cfg.batch_size or (64 if self.device.type == "cuda" else 16)
        world = self.accelerator.num_processes if self.accelerator else 1
        self.train_batches = WindowBatcher(train_windows, self.stats, cache, batch_size=self.batch_size,
                                           max_frames=cfg.max_frames, seed=cfg.seed)
        self.val_batches = (WindowBatcher(val_windows, self.stats, cache, batch_size=self.batch_size,
                                          max_frames=cfg.max_frames, seed=cfg.seed) if val_windows else None)
        self.world = world
        self.diffusion = GaussianDiffusion(self.model.cfg.diffusion_steps)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg.lr_schedule, cfg.warmup_steps, cfg.steps))
        self.precision = choose_precision(self.device, amp=cfg.amp)
        logger.info("precision: %s (%s)", self.precision.name, self.precision.reason)
        self.use_amp, self.amp_dtype = self.precision.autocast, self.precision.dtype
        # Under Accelerate its prepared optimizer scales the loss; a second scaler would unscale twice.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.grad_scaler and self.accelerator is None)
        self.ema = EMA(self.model, cfg.ema_decay)
        if self.accelerator is not None:
            self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.step, self.best_val, self.wandb_run_id = 0, math.inf, None
        self.history: list[dict[str, float]] = []
        self.already_finished, self.resumed_checkpoint = False, None
        self._resumed_loss: float | None = None
        self._resumed_val: float | None = None
        self._apply_resume(resume_state)
        self.tracker = tracker if tracker is not None else self._make_tracker()

    # ------------------------------------------------------------------ state
    def make_fingerprint(self, cfg: TrainConfig) -> dict:
        """What must not change for a checkpoint of this run to be resumed (a distiller adds its teacher)."""
        return run_fingerprint(cfg)

    @property
    def is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    @property
    def bare_model(self):
        return self.accelerator.unwrap_model(self.model) if self.accelerator else self.model

    def _read_resume_state(self) -> dict | None:
        """The checkpoint state to continue (checked against this run's fingerprint), None to start at 0."""
        if self.resume_mode in ("none", "fresh"):
            return None
        # model=None/optimizer=None: read the state without applying it, so the run is checked first.
        from_drive = self.cfg.drive_dir is not None
        if self.resume_mode == "auto":
            state = self.ckpt.load_latest_checkpoint(None, None, device=self.device, from_drive=from_drive)
        else:
            state = self.ckpt.load_checkpoint(self.cfg.resume, None, None, device=self.device)
        if state:
            verify_checkpoint_run(state, self.fingerprint, strict=self.resume_mode == "auto", drive=from_drive)
        return state or None

    def _apply_resume(self, state: dict | None) -> None:
        """Load a read checkpoint state into the model, optimizer, EMA, scheduler, scaler and RNGs."""
        if state is None:
            return
        self.bare_model.load_state_dict(state["model_state"])
        if state.get("optimizer_state") is not None:
            self.optimizer.load_state_dict(state["optimizer_state"])
        extra = state  # the manager merges the extra state into the returned dict
        self.ema.load_state_dict(extra["ema"])
        self.scheduler.load_state_dict(extra["scheduler"])
        if extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        self.step = int(state["step"])
        self.best_val = float(extra.get("best_val", math.inf))
        self.wandb_run_id = extra.get("wandb_run_id")
        self.history = list(extra.get("history", []))
        restore_rng_state(extra["rng_state"])
        self.resumed_checkpoint = Path(state["path"])
        self._resumed_loss = state.get("loss")
        self._resumed_val = (state.get("metrics") or {}).get("val_loss")
        logger.info("resumed from step %d (%s)", self.step, self.resumed_checkpoint.name)
        if self.step >= self.cfg.steps:
            self.already_finished = True
            logger.warning("run already finished at step %d (target %d): nothing to train; raise steps to "
                           "continue, or resume='fresh' to start over", self.step, self.cfg.steps)

    def _make_tracker(self):
        from kpop_helpers.tracking import Tracker

        if not self.is_main:
            return None
        return Tracker(self.log_dir, project=self.cfg.wandb_project,
                       run_name=self.cfg.run_name or Path(self.cfg.out).name,
                       use_wandb={"auto": "auto", "offline": "offline", "off": False, "on": True}[self.cfg.wandb],
                       config=self.cfg.to_dict(), resume_step=self.step, wandb_run_id=self.wandb_run_id)

    # ------------------------------------------------------------------ steps
    def _seed_step(self, step: int) -> None:
        torch.manual_seed((self.cfg.seed * 1_000_003 + step) % (2**63))

    def train_step(self, step: int) -> float:
        """One optimisation step; returns the loss."""
        self._seed_step(step)
        batch = self.train_batches.batch(step)
        if self.world > 1:
            rank = self.accelerator.process_index
            batch = {k: v.chunk(self.world)[rank] for k, v in batch.items()}
        x0 = batch["x"].to(self.device)
        mask = batch["mask"].to(self.device)
        text = batch["text_emb"].to(self.device)
        t = torch.randint(0, self.diffusion.num_steps, (x0.shape[0],)).to(self.device)
        noise = torch.randn(x0.shape).to(self.device)
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            loss = self._loss(x0, t, mask, text, noise)
        self.optimizer.zero_grad(set_to_none=True)
        if self.accelerator is not None:
            self.accelerator.backward(loss)
        else:
            self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.ema.update(self.bare_model)
        return float(loss.detach())

    def _loss(self, x0, t, mask, text, noise) -> torch.Tensor:
        x_t = self.diffusion.q_sample(x0, t, noise)
        pred = self.model(x_t, self.diffusion.model_timesteps(t), text, frame_mask=mask)
        frame_mask = mask[:, None, None, :].float()
        loss = masked_l2(x0, pred.float(), frame_mask).mean()
        if self.cfg.lambda_vel > 0:
            vel_mask = frame_mask[..., 1:] * frame_mask[..., :-1]
            dv = (pred[..., 1:] - pred[..., :-1]).float() - (x0[..., 1:] - x0[..., :-1])
            loss = loss + self.cfg.lambda_vel * (dv ** 2 * vel_mask).sum() / (vel_mask.sum() * x0.shape[1]).clamp(min=1)
        if self.cfg.lambda_fc > 0:
            loss = loss + self.cfg.lambda_fc * _foot_contact_loss(pred.float(), x0, mask, self.stats)
        return loss

    @torch.no_grad()
    def validate(self) -> float | None:
        """Masked x0 loss on the fixed validation split, with fixed timesteps and noise."""
        if self.val_batches is None:
            return None
        gen = torch.Generator().manual_seed(self.cfg.seed + 12345)
        model = self.bare_model
        model.eval()
        losses = []
        for batch in self.val_batches.all_batches(self.batch_size)[: max(1, self.cfg.val_batches)]:
            x0 = batch["x"]
            t = torch.randint(0, self.diffusion.num_steps, (x0.shape[0],), generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
            per_row = self.validation_loss(model, x0.to(self.device), t.to(self.device), batch["mask"].to(self.device),
                                           batch["text_emb"].to(self.device), noise.to(self.device))
            losses.append(per_row.float().cpu())
        return float(torch.cat(losses).mean())

    def validation_loss(self, model, x0, t, mask, text, noise) -> torch.Tensor:
        """Per-row masked x0 loss of the conditioned model (a distiller compares with its teacher instead)."""
        return self.diffusion.training_loss(
            lambda xt, mt: model(xt, mt, text, torch.zeros(xt.shape[0], dtype=torch.bool, device=xt.device),
                                 frame_mask=mask), x0, t, mask, noise)

    # ------------------------------------------------------------------ loop
    def train(self) -> TrainResult:
        """Run until cfg.steps, checkpointing every cfg.save_every steps; returns the summary."""
        cfg = self.cfg
        start, t0, ckpt_time = self.step, time.perf_counter(), 0.0
        # A finished run trains nothing: it reports what the resumed checkpoint holds.
        loss = float("nan") if self._resumed_loss is None else float(self._resumed_loss)
        val, last_ckpt = self._resumed_val, self.resumed_checkpoint
        bar = tqdm(range(self.step, cfg.steps), desc="fine-tune", disable=not self.progress, initial=self.step,
                   total=cfg.steps)
        for step in bar:
            loss = self.train_step(step)
            self.step = step + 1
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                rate = (self.step - start) / max(1e-9, time.perf_counter() - t0)
                bar.set_postfix(loss=f"{loss:.4f}", it_s=f"{rate:.2f}")
                row = {"step": self.step, "loss": loss, "lr": self.scheduler.get_last_lr()[0]}
                self.history.append(row)
                if self.tracker:
                    self.tracker.log_scalars({"train/loss": loss, "train/lr": row["lr"], "train/steps_per_s": rate}, self.step)
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                val = self.validate()
                if val is not None:
                    self.history.append({"step": self.step, "val_loss": val})
                    if self.tracker:
                        self.tracker.log_scalars({"val/loss": val}, self.step)
            if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                c0 = time.perf_counter()
                last_ckpt = self.save(loss, val)
                ckpt_time += time.perf_counter() - c0
            if cfg.sample_every > 0 and self.step % cfg.sample_every == 0 and self.step < cfg.steps:
                self._samples()
        weights = self.export_weights() if self.is_main else None
        self._samples()
        wall = time.perf_counter() - t0
        if not self.ckpt.close(timeout=DRIVE_FLUSH_TIMEOUT_S):
            logger.warning("Drive did not catch up within %d s; local checkpoints are complete and the copy "
                           "resumes on the next run (or call CheckpointManager.flush())", DRIVE_FLUSH_TIMEOUT_S)
        if self.tracker:
            self.tracker.close()
        done = self.step - start
        return TrainResult(step=self.step, train_loss=loss, val_loss=val, checkpoint=str(last_ckpt) if last_ckpt else None,
                           weights=str(weights) if weights else None, history=self.history,
                           steps_per_second=done / wall if wall > 0 else 0.0, checkpoint_seconds=ckpt_time,
                           wall_seconds=wall)

    def _samples(self) -> None:
        """Render the sample GIFs (main process, when there are prompts) and hand them to `on_sample`."""
        if not self.is_main or not self.cfg.sample_prompts:
            return
        paths = self.render_samples()
        if self.on_sample is not None:
            try:
                self.on_sample(self.step, paths)
            except Exception:  # a display problem in the notebook must not end hours of training
                logger.warning("on_sample callback failed at step %d", self.step, exc_info=True)

    def save(self, loss: float, val: float | None) -> Path | None:
        """Write the whole training state (atomic, Drive-synced)."""
        if not self.is_main:
            return None
        if val is not None:
            self.best_val = min(self.best_val, val)
        metrics = {"train_loss": loss, **({"val_loss": val} if val is not None else {})}
        return self.ckpt.save_checkpoint(
            self.bare_model, self.optimizer, epoch=self.step // self.train_batches.steps_per_epoch, step=self.step,
            loss=loss, metrics=metrics, metadata={"preset": self.cfg.preset, "text_encoder": self.encoder.name},
            ema=self.ema.state_dict(), scheduler=self.scheduler.state_dict(), scaler=self.scaler.state_dict(),
            rng_state=capture_rng_state(), data_position=self.step, best_val=self.best_val,
            model_config=self.bare_model.cfg.to_dict(), train_config=self.cfg.to_dict(),
            stats={"mean": torch.from_numpy(np.asarray(self.stats.mean, np.float32)),
                   "std": torch.from_numpy(np.asarray(self.stats.std, np.float32))},
            text_encoder=self.encoder.name, wandb_run_id=getattr(self.tracker, "run_id", None),
            history=self.history, **{FINGERPRINT_KEY: self.fingerprint})

    def ema_model(self):
        """A copy of the model holding the EMA weights (used for sampling and export)."""
        import copy

        model = copy.deepcopy(self.bare_model)
        self.ema.copy_to(model)
        model.stats, model.text_encoder_name = self.stats, self.encoder.name
        return model.eval()

    def export_weights(self) -> Path:
        """EMA weights as .safetensors + config JSON + Mean/Std for the compress/export stage."""
        from kpop_helpers.checkpoints import export_weights

        path = Path(self.cfg.out) / "model_ema.safetensors"
        export_weights(self.ema.state_dict(), path, config=self.bare_model.cfg.to_dict(), stats=self.stats,
                       metadata={"text_encoder": self.encoder.name, "step": self.step, "kind": "ema"})
        return path

    def render_samples(self) -> list[Path]:
        """Generate the sample prompts with the EMA model (DDIM 10) and log them as GIFs."""
        from kpop_helpers.generate import generate
        from kpop_helpers.viz import save_gif

        model = self.ema_model()
        result = generate(model, list(self.cfg.sample_prompts), frames=min(120, model.cfg.max_frames), sampler="ddim",
                          steps=10, seed=self.cfg.seed, text_encoder=self.encoder, stats=self.stats, progress=False)
        out = []
        for i, (prompt, joints) in enumerate(zip(self.cfg.sample_prompts, result.joints)):
            path = Path(self.cfg.out) / "samples" / f"step{self.step:07d}_{i}.gif"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_gif(joints, path, caption=prompt, dpi=50)
            out.append(path)
            if self.tracker:
                self.tracker.log_gif(f"samples/{i}", path, self.step)
        return out


def _foot_contact_loss(pred: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor, stats: MotionStats) -> torch.Tensor:
    """MDM's foot-contact loss: predicted foot joints should not move where the data says they touch."""
    from kpop_helpers.motion.features import features_to_joints_torch

    feats_pred = stats.denormalize(pred[:, :, 0].permute(0, 2, 1))
    feats_gt = stats.denormalize(x0[:, :, 0].permute(0, 2, 1))
    joints = features_to_joints_torch(feats_pred)
    contact = feats_gt[..., 259:263] > 0.5  # l_ankle, l_foot, r_ankle, r_foot
    feet = joints[:, :, [7, 10, 8, 11]]
    vel = feet[:, 1:] - feet[:, :-1]
    valid = (contact[:, :-1] & mask[:, 1:, None] & mask[:, :-1, None]).float()
    return ((vel ** 2).sum(-1) * valid).sum() / valid.sum().clamp(min=1)


def _maybe_accelerator(cfg: TrainConfig, device: torch.device):
    """Hugging Face Accelerate when launched with several processes (`accelerate launch`), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    mixed = choose_precision(device, amp=cfg.amp).accelerate_mixed_precision
    return Accelerator(mixed_precision=mixed, cpu=device.type == "cpu")
