"""The module's parameter node: what the GUI shows and the scene saves."""
from typing import Annotated, Union

from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper

from .workflow import MODEL_CHOICES


@parameterNodeWrapper
class TotalFMSlicerParameterNode:
    """inputVolume: CT; inputSegmentation: TotalSegmentator segmentation or label map (None: run
    TotalSegmentator); resultSegmentation and scoresTable: what the last run showed."""

    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]
    fastSegmentation: bool = True
    forceCpu: bool = False
    modelSource: Annotated[str, Choice(MODEL_CHOICES)] = "demo"
    checkpointPath: str = ""  # bound by hand: Slicer's path box connector takes only Path, whose default shows "."
    resultSegmentation: vtkMRMLSegmentationNode
    scoresTable: vtkMRMLTableNode
