"""The README overlay picture renders offscreen (VTK, EGL/OSMesa) from real MRML nodes.

The renderer runs as its own process (`Testing/render_overlay.py`, as users run it): VTK's
OpenGL stack and torch's triton/LLVM loaded into one process can crash it.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("slicer", reason="slicer-core wheel not installed")
vtk = pytest.importorskip("vtk")

from pathlib import Path  # noqa: E402

from test_slicer_scene import DEFAULT_PRESENT, make_rows, present_organs  # noqa: E402

from TotalFMSlicerLib import colouring  # noqa: E402
from TotalFMLib.outputs.export import write_csv  # noqa: E402

SCRIPT = Path(__file__).parent / "render_overlay.py"

PROBE = """
import vtk
w = vtk.vtkRenderWindow(); w.SetOffScreenRendering(1); w.SetSize(8, 8)
w.AddRenderer(vtk.vtkRenderer()); w.Render()
"""


@pytest.fixture(scope="module")
def offscreen():
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, timeout=120)
    if probe.returncode != 0:
        last = (probe.stderr.decode(errors="replace").strip().splitlines() or ["no error output"])[-1]
        pytest.skip(f"VTK cannot render offscreen here (needs EGL or OSMesa): {last}")


def read_png(path) -> np.ndarray:
    from vtk.util import numpy_support

    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    w, h, _ = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)[::-1, :, :3]


def near(pixels: np.ndarray, color, tol: float = 0.1) -> int:
    return int((np.abs(pixels / 255.0 - np.asarray(color)).max(axis=-1) < tol).sum())


def render_overlay(ct_path, seg_path, rows, path, size, slice_organ=None):
    scores = write_csv(rows, path.with_suffix(".csv"))
    cmd = [sys.executable, str(SCRIPT), "--ct", str(ct_path), "--seg", str(seg_path), "--scores", str(scores),
           "--out", str(path), "--size", "x".join(map(str, size))]
    if slice_organ:
        cmd += ["--slice-organ", slice_organ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return path


def test_overlay_png_shows_the_scores(offscreen, case, tmp_path, example_ct_path, example_seg_path):
    ct, seg = case
    rows = make_rows([o for o in DEFAULT_PRESENT if o in present_organs(seg)])
    path = render_overlay(example_ct_path, example_seg_path, rows, tmp_path / "overlay.png", size=(800, 420))
    assert path.stat().st_size < 500_000
    pixels = read_png(path)
    assert pixels.shape == (420, 800, 3)
    liver_color = colouring.score_color(0.83)
    hot = near(pixels, liver_color)
    assert hot > 2000, hot  # the flagged liver, in 3D and in the slice
    # the same case with a low liver score: the liver's bright colour disappears
    cooled = [dataclasses.replace(r, score=0.1, flagged=False) if r.organ == "liver" else r for r in rows]
    path2 = render_overlay(example_ct_path, example_seg_path, cooled, tmp_path / "cooled.png", size=(800, 420),
                           slice_organ="liver")
    cold = near(read_png(path2), liver_color)
    assert cold < hot / 10, (hot, cold)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
