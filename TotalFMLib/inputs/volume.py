"""The one image type that flows through the library: a numpy array plus its geometry.

Arrays are in SimpleITK order (Z, Y, X); ``spacing`` and ``origin`` are in (x, y, z)
order and millimetres, ``direction`` is the row-major 3x3 direction cosine matrix, all
exactly as SimpleITK reports them. A segmentation is a ``Volume`` whose array holds
TotalSegmentator v2 ``total`` label ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class Volume:
    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    source: str | None = None  # file or folder it came from, for messages
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # (Z, Y, X)

    def with_array(self, array: np.ndarray) -> "Volume":
        return replace(self, array=array, meta=dict(self.meta))

    def grid_differences(self, other: "Volume", tol: float = 1e-3) -> list[str]:
        """Which of "shape", "spacing", "origin" (1e-2 mm at least), "direction" differ."""
        checks = {
            "shape": self.shape == other.shape,
            "spacing": np.allclose(self.spacing, other.spacing, atol=tol, rtol=tol),
            "origin": np.allclose(self.origin, other.origin, atol=max(tol, 1e-2)),
            "direction": np.allclose(self.direction, other.direction, atol=tol),
        }
        return [name for name, same in checks.items() if not same]

    def same_grid(self, other: "Volume", tol: float = 1e-3) -> bool:
        """True when both volumes sample the same voxels in patient space."""
        return not self.grid_differences(other, tol)

    def to_sitk(self):
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(tuple(float(s) for s in self.spacing))
        image.SetOrigin(tuple(float(o) for o in self.origin))
        image.SetDirection(tuple(float(d) for d in self.direction))
        return image

    @classmethod
    def from_sitk(cls, image, source: str | None = None) -> "Volume":
        import SimpleITK as sitk

        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=tuple(image.GetSpacing()),
            origin=tuple(image.GetOrigin()),
            direction=tuple(image.GetDirection()),
            source=source,
        )
