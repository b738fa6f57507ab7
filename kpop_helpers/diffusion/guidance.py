"""Classifier-free guidance for MDM: one batched pass over conditioned and unconditioned rows."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from kpop_helpers.diffusion.gaussian import ModelFn
from kpop_helpers.sampling.steps import guidance_rows, guided_combine  # written once, for numpy and torch alike

# MDM forward: model(x [B,263,1,T], timesteps [B] long, text_emb [B,D], uncond bool [B] | None) -> x0.
MDMForward = Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]

__all__ = ["MDMForward", "cfg_model_fn", "guided_combine"]


def cfg_model_fn(model: MDMForward, text_emb: Tensor, scale: float | Tensor = 2.5) -> ModelFn:
    """A diffusion model_fn(x, model_t) applying classifier-free guidance to an MDM-style model.

    Rows are run as ONE batch of 2B (B conditioned, then B with `uncond=True`), which halves the
    number of network calls compared with the reference's two passes; the result is identical for a
    network whose rows are independent. A plain scale of exactly 1 returns the conditioned output
    from a batch of B, as MDM's sample script does when guidance_param == 1. A guidance-distilled student
    (`model.guidance_input`) is called once, conditioned, with the scale as its input.
    """
    conditioned_only = not isinstance(scale, Tensor) and float(scale) == 1.0
    scale_input = bool(getattr(model, "guidance_input", False))

    def model_fn(x: Tensor, model_t: Tensor) -> Tensor:
        batch = x.shape[0]
        if text_emb.shape[0] != batch:
            raise ValueError(f"text_emb has {text_emb.shape[0]} rows but the sample batch has {batch}")
        if scale_input:
            return model(x, model_t, text_emb, torch.zeros(batch, dtype=torch.bool, device=x.device),
                         guidance=guidance_rows(scale, x, batch))
        if conditioned_only:
            return model(x, model_t, text_emb, torch.zeros(batch, dtype=torch.bool, device=x.device))
        uncond = torch.cat([torch.zeros(batch, dtype=torch.bool, device=x.device),
                            torch.ones(batch, dtype=torch.bool, device=x.device)])
        out = model(torch.cat([x, x]), torch.cat([model_t, model_t]), torch.cat([text_emb, text_emb]), uncond)
        out_cond, out_uncond = out[:batch], out[batch:]
        return guided_combine(out_cond, out_uncond, scale)

    return model_fn
