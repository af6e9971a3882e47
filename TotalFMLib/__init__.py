"""TotalFMLib: the organ-separated CT vision-language model TotalFM, usable without Slicer.

The folders follow the data flow (docs/architecture.md):

    inputs/      CT + segmentation -> a checked Case (the door)
    crops/       Case -> organ crops (the published recipe)
    models/      crops and sentences -> embeddings (towers, checkpoints, precision)
    zeroshot/    embeddings -> scores and search hits
    outputs/     scores -> CSV, JSON, picture, DICOM SEG + SR
    pacs/        a study from a PACS through the pipeline, its SEG + SR back
    library/     many studies through the pipeline into a searchable case library
    pipeline.py  one function that runs a case through all of them; cli.py, training/ use it

``import TotalFMLib`` changes nothing in the process and loads no heavy package; entry points
call ``TotalFMLib.runtime.setup()`` once.
"""
__version__ = "0.1.0"

__all__ = ["TotalFM", "__version__"]


def __getattr__(name: str):
    if name == "TotalFM":
        from .totalfm import TotalFM

        return TotalFM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
