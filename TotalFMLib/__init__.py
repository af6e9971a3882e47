"""TotalFMLib: organ-separated CT vision-language model (TotalFM) without Slicer."""
__version__ = "0.1.0"
