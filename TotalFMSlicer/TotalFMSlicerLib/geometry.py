"""Geometry between TotalFMLib ``Volume``s (arrays (Z, Y, X), LPS origin and direction, as
SimpleITK reports them) and MRML volume nodes (RAS). The IJK index order is the same (I = x
fastest), so only the first two axes of origin and direction change sign."""
from __future__ import annotations

import numpy as np
import vtk
from vtk.util import numpy_support

from TotalFMLib.crops.ct_windows import window
from TotalFMLib.errors import InputError
from TotalFMLib.inputs.volume import Volume

_FLIP = np.diag([-1.0, -1.0, 1.0])  # LPS <-> RAS


def _to_vtk_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    out = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


def _from_vtk_matrix(m: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras(vol: Volume) -> np.ndarray:
    """4x4 IJK -> RAS matrix of a ``Volume`` (LPS geometry)."""
    m = np.eye(4)
    direction = np.asarray(vol.direction, dtype=float).reshape(3, 3)
    m[:3, :3] = _FLIP @ direction @ np.diag(np.asarray(vol.spacing, dtype=float))
    m[:3, 3] = _FLIP @ np.asarray(vol.origin, dtype=float)
    return m


def _geometry_from_ijk_to_ras(m: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """(spacing, LPS origin, LPS direction) from a 4x4 IJK -> RAS matrix."""
    columns = m[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    direction = _FLIP @ (columns / spacing)
    origin = _FLIP @ m[:3, 3]
    return (tuple(float(s) for s in spacing), tuple(float(o) for o in origin),
            tuple(float(d) for d in direction.ravel()))


def image_data(array: np.ndarray, image=None):
    array = np.asarray(array)
    if array.ndim != 3:
        raise InputError(None, f"expected a 3D array (Z, Y, X), got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    array = np.ascontiguousarray(array)
    image = image if image is not None else vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True))
    return image


def _array_from_image(image, where: str) -> np.ndarray:
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(where, "the node holds no image data")
    scalars = image.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(where, f"expected a single-component image, got {scalars.GetNumberOfComponents()} components")
    nx, ny, nz = image.GetDimensions()
    return numpy_support.vtk_to_numpy(scalars).reshape(nz, ny, nx).copy()


def check_untransformed(node) -> None:
    if node.GetParentTransformNode() is not None:
        raise InputError(node.GetName(), "the node is under a transform; harden the transform first "
                                         "(Data module, right-click, Harden transform)")


def volume_node_from_volume(scene, vol: Volume, name: str = "CT", node_class: str = "vtkMRMLScalarVolumeNode"):
    """Add a volume node holding ``vol``'s voxels and geometry; CTs get a soft-tissue window."""
    node = scene.AddNewNodeByClass(node_class, name)
    node.SetAndObserveImageData(image_data(vol.array))
    node.SetIJKToRASMatrix(_to_vtk_matrix(ijk_to_ras(vol)))
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if node_class == "vtkMRMLScalarVolumeNode" and display is not None:
        display.AutoWindowLevelOff()
        level, width = window("soft_tissue")
        display.SetWindowLevel(float(width), float(level))
    return node


def volume_from_volume_node(node) -> Volume:
    """The voxels (Z, Y, X) and LPS geometry of a scalar volume node."""
    if node is None:
        raise InputError(None, "no volume node given")
    check_untransformed(node)
    array = _array_from_image(node.GetImageData(), node.GetName())
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    spacing, origin, direction = _geometry_from_ijk_to_ras(_from_vtk_matrix(m))
    return Volume(array=array, spacing=spacing, origin=origin, direction=direction,
                  source=node.GetName(), meta={"mrml_id": node.GetID()})
