"""MDMConfig: the denoiser's hyper-parameters, the named presets, and the mapping from MDM's args.json."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from typing import Any

from kpop_helpers.errors import DataError
from kpop_helpers.motion.features import FEATURE_DIM

# Feature width per dataset of the official code (`get_model_args`): HumanML3D 263-d, KIT-ML 251-d.
_DATASET_NJOINTS = {"humanml": FEATURE_DIM, "kit": 251}
# Width of each text encoder's output; the denoiser's `embed_text` maps it to latent_dim.
TEXT_ENCODER_DIMS = {"clip": 512, "minilm": 384}
_ACTIVATIONS = ("gelu", "relu")


@dataclass
class MDMConfig:
    """Hyper-parameters of the MDM denoiser (arch trans_enc, text condition, emb_policy add)."""

    latent_dim: int = 512
    ff_size: int = 1024
    num_layers: int = 8
    num_heads: int = 4
    dropout: float = 0.1
    activation: str = "gelu"
    njoints: int = FEATURE_DIM  # MDM's name for the feature width
    nfeats: int = 1
    text_dim: int = 512
    cond_mask_prob: float = 0.1
    diffusion_steps: int = 1000
    noise_schedule: str = "cosine"
    pos_embed_max_len: int = 5000
    max_frames: int = 196
    text_encoder: str = "clip"
    mask_frames: bool = False
    # A guidance-distilled student takes the classifier-free guidance scale as an input (Meng et al.): one
    # conditioned call per step instead of the guided pair. Adds `output_guidance` (not in official files).
    guidance_input: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "MDMConfig") -> None:
        """Raise DataError naming the first inconsistent field."""
        def bad(field_name: str, message: str, expected: str) -> DataError:
            return DataError(message, path=source, field=field_name, expected=expected)

        for name in ("latent_dim", "ff_size", "num_layers", "num_heads", "njoints", "nfeats", "text_dim",
                     "diffusion_steps", "pos_embed_max_len", "max_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise bad(name, f"got {value!r}", "a positive integer")
        if self.latent_dim % 2:
            raise bad("latent_dim", f"got {self.latent_dim}", "an even number (sin/cos pairs of the positional table)")
        if self.latent_dim % self.num_heads:
            raise bad("latent_dim", f"{self.latent_dim} is not divisible by num_heads={self.num_heads}",
                      "latent_dim divisible by num_heads")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise bad("dropout", f"got {self.dropout!r}", "0 <= dropout < 1")
        if not 0.0 <= float(self.cond_mask_prob) <= 1.0:
            raise bad("cond_mask_prob", f"got {self.cond_mask_prob!r}", "a probability in [0, 1]")
        if self.activation not in _ACTIVATIONS:
            raise bad("activation", f"got {self.activation!r}", f"one of {_ACTIVATIONS}")
        # The diffusion step is a row index into the positional table, and so is every frame + 1.
        if self.diffusion_steps > self.pos_embed_max_len:
            raise bad("diffusion_steps", f"{self.diffusion_steps} steps exceed pos_embed_max_len="
                      f"{self.pos_embed_max_len}", "diffusion_steps <= pos_embed_max_len")
        if self.max_frames + 1 > self.pos_embed_max_len:
            raise bad("max_frames", f"{self.max_frames} frames + the condition token exceed pos_embed_max_len="
                      f"{self.pos_embed_max_len}", "max_frames < pos_embed_max_len")
        if not isinstance(self.guidance_input, bool):
            raise bad("guidance_input", f"got {self.guidance_input!r}", "true or false")
        if not isinstance(self.text_encoder, str) or not self.text_encoder:
            raise bad("text_encoder", f"got {self.text_encoder!r}", "a text encoder name such as 'clip'")

    @property
    def input_feats(self) -> int:
        """Features per frame seen by the input projection (njoints * nfeats)."""
        return self.njoints * self.nfeats

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "MDMConfig") -> "MDMConfig":
        """Build from `to_dict` output; unknown keys raise DataError (catches typos and foreign files)."""
        if not isinstance(data, dict):
            raise DataError(f"got {type(data).__name__}", path=source, expected="a JSON object of MDMConfig fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"unknown MDMConfig fields {unknown}", path=source, expected=f"only {sorted(known)}")
        cfg = cls.__new__(cls)
        defaults = cls()
        for f in fields(cls):
            setattr(cfg, f.name, copy.deepcopy(data.get(f.name, getattr(defaults, f.name))))
        cfg.validate(source)
        return cfg

    @classmethod
    def from_mdm_args(cls, args: dict[str, Any], source: str = "args.json") -> "MDMConfig":
        """Config of an official MDM run from its args.json, with the parser defaults for missing options.

        Also accepts the reference MDM constructor arguments (num_layers, num_heads, njoints, clip_dim).

        The 2022 release (`humanml_trans_enc_512`) predates most options; like the official
        `load_args_from_model`, every missing option takes its parser default. ff_size, heads, dropout
        and activation are hard-coded in the official `get_model_args` (1024, 4, 0.1, gelu).
        Options that change the architecture away from what this class implements raise DataError.
        """
        if not isinstance(args, dict):
            raise DataError(f"got {type(args).__name__}", path=source, expected="a JSON object (MDM args.json)")

        def unsupported(field_name: str, value: Any, expected: str) -> DataError:
            return DataError(f"unsupported value {value!r}; this MDM implementation covers arch trans_enc with a "
                             "text condition only", path=source, field=field_name, expected=expected)

        arch = args.get("arch", "trans_enc")
        if arch != "trans_enc":
            raise unsupported("arch", arch, "'trans_enc'")
        dataset = args.get("dataset", "humanml")
        if dataset not in _DATASET_NJOINTS:
            raise unsupported("dataset", dataset, f"one of {sorted(_DATASET_NJOINTS)}")
        if args.get("unconstrained", False) or args.get("cond_mode", "text") not in ("text",):
            raise unsupported("unconstrained/cond_mode", args.get("cond_mode", "no_cond"), "a text-conditioned run")
        text_encoder = args.get("text_encoder_type", "clip")
        if text_encoder != "clip":
            raise unsupported("text_encoder_type", text_encoder, "'clip' (bert needs arch trans_dec)")
        if args.get("emb_policy", "add") != "add":
            raise unsupported("emb_policy", args.get("emb_policy"), "'add'")
        if int(args.get("context_len", 0) or 0) > 0 or int(args.get("pred_len", 0) or 0) > 0:
            raise unsupported("context_len/pred_len", (args.get("context_len"), args.get("pred_len")),
                              "0 (no prefix completion)")
        if args.get("multi_target_cond", False):
            raise unsupported("multi_target_cond", True, "false")

        values = dict(
            latent_dim=int(args.get("latent_dim", 512)),
            ff_size=int(args.get("ff_size", 1024)),
            num_layers=int(args.get("layers", args.get("num_layers", 8))),
            num_heads=int(args.get("heads", args.get("num_heads", 4))),
            dropout=float(args.get("dropout", 0.1)),
            activation=str(args.get("activation", "gelu")),
            njoints=int(args.get("njoints", _DATASET_NJOINTS[dataset])),
            nfeats=int(args.get("nfeats", 1)),
            text_dim=int(args.get("clip_dim", TEXT_ENCODER_DIMS["clip"])),
            cond_mask_prob=float(args.get("cond_mask_prob", 0.1)),
            diffusion_steps=int(args.get("diffusion_steps", 1000)),
            noise_schedule=str(args.get("noise_schedule", "cosine")),
            pos_embed_max_len=int(args.get("pos_embed_max_len", 5000)),
            max_frames=196,  # HumanML3D and KIT-ML both cap motions at 196 frames
            text_encoder="clip",
            mask_frames=bool(args.get("mask_frames", False)),
        )
        return cls.from_dict(values, source=source)


# Presets. humanml_trans_enc_512 is the released paper model (model000475000.pt) and
# humanml_enc_512_50steps the released 50-step model (trained with --mask_frames --use_ema).
# "small" and "tiny" are our CPU-friendly sizes for fine-tuning and the offline demo: they use the
# bundled MiniLM encoder (384-d, no download) and fewer diffusion steps, and they mask padded frames
# (the corrected behaviour) because they are trained from scratch on clips of different lengths.
PRESETS: dict[str, MDMConfig] = {
    "humanml_trans_enc_512": MDMConfig(),
    "humanml_enc_512_50steps": MDMConfig(diffusion_steps=50, mask_frames=True),
    "small": MDMConfig(latent_dim=256, ff_size=512, num_layers=4, num_heads=4, text_encoder="minilm",
                       text_dim=TEXT_ENCODER_DIMS["minilm"], diffusion_steps=100, mask_frames=True),
    "tiny": MDMConfig(latent_dim=64, ff_size=128, num_layers=2, num_heads=2, text_encoder="minilm",
                      text_dim=TEXT_ENCODER_DIMS["minilm"], diffusion_steps=50, mask_frames=True),
}


def get_preset(name: str, **overrides: Any) -> MDMConfig:
    """A fresh copy of a named preset, with field overrides applied and validated."""
    if name not in PRESETS:
        raise DataError(f"unknown preset {name!r}", field="preset", expected=f"one of {sorted(PRESETS)}")
    data = PRESETS[name].to_dict()
    data.update(overrides)
    return MDMConfig.from_dict(data, source=f"preset {name!r}")
