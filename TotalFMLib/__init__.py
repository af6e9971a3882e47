"""TotalFMLib: the organ-separated CT vision-language model TotalFM, usable without Slicer.

``import TotalFMLib`` is light (no torch); heavy packages load when a model is used.
"""
__version__ = "0.1.0"

from .totalfm import TotalFM  # noqa: E402  (numpy only at import time)

__all__ = ["TotalFM", "__version__"]
