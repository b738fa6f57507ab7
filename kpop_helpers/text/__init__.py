"""Text encoders for the MDM condition: one interface, "minilm" (384-d, offline) and "clip" (512-d, as MDM)."""

from kpop_helpers.text.base import (
    TextEncoder,
    TextEncoderUnavailable,
    available_text_encoders,
    get_text_encoder,
    register_text_encoder,
)
from kpop_helpers.text.clip import (
    CLIP_HUB_ID,
    ClipTextEncoder,
    load_clip_tokenizer,
    mdm_clip_token_ids,
    openai_to_transformers_text_state,
    transformers_to_openai_text_state,
)
from kpop_helpers.text.minilm import MINILM_SAFETENSORS_SHA256, MiniLMEncoder, bundled_minilm_dir

__all__ = [
    "CLIP_HUB_ID",
    "ClipTextEncoder",
    "MINILM_SAFETENSORS_SHA256",
    "MiniLMEncoder",
    "TextEncoder",
    "TextEncoderUnavailable",
    "available_text_encoders",
    "bundled_minilm_dir",
    "get_text_encoder",
    "load_clip_tokenizer",
    "mdm_clip_token_ids",
    "openai_to_transformers_text_state",
    "register_text_encoder",
    "transformers_to_openai_text_state",
]
