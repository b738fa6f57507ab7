"""The training precision for a device: fp32 on CPU/MPS, fp16 + GradScaler before Ampere, bf16 from Ampere on.

Why not ``torch.cuda.is_bf16_supported()``: on a T4 (compute capability 7.5, Colab's free GPU) it returns
True because bf16 *works* there by emulation, not because the hardware has it. In torch 2.13 its signature is
``is_bf16_supported(including_emulation: bool = True)``: only capability >= 8.0 returns True before the
emulation probe, which otherwise just checks that a bf16 tensor can be created. Emulated bf16 matmuls are much
slower than fp16 tensor-core ones, so the rule below looks at the compute capability itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AMPERE = 8  # first compute capability major with native bf16 tensor cores (A100 8.0, RTX 30xx 8.6, L4 8.9)


@dataclass(frozen=True)
class PrecisionChoice:
    """How to train on a device: ``name`` fp32|fp16|bf16, autocast ``dtype``, whether a GradScaler is needed."""

    name: str
    dtype: torch.dtype
    grad_scaler: bool
    reason: str

    @property
    def autocast(self) -> bool:
        """True when the forward pass runs under torch.autocast."""
        return self.name != "fp32"

    @property
    def accelerate_mixed_precision(self) -> str:
        """The value for Hugging Face Accelerate's ``mixed_precision`` ("no" | "fp16" | "bf16")."""
        return "no" if self.name == "fp32" else self.name


def choose_precision(device: torch.device | str, *, amp: bool = True,
                     capability: tuple[int, int] | None = None) -> PrecisionChoice:
    """fp32 on CPU/MPS or with amp off; fp16 autocast + GradScaler below capability 8.0; bf16 from 8.0 on."""
    device = torch.device(device)
    if device.type != "cuda":
        return PrecisionChoice("fp32", torch.float32, False,
                               f"{device.type.upper()} device: fp32 (mixed precision is used on CUDA GPUs only)")
    if not amp:
        return PrecisionChoice("fp32", torch.float32, False, "amp=False: fp32 on the GPU as asked")
    if capability is None:
        if not torch.cuda.is_available():
            raise ValueError(f"choose_precision: device {device} asked for but CUDA is not available "
                             "(expected a CUDA runtime, or pass capability=(major, minor))")
        capability = tuple(torch.cuda.get_device_capability(device))
    major, minor = int(capability[0]), int(capability[1])
    cc = f"compute capability {major}.{minor}"
    if major < AMPERE:
        # fp16 needs loss scaling: its 5-bit exponent underflows small gradients to zero.
        return PrecisionChoice("fp16", torch.float16, True,
                               f"T4-class GPU ({cc}) has no native bf16 (torch only emulates it there, slowly): "
                               "fp16 autocast with a gradient scaler")
    return PrecisionChoice("bf16", torch.bfloat16, False,
                           f"Ampere-or-newer GPU ({cc}) has native bf16: bf16 autocast, no gradient scaler needed")
