"""CLIP ViT-B/32 text tower as MDM uses it (512-d), run through transformers.

MDM (`clip_encode_text`) tokenises a prompt to at most 20 BPE tokens between the start and end tokens
(context 22; a longer prompt is cut and its 22nd token replaced by the end token), zero-pads to 77,
and returns the un-normalised `encode_text` features: the end token's final-LayerNorm state times
`text_projection`. Weights come from the hub ("openai/clip-vit-base-patch32") or from the
`clip_model.*` keys an official MDM checkpoint carries (openai names, mapped here). Always float32:
the fp16 weights of MDM's frozen CLIP are up-cast (fp16 matmuls on CPU are slow or unsupported,
MDM issue #50).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from kpop_helpers.errors import DataError
from kpop_helpers.text.base import TextEncoder, TextEncoderUnavailable, register_text_encoder

CLIP_HUB_ID = "openai/clip-vit-base-patch32"
CLIP_CONTEXT_LENGTH = 77
MDM_MAX_TEXT_TOKENS = 20  # humanml/kit: context 22 = start + 20 + end
_LAYER_RE = re.compile(r"^transformer\.resblocks\.(\d+)\.")

# openai name (after "transformer.resblocks.N.") -> transformers name (after "text_model.encoder.layers.N.")
_LAYER_NAMES = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
}
_TOP_NAMES = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
}


def mdm_clip_token_ids(tokenizer: Any, texts: Sequence[str], max_text_tokens: int = MDM_MAX_TEXT_TOKENS,
                       context_length: int = CLIP_CONTEXT_LENGTH) -> tuple[Tensor, Tensor]:
    """(token ids [B, 77] long, end-token position [B]) exactly as MDM's clip.tokenize + zero padding."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    window = max_text_tokens + 2
    ids = torch.zeros(len(texts), context_length, dtype=torch.long)
    eot_pos = torch.zeros(len(texts), dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = [bos] + list(tokenizer.encode(text, add_special_tokens=False)) + [eos]
        if len(tokens) > window:
            tokens = tokens[:window]
            tokens[-1] = eos
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        eot_pos[row] = len(tokens) - 1
    return ids, eot_pos


def _text_config_from_openai(sd: Mapping[str, Tensor], num_heads: int | None, bos_token_id: int,
                             eos_token_id: int) -> Any:
    from transformers import CLIPTextConfig

    vocab, width = sd["token_embedding.weight"].shape
    layers = {int(m.group(1)) for k in sd if (m := _LAYER_RE.match(k))}
    heads = num_heads if num_heads is not None else max(1, width // 64)  # openai: heads = width // 64
    return CLIPTextConfig(
        vocab_size=int(vocab), hidden_size=int(width), num_hidden_layers=len(layers), num_attention_heads=int(heads),
        intermediate_size=int(sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
        max_position_embeddings=int(sd["positional_embedding"].shape[0]),
        projection_dim=int(sd["text_projection"].shape[1]), hidden_act="quick_gelu", layer_norm_eps=1e-5,
        bos_token_id=int(bos_token_id), eos_token_id=int(eos_token_id), pad_token_id=1,
    )


def openai_to_transformers_text_state(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename an openai/CLIP text-tower state_dict (no `clip_model.` prefix) to CLIPTextModelWithProjection's."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        value = value.to(torch.float32)
        if key in _TOP_NAMES:
            out[_TOP_NAMES[key]] = value
        elif key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()  # openai: x @ P; Linear: x @ W.T
        elif m := _LAYER_RE.match(key):
            rest, prefix = key[m.end():], f"text_model.encoder.layers.{m.group(1)}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = "weight" if rest.endswith("weight") else "bias"
                for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{name}.{kind}"] = part.contiguous()
            elif rest in _LAYER_NAMES:
                out[prefix + _LAYER_NAMES[rest]] = value
            else:
                raise DataError(f"unexpected CLIP text key {key!r}", field=key, expected="an openai/CLIP text-tower key")
        else:
            raise DataError(f"unexpected CLIP text key {key!r}", field=key, expected="an openai/CLIP text-tower key")
    return out


def transformers_to_openai_text_state(model: Any) -> dict[str, Tensor]:
    """The inverse mapping: a CLIPTextModelWithProjection's weights under openai/CLIP text-tower names."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {openai: sd[hf] for openai, hf in _TOP_NAMES.items()}
    out["text_projection"] = sd["text_projection.weight"].t().contiguous()
    for i in range(model.config.num_hidden_layers):
        hf, oa = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{oa}attn.in_proj_{kind}"] = torch.cat([sd[f"{hf}self_attn.{n}.{kind}"]
                                                         for n in ("q_proj", "k_proj", "v_proj")])
        for openai_name, hf_name in _LAYER_NAMES.items():
            out[oa + openai_name] = sd[hf + hf_name]
    return out


def load_clip_tokenizer(name_or_path: str | Path = CLIP_HUB_ID, *, local_files_only: bool = False,
                        cache_dir: str | Path | None = None) -> Any:
    """The CLIP BPE tokenizer (hub id or folder with vocab.json/merges.txt or tokenizer.json)."""
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(str(name_or_path), local_files_only=local_files_only,
                                             cache_dir=None if cache_dir is None else str(cache_dir))
    except (OSError, ValueError) as exc:
        raise TextEncoderUnavailable(_offline_message(name_or_path, "tokenizer", exc)) from exc


def _offline_message(name: str | Path, what: str, exc: BaseException) -> str:
    return (f"cannot load the CLIP {what} from {str(name)!r} ({str(exc).splitlines()[0][:160]}). It comes from the "
            f"Hugging Face hub ({CLIP_HUB_ID}, about 1 MB for the tokenizer, 600 MB for the weights): run once with "
            "internet (Colab has it) so it lands in the HF cache, or download the repo and pass its folder. An "
            "official MDM checkpoint's clip_model.* weights replace the weight download "
            "(get_text_encoder('clip', checkpoint=...)). Offline alternative: get_text_encoder('minilm').")


class ClipTextEncoder(TextEncoder):
    """CLIP text features as MDM computes them (512-d for ViT-B/32), float32."""

    name = "clip"

    def __init__(self, model: Any, tokenizer: Any, *, device: str | torch.device = "cpu",
                 max_text_tokens: int = MDM_MAX_TEXT_TOKENS, batch_size: int = 64, max_cache: int = 100_000):
        super().__init__(device=device, batch_size=batch_size, max_cache=max_cache)
        self.model = model.to(device=self.device, dtype=torch.float32).eval()
        self.tokenizer = tokenizer
        self.max_text_tokens = int(max_text_tokens)
        self.dim = int(model.config.projection_dim)
        if self.max_text_tokens + 2 > model.config.max_position_embeddings:
            raise DataError(f"max_text_tokens={max_text_tokens} does not fit the context of "
                            f"{model.config.max_position_embeddings}", field="max_text_tokens",
                            expected=f"<= {model.config.max_position_embeddings - 2}")

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = CLIP_HUB_ID, *, tokenizer: Any = None,
                        local_files_only: bool = False, cache_dir: str | Path | None = None,
                        **kwargs: Any) -> "ClipTextEncoder":
        """Text tower + tokenizer from the hub (cached by huggingface_hub) or a local folder."""
        from transformers import CLIPTextModelWithProjection

        tokenizer = tokenizer or load_clip_tokenizer(name_or_path, local_files_only=local_files_only,
                                                     cache_dir=cache_dir)
        try:
            model = CLIPTextModelWithProjection.from_pretrained(
                str(name_or_path), local_files_only=local_files_only, dtype=torch.float32,
                cache_dir=None if cache_dir is None else str(cache_dir))
        except (OSError, ValueError) as exc:
            raise TextEncoderUnavailable(_offline_message(name_or_path, "text model", exc)) from exc
        return cls(model, tokenizer, **kwargs)

    @classmethod
    def from_openai_state_dict(cls, state_dict: Mapping[str, Tensor], tokenizer: Any, *, num_heads: int | None = None,
                               **kwargs: Any) -> "ClipTextEncoder":
        """Build the text tower from openai/CLIP weights (e.g. an MDM checkpoint's clip_model.* keys)."""
        from transformers import CLIPTextModelWithProjection

        missing = [k for k in ("token_embedding.weight", "positional_embedding", "text_projection",
                               "transformer.resblocks.0.mlp.c_fc.weight") if k not in state_dict]
        if missing:
            raise DataError(f"CLIP text weights incomplete, missing {missing}", field="clip_model",
                            expected="the openai/CLIP text tower (token_embedding, transformer, ln_final, ...)")
        text_state = {k: v for k, v in state_dict.items() if not k.startswith(("visual.", "logit_scale"))}
        config = _text_config_from_openai(text_state, num_heads, tokenizer.bos_token_id, tokenizer.eos_token_id)
        model = CLIPTextModelWithProjection(config)
        result = model.load_state_dict(openai_to_transformers_text_state(text_state), strict=False)
        # position_ids is a non-persistent helper buffer in some transformers versions.
        missing_keys = [k for k in result.missing_keys if not k.endswith("position_ids")]
        if missing_keys or result.unexpected_keys:
            raise DataError(f"CLIP text weights do not fit: missing {missing_keys[:8]}, unexpected "
                            f"{result.unexpected_keys[:8]}", field="clip_model", expected="a complete text tower")
        return cls(model, tokenizer, **kwargs)

    @classmethod
    def from_mdm_checkpoint(cls, path: str | Path, *, tokenizer: Any = None,
                            tokenizer_name: str | Path = CLIP_HUB_ID, local_files_only: bool = False,
                            **kwargs: Any) -> "ClipTextEncoder":
        """Text tower from an official MDM checkpoint's clip_model.* weights (no second weight download)."""
        from kpop_helpers.model.load import load_clip_text_state

        state = load_clip_text_state(path)
        if not state:
            raise DataError("no clip_model.* weights in this checkpoint", path=path,
                            expected="an MDM checkpoint saved with its frozen CLIP (use from_pretrained instead)")
        tokenizer = tokenizer or load_clip_tokenizer(tokenizer_name, local_files_only=local_files_only)
        return cls.from_openai_state_dict(state, tokenizer, **kwargs)

    def token_ids(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """(ids [B, 77], end-token positions [B]) as MDM builds them."""
        return mdm_clip_token_ids(self.tokenizer, texts, self.max_text_tokens,
                                  self.model.config.max_position_embeddings)

    def _encode_batch(self, texts: list[str]) -> Tensor:
        ids, eot_pos = self.token_ids(texts)
        ids, eot_pos = ids.to(self.device), eot_pos.to(self.device)
        # No attention mask, like openai's encode_text: the causal mask alone keeps the padding out.
        hidden = self.model.text_model(input_ids=ids).last_hidden_state  # final LayerNorm applied
        pooled = hidden[torch.arange(hidden.shape[0], device=self.device), eot_pos]
        return self.model.text_projection(pooled)


def make_clip_encoder(*, checkpoint: str | Path | None = None, model_name: str | Path = CLIP_HUB_ID,
                      tokenizer: Any = None, local_files_only: bool = False, num_heads: int | None = None,
                      **kwargs: Any) -> ClipTextEncoder:
    """get_text_encoder("clip"): from an MDM checkpoint's CLIP weights when it has them, else from the hub."""
    if checkpoint is not None:
        from kpop_helpers.model.load import load_clip_text_state

        state = load_clip_text_state(checkpoint)
        if state:
            tokenizer = tokenizer or load_clip_tokenizer(model_name, local_files_only=local_files_only)
            return ClipTextEncoder.from_openai_state_dict(state, tokenizer, num_heads=num_heads, **kwargs)
    return ClipTextEncoder.from_pretrained(model_name, tokenizer=tokenizer, local_files_only=local_files_only, **kwargs)


register_text_encoder("clip", make_clip_encoder)
