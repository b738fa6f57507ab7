"""kpop_helpers: fine-tune, compress, export and benchmark an MDM text-to-motion choreographer."""

__version__ = "0.1.0"
