"""The model to export: any of our weight files (`kpop_helpers.model.load_model_file`, its one home)."""

from kpop_helpers.model.files import load_model_file as load_model_for_export

__all__ = ["load_model_for_export"]
