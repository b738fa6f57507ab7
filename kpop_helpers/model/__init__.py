"""The MDM denoiser (trans_enc, text condition): config and presets, the module, and checkpoint loading."""

from kpop_helpers.model.config import PRESETS, TEXT_ENCODER_DIMS, MDMConfig, get_preset
from kpop_helpers.model.load import (
    infer_config,
    load_clip_text_state,
    load_denoiser_weights,
    load_mdm,
    read_weights_file,
    save_mdm,
    select_state_dict,
    split_clip,
    strip_wrapper_prefixes,
)
from kpop_helpers.model.mdm import MDM, PE_KEYS, set_text_encoder, sinusoid_table
from kpop_helpers.model.files import load_model_file

__all__ = [
    "MDM",
    "MDMConfig",
    "PE_KEYS",
    "PRESETS",
    "TEXT_ENCODER_DIMS",
    "get_preset",
    "infer_config",
    "load_clip_text_state",
    "load_denoiser_weights",
    "load_mdm",
    "load_model_file",
    "read_weights_file",
    "save_mdm",
    "select_state_dict",
    "set_text_encoder",
    "sinusoid_table",
    "split_clip",
    "strip_wrapper_prefixes",
]
