"""Distiller: a `Trainer` whose target is the teacher's output, not the data's x0.

The data still matter: x_t is the data noised to t, so the student learns where real dances are.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kpop_helpers.diffusion import masked_l2
from kpop_helpers.distill.config import DistillConfig
from kpop_helpers.model import MDM
from kpop_helpers.sampling.schedule import space_timesteps
from kpop_helpers.sampling.spec import SamplerSpec
from kpop_helpers.train.fingerprint import path_digest, run_fingerprint
from kpop_helpers.train.setup import load_init
from kpop_helpers.train.trainer import Trainer


def student_sampling(cfg: DistillConfig) -> SamplerSpec:
    """The sampler the student is made for: one call per step, at `guidance` (an input) or 1.0 (baked in)."""
    guidance = float(cfg.guidance) if cfg.guidance_input else 1.0
    if cfg.stage == "steps":
        return SamplerSpec(sampler="ddim", steps=cfg.student_steps, guidance=guidance)
    return SamplerSpec(sampler="ddpm", steps=None, guidance=guidance)


def make_student(cfg: DistillConfig) -> tuple[MDM, Any]:
    """The student at step 0: the initial weights (the teacher's by default), with a guidance input when asked.

    The guidance head starts at zero (`MDM.output_guidance`), so the new student is the teacher's conditioned call.
    """
    model, stats = load_init(cfg.init)
    if cfg.guidance_input and not model.guidance_input:
        student = MDM(model.cfg, guidance_input=True)
        missing, unexpected = student.load_state_dict(model.state_dict(), strict=False)
        if unexpected or any(not key.startswith("output_guidance.") for key in missing):
            raise ValueError(f"{cfg.init}: cannot add a guidance input (missing {missing}, unexpected {unexpected})")
        student.text_encoder_name = model.text_encoder_name
        model = student
    if cfg.trainable == "guidance_head":
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith("output_guidance."))
    return model, stats


class Distiller(Trainer):
    """Trains a student (initialised from the teacher) to match the teacher; see `kpop_helpers.distill`."""

    def __init__(self, cfg: DistillConfig, **kwargs: Any):
        if "model" not in kwargs:
            kwargs["model"], kwargs["stats"] = make_student(cfg)
        super().__init__(cfg, **kwargs)
        teacher, _ = load_init(cfg.teacher)
        if teacher.cfg.text_dim != self.bare_model.cfg.text_dim:
            raise ValueError(f"teacher {cfg.teacher} takes {teacher.cfg.text_dim}-d text, the student "
                             f"{self.bare_model.cfg.text_dim}-d: distil with the teacher's text encoder")
        self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        # The target is the teacher's deterministic (eval) output: the student's dropout would only add noise that
        # the loss then blames on the weights. (Its config keeps the rate: inference never uses it.)
        for module in self.bare_model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        self.student_t = None
        if cfg.stage == "steps":  # the student's DDIM timesteps, ascending, in the model's 1000-step numbering
            spec = student_sampling(cfg).respacing(self.diffusion.num_steps)
            self.student_t = torch.tensor(sorted(space_timesteps(self.diffusion.num_steps, spec)), device=self.device)

    def make_fingerprint(self, cfg: DistillConfig) -> dict:
        """The run's fingerprint plus the teacher's digest and the distillation settings."""
        return {**run_fingerprint(cfg), "teacher_sha256": path_digest(cfg.teacher, what="teacher"),
                "stage": cfg.stage, "guidance": float(cfg.guidance), "student_steps": int(cfg.student_steps),
                "guidance_input": bool(cfg.guidance_input), "trainable": cfg.trainable,
                "guidance_range": [float(cfg.guidance_min), float(cfg.guidance_max)]}

    def draw_guidance(self, batch: int, device: torch.device) -> Tensor:
        """Per-row scales of one batch: uniform in the configured range (an input), else the fixed scale."""
        if not self.cfg.guidance_input:
            return torch.full((batch,), float(self.cfg.guidance), device=device)
        low, high = float(self.cfg.guidance_min), float(self.cfg.guidance_max)
        return (low + (high - low) * torch.rand(batch)).to(device)  # the trainer seeds every step: resumable

    # ------------------------------------------------------------------ the teacher's side
    @torch.no_grad()
    def teacher_x0(self, x: Tensor, t: Tensor, text: Tensor, mask: Tensor, w: Tensor) -> Tensor:
        """The teacher's x0 at per-row scales w: uncond + w (cond - uncond) in one batch of 2B, or one call
        for a teacher that takes the scale as an input (or when every w is 1)."""
        batch = x.shape[0]
        conditioned = torch.zeros(batch, dtype=torch.bool, device=x.device)
        if self.teacher.guidance_input:
            return self.teacher(x, t, text, conditioned, frame_mask=mask, guidance=w)
        if bool((w == 1.0).all()):
            return self.teacher(x, t, text, conditioned, frame_mask=mask)
        uncond = torch.cat([conditioned, torch.ones(batch, dtype=torch.bool, device=x.device)])
        out = self.teacher(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, text]), uncond,
                           frame_mask=torch.cat([mask, mask]))
        return out[batch:] + w.view(-1, 1, 1, 1) * (out[:batch] - out[batch:])

    def _ddim(self, x: Tensor, x0: Tensor, t: Tensor, s: Tensor) -> Tensor:
        """One deterministic DDIM step from t to s given the x0 prediction (MDM's noise schedule)."""
        a_t = self.diffusion.coef("sqrt_alphas_cumprod", t, x.ndim)
        b_t = self.diffusion.coef("sqrt_one_minus_alphas_cumprod", t, x.ndim)
        eps = (x - a_t * x0) / b_t
        return self.diffusion.coef("sqrt_alphas_cumprod", s, x.ndim) * x0 + \
            self.diffusion.coef("sqrt_one_minus_alphas_cumprod", s, x.ndim) * eps

    @torch.no_grad()
    def two_step_target(self, x: Tensor, index: Tensor, text: Tensor, mask: Tensor, w: Tensor) -> Tensor:
        """The x0 whose one DDIM step from t_i lands where the teacher's two steps t_i -> mid -> t_(i-1) land.

        x_s = a_s x0 + b_s (x_t - a_t x0) / b_t solved for x0 (Salimans & Ho, x parameterisation). At the last
        student step (i = 0) the student's x0 is the sample itself: the target is the teacher's x0 there.
        """
        t = self.student_t[index]
        x0_t = self.teacher_x0(x, t, text, mask, w)
        last = index == 0
        s = self.student_t[(index - 1).clamp(min=0)]
        mid = torch.div(t + s, 2, rounding_mode="floor")
        x_mid = self._ddim(x, x0_t, t, mid)
        x_s = self._ddim(x_mid, self.teacher_x0(x_mid, mid, text, mask, w), mid, s)
        a_t, b_t = (self.diffusion.coef(k, t, x.ndim) for k in ("sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod"))
        a_s, b_s = (self.diffusion.coef(k, s, x.ndim) for k in ("sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod"))
        ratio = b_s / b_t
        target = (x_s - ratio * x) / (a_s - ratio * a_t)
        return torch.where(last.view(-1, 1, 1, 1), x0_t, target)

    def distill_target(self, x0: Tensor, t: Tensor, mask: Tensor, text: Tensor, noise: Tensor,
                       w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(x_t, model timesteps, target) of one batch: data noised to t, the teacher's answer for it at scales w."""
        if self.cfg.stage == "steps":
            # t (uniform over 0..999, drawn by the trainer) picks one of the student's timesteps uniformly.
            index = torch.div(t * self.student_t.numel(), self.diffusion.num_steps, rounding_mode="floor")
            t = self.student_t[index]
            x_t = self.diffusion.q_sample(x0, t, noise)
            return x_t, t, self.two_step_target(x_t, index, text, mask, w)
        x_t = self.diffusion.q_sample(x0, t, noise)
        model_t = self.diffusion.model_timesteps(t)
        return x_t, model_t, self.teacher_x0(x_t, model_t, text, mask, w)

    def student_x0(self, model, x_t: Tensor, model_t: Tensor, text: Tensor, mask: Tensor, w: Tensor) -> Tensor:
        """The student's conditioned x0 (given the scale when it takes one)."""
        conditioned = torch.zeros(x_t.shape[0], dtype=torch.bool, device=x_t.device)  # explicit: no dropout draw
        if getattr(model, "module", model).guidance_input:  # Accelerate/DDP wrap the model: the MDM is .module
            return model(x_t, model_t, text, conditioned, frame_mask=mask, guidance=w)
        return model(x_t, model_t, text, conditioned, frame_mask=mask)

    # ------------------------------------------------------------------ the trainer's hooks
    def _loss(self, x0, t, mask, text, noise) -> Tensor:
        w = self.draw_guidance(x0.shape[0], x0.device)
        x_t, model_t, target = self.distill_target(x0, t, mask, text, noise, w)
        pred = self.student_x0(self.model, x_t, model_t, text, mask, w)
        return masked_l2(target.float(), pred.float(), mask[:, None, None, :].float()).mean()

    def validation_loss(self, model, x0, t, mask, text, noise) -> Tensor:
        """Per-row masked distance of the student's x0 to the teacher's target (fixed t and noise, scale `guidance`)."""
        w = torch.full((x0.shape[0],), float(self.cfg.guidance), device=x0.device)
        x_t, model_t, target = self.distill_target(x0, t, mask, text, noise, w)
        pred = self.student_x0(model, x_t, model_t, text, mask, w)
        return masked_l2(target.float(), pred.float(), mask[:, None, None, :].float())
