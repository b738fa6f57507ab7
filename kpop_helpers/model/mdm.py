"""MDM denoiser (Tevet et al. 2022, arch trans_enc, text condition), with the official state_dict names.

Layout and names follow GuyTevet/motion-diffusion-model `model/mdm.py` so that the released checkpoints
load by name: `input_process.poseEmbedding`, `sequence_pos_encoder.pe`, `seqTransEncoder.layers.N.*`,
`embed_timestep.{sequence_pos_encoder.pe,time_embed.0,time_embed.2}`, `embed_text`,
`output_process.poseFinal`. The forward takes plain tensors (no `y` dict) so it traces and exports.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor, nn

from kpop_helpers.errors import DataError
from kpop_helpers.model.config import MDMConfig

logger = logging.getLogger(__name__)

# Keys of the sinusoid table in official files; the table is recomputed, never read (like the official loader).
PE_KEYS = ("sequence_pos_encoder.pe", "embed_timestep.sequence_pos_encoder.pe")


def sinusoid_table(max_len: int, dim: int) -> Tensor:
    """The [max_len, 1, dim] float32 sin/cos table, computed exactly like the reference (bit-identical)."""
    pe = torch.zeros(max_len, dim)
    position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2).float() * (-math.log(10000.0) / dim))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe.unsqueeze(0).transpose(0, 1).contiguous()


class PositionalEncoding(nn.Module):
    """Adds PE[j] to sequence position j (sequence-first), then dropout."""

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        # Non-persistent: files may carry it (ignored on load), our own files do not.
        self.register_buffer("pe", sinusoid_table(max_len, d_model), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """x [S, B, D] -> x + PE[:S]."""
        return self.dropout(x + self.pe[: x.shape[0]])


class TimestepEmbedder(nn.Module):
    """e_t = W2 SiLU(W1 PE[t] + b1) + b2: the diffusion step is a row index into the shared table."""

    def __init__(self, latent_dim: int, sequence_pos_encoder: PositionalEncoding):
        super().__init__()
        self.latent_dim = latent_dim
        self.sequence_pos_encoder = sequence_pos_encoder
        self.time_embed = nn.Sequential(
            nn.Linear(latent_dim, latent_dim),
            nn.SiLU(),
            nn.Linear(latent_dim, latent_dim),
        )

    def forward(self, timesteps: Tensor) -> Tensor:
        """timesteps [B] long -> [1, B, D]."""
        return self.time_embed(self.sequence_pos_encoder.pe[timesteps]).permute(1, 0, 2)


class InputProcess(nn.Module):
    """[B, N, F, T] features -> [T, B, D] tokens (frame-major)."""

    def __init__(self, input_feats: int, latent_dim: int):
        super().__init__()
        self.input_feats = input_feats
        self.latent_dim = latent_dim
        self.poseEmbedding = nn.Linear(input_feats, latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        bs, njoints, nfeats, nframes = x.shape
        x = x.permute(3, 0, 1, 2).reshape(nframes, bs, njoints * nfeats)
        return self.poseEmbedding(x)


class OutputProcess(nn.Module):
    """[T, B, D] tokens -> [B, N, F, T] features."""

    def __init__(self, njoints: int, nfeats: int, latent_dim: int):
        super().__init__()
        self.njoints = njoints
        self.nfeats = nfeats
        self.poseFinal = nn.Linear(latent_dim, njoints * nfeats)

    def forward(self, output: Tensor) -> Tensor:
        nframes, bs, _ = output.shape
        output = self.poseFinal(output).reshape(nframes, bs, self.njoints, self.nfeats)
        return output.permute(1, 2, 3, 0)


class MDM(nn.Module):
    """The MDM denoiser: predicts x0 from (x_t, t, text embedding); official state_dict layout."""

    def __init__(self, config: MDMConfig | None = None, **overrides: Any):
        super().__init__()
        # A private copy: reset_text_projection edits it, and PRESETS entries must never change.
        config = MDMConfig.from_dict({**(config or MDMConfig()).to_dict(), **overrides})
        self.cfg = config
        d = config.latent_dim

        # Registration order = the reference's, so state_dict() lists keys in the same order.
        self.input_process = InputProcess(config.input_feats, d)
        self.sequence_pos_encoder = PositionalEncoding(d, config.dropout, config.pos_embed_max_len)
        # Sequence-first and post-LN like the reference. torch's fused inference kernels need batch_first,
        # so the composite (exportable) path always runs; nested tensors need it too, hence off.
        layer = nn.TransformerEncoderLayer(d_model=d, nhead=config.num_heads, dim_feedforward=config.ff_size,
                                           dropout=config.dropout, activation=config.activation)
        self.seqTransEncoder = nn.TransformerEncoder(layer, num_layers=config.num_layers, enable_nested_tensor=False)
        self.embed_timestep = TimestepEmbedder(d, self.sequence_pos_encoder)
        self.embed_text = nn.Linear(config.text_dim, d)
        self.output_process = OutputProcess(config.njoints, config.nfeats, d)
        # Only guidance students have it (after the official keys: their order stays the reference's). It
        # predicts the guidance direction (cond - uncond) from the same tokens: the guided x0 at scale w is
        # cond + (w - 1) * direction, linear in w as classifier-free guidance is, from one pass. Zero at first,
        # so a student made from a teacher starts as the teacher's conditioned call at every scale.
        self.output_guidance = None
        if config.guidance_input:
            self.output_guidance = OutputProcess(config.njoints, config.nfeats, d)
            nn.init.zeros_(self.output_guidance.poseFinal.weight)
            nn.init.zeros_(self.output_guidance.poseFinal.bias)

        # Plain attributes (not in the state_dict): the normalisation statistics the model was trained
        # with (a kpop_helpers.motion.stats.MotionStats) and the text encoder feeding embed_text.
        self.stats: Any = None
        self.text_encoder_name: str = config.text_encoder

    # ------------------------------------------------------------------ forward
    @property
    def guidance_input(self) -> bool:
        """Whether the guidance scale is an input (one call per step) instead of the guided pair of calls."""
        return self.output_guidance is not None

    def forward(self, x: Tensor, timesteps: Tensor, text_emb: Tensor, uncond: Tensor | bool | None = None,
                frame_mask: Tensor | None = None, guidance: Tensor | float | None = None) -> Tensor:
        """x [B,N,1,T], timesteps [B] long, text_emb [B,text_dim] -> predicted x0 [B,N,1,T].

        uncond: bool [B] (or one Python bool for the batch); True rows use the null condition (text vector
        zeroed BEFORE the projection, so their token is e_t + embed_text.bias). When None and the model is in train mode, each row is
        dropped with probability cfg.cond_mask_prob (classifier-free guidance training, the first random
        draw of the forward, exactly like the reference); an explicit `uncond` disables that draw.
        frame_mask: bool [B,T], True on valid frames. Used only when cfg.mask_frames is True (the
        released 1000-step model was trained without it, so it is ignored there, as in the reference).
        guidance: [B] (or one number) scale of a guidance-input model (`cfg.guidance_input`): its conditioned
        rows predict the guided x0 at that scale; None means 1.0. Other models take no guidance.
        """
        if x.dim() != 4 or x.shape[1] != self.cfg.njoints or x.shape[2] != self.cfg.nfeats:
            raise DataError(f"got shape {tuple(x.shape)}", field="x",
                            expected=f"[B, {self.cfg.njoints}, {self.cfg.nfeats}, T]")
        if text_emb.dim() != 2 or text_emb.shape[1] != self.cfg.text_dim:
            raise DataError(f"got shape {tuple(text_emb.shape)}", field="text_emb",
                            expected=f"[B, {self.cfg.text_dim}] (the {self.text_encoder_name} embedding)")
        cond = self._condition_vector(text_emb.to(x.dtype), uncond)
        emb = self.embed_timestep(timesteps.long())
        emb = emb + self.embed_text(cond).unsqueeze(0)
        if guidance is not None and self.output_guidance is None:
            raise DataError("this model takes no guidance input", field="guidance",
                            expected="guidance=None (classifier-free guidance is the sampler's guided pair), or "
                                     "a guidance-distilled student (cfg.guidance_input)")

        tokens = self.input_process(x)
        padding_mask = None
        if self.cfg.mask_frames and frame_mask is not None:
            # The condition token is never masked; padded frames are (True = ignore).
            token_ok = torch.ones_like(frame_mask[:, :1], dtype=torch.bool)
            padding_mask = torch.logical_not(torch.cat([token_ok, frame_mask.bool()], dim=1))
        xseq = torch.cat((emb, tokens), dim=0)
        xseq = self.sequence_pos_encoder(xseq)
        output = self.seqTransEncoder(xseq, src_key_padding_mask=padding_mask)[1:]
        if self.output_guidance is None or guidance is None:
            return self.output_process(output)
        scale = torch.as_tensor(guidance, device=x.device).to(output.dtype).reshape(-1, 1, 1, 1)
        return self.output_process(output) + (scale - 1.0) * self.output_guidance(output)

    def _condition_vector(self, text_emb: Tensor, uncond: Tensor | bool | None) -> Tensor:
        """The text vector c per row after masking (c := 0 for the null condition)."""
        if isinstance(uncond, bool):
            uncond = torch.full((text_emb.shape[0],), uncond, dtype=torch.bool, device=text_emb.device)
        if uncond is not None:
            return torch.where(uncond.reshape(-1, 1).bool(), torch.zeros_like(text_emb), text_emb)
        if self.training and self.cfg.cond_mask_prob > 0.0:
            bs = text_emb.shape[0]
            drop = torch.bernoulli(torch.ones(bs, device=text_emb.device) * self.cfg.cond_mask_prob).view(bs, 1)
            return text_emb * (1.0 - drop)
        return text_emb

    # ------------------------------------------------------------------ helpers
    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of (unique) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def reset_text_projection(self, dim: int, encoder_name: str | None = None) -> None:
        """Replace embed_text by a freshly initialised Linear(dim -> latent_dim) for another text encoder."""
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise DataError(f"got {dim!r}", field="text_dim", expected="a positive integer")
        old_dim = self.cfg.text_dim
        old_name = self.text_encoder_name
        weight = self.embed_text.weight
        self.embed_text = nn.Linear(dim, self.cfg.latent_dim, device=weight.device, dtype=weight.dtype)
        self.cfg.text_dim = dim
        if encoder_name is not None:
            self.cfg.text_encoder = encoder_name
            self.text_encoder_name = encoder_name
        # Visible by default: this throws away the trained text projection.
        logger.warning("MDM text projection re-initialised: embed_text %d->%d (%s) replaced by %d->%d (%s); "
                       "the text condition must be (re)trained", old_dim, self.cfg.latent_dim, old_name,
                       dim, self.cfg.latent_dim, self.text_encoder_name)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"latent_dim={c.latent_dim}, ff_size={c.ff_size}, layers={c.num_layers}, heads={c.num_heads}, "
                f"text={self.text_encoder_name}:{c.text_dim}, steps={c.diffusion_steps}, mask_frames={c.mask_frames}")


def set_text_encoder(model: MDM, encoder: Any) -> MDM:
    """Point the model at a text encoder (anything with `name` and `dim`); re-initialises embed_text on change."""
    name, dim = str(encoder.name), int(encoder.dim)
    if dim != model.cfg.text_dim or name != model.text_encoder_name:
        model.reset_text_projection(dim, encoder_name=name)
    return model
