"""The trace-friendly wrapper that exists only for export: four plain inputs and a trimmed positional table.

Inputs (MDM's layout; the graph is sequence-first inside, exactly like the PyTorch model):
  x [B, 263, 1, T] float32, timesteps [B] int64 (original diffusion steps), text_emb [B, D] float32,
  uncond [B] bool (True = null condition; a bool input, not a float mask, so that ORT, TorchScript and
  torch.export all take the same arrays as `MDM.forward`). Output: x0 [B, 263, 1, T] float32.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from kpop_helpers.edge.manifest import GUIDANCE_INPUT, INPUT_NAMES, OUTPUT_NAMES
from kpop_helpers.runners import example_inputs  # re-exported: the export's example inputs are the runners' inputs

__all__ = ["ExportableMDM", "INPUT_NAMES", "OUTPUT_NAMES", "dynamic_shapes", "example_inputs", "input_spec"]


class ExportableMDM(nn.Module):
    """MDM in eval mode with exactly (x, timesteps, text_emb, uncond) -> x0, ready to trace/export.

    The 5000-row sinusoid table is cut to the rows the model can index (the larger of diffusion_steps for
    the timestep embedder and max_frames + 1 for the sequence): 10 MB of the official model's 82 MB ONNX
    file would otherwise be a table no input reaches. The wrapped model is a deep copy; the caller's model
    is not touched.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        model = copy.deepcopy(model).eval()
        cfg = model.cfg
        rows = max(int(cfg.diffusion_steps), int(cfg.max_frames) + 1)
        encoder = model.sequence_pos_encoder
        # The timestep embedder holds the same PositionalEncoding object, so both see the trimmed table.
        encoder.register_buffer("pe", encoder.pe[:rows].clone(), persistent=False)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self.model = model
        self.cfg = cfg
        self.eval()

    def forward(self, x: Tensor, timesteps: Tensor, text_emb: Tensor, uncond: Tensor,
                guidance: Tensor | None = None) -> Tensor:
        """x [B,263,1,T], timesteps [B] int64, text_emb [B,D], uncond [B] bool (guidance [B] float32 for a
        guidance student) -> x0 [B,263,1,T]."""
        return self.model(x, timesteps, text_emb, uncond, guidance=guidance)


def dynamic_shapes(cfg: Any) -> tuple[dict[int, Any], ...]:
    """torch.export dims: a dynamic batch for every input and dynamic frames (1..max_frames) for x."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    frames = torch.export.Dim("frames", min=1, max=int(cfg.max_frames))
    per_row = ({0: batch},) * (4 if getattr(cfg, "guidance_input", False) else 3)
    return ({0: batch, 3: frames}, *per_row)


def input_spec(cfg: Any) -> dict[str, dict[str, Any]]:
    """Human-readable description of the graph inputs and output (stored in manifest.json)."""
    return {
        INPUT_NAMES[0]: {"shape": ["batch", cfg.njoints, cfg.nfeats, "frames"], "dtype": "float32",
                         "meaning": "noisy normalised motion x_t (MDM layout)"},
        INPUT_NAMES[1]: {"shape": ["batch"], "dtype": "int64", "meaning": "original diffusion step (timestep_map[t])"},
        INPUT_NAMES[2]: {"shape": ["batch", cfg.text_dim], "dtype": "float32", "meaning": "text embedding"},
        INPUT_NAMES[3]: {"shape": ["batch"], "dtype": "bool", "meaning": "True = unconditioned row (CFG)"},
        **({GUIDANCE_INPUT: {"shape": ["batch"], "dtype": "float32",
                             "meaning": "guidance scale (a guidance-distilled student: one call per step)"}}
           if getattr(cfg, "guidance_input", False) else {}),
        OUTPUT_NAMES[0]: {"shape": ["batch", cfg.njoints, cfg.nfeats, "frames"], "dtype": "float32",
                          "meaning": "predicted clean motion x0"},
        "frames_range": [1, int(cfg.max_frames)],
    }
