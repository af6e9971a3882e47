"""Training library: data preparation, VideoMAE pre-training, contrastive training, evaluation.

Import the submodules you need (``TotalFMLib.training.contrastive`` etc.); this package
file imports nothing heavy.
"""
