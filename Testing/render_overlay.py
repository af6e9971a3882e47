"""Render the Slicer overlay offscreen with VTK: organ surfaces and an axial CT slice, each organ
coloured by its TotalFM score exactly as the Slicer module colours it (``colouring.apply_scores``
on real MRML nodes), with a colour bar. Used for the README picture:

    python Testing/render_overlay.py --out Screenshots/overlay.png            # demo model scores
    python Testing/render_overlay.py --scores scores.csv --out overlay.png    # scores from `totalfm analyze`

Needs the slicer-core wheel and VTK with offscreen OpenGL (EGL or OSMesa); no display.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

BACKGROUND = (0.08, 0.10, 0.16)


def _scene_with_scores(ct, seg, rows, finding: str):
    import slicer

    from TotalFMSlicerLib import colouring, geometry, segments

    scene = slicer.vtkMRMLScene()
    ct_node = geometry.volume_node_from_volume(scene, ct, "CT")
    seg_node = segments.segmentation_from_labelmap(scene, seg, ct_node, "organs")
    legend = colouring.apply_scores(seg_node, rows, finding)
    if not segments.ensure_closed_surfaces(seg_node):
        raise RuntimeError("closed surfaces could not be made from the segmentation")
    return scene, seg_node, legend  # the caller keeps the scene alive while it renders


def _segment_looks(seg_node) -> dict[str, tuple[tuple[float, float, float], float]]:
    """{segment ID: (colour, 3D opacity)} as the segmentation node shows them."""
    segmentation = seg_node.GetSegmentation()
    display = seg_node.GetDisplayNode()
    looks = {}
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        looks[sid] = (tuple(segmentation.GetSegment(sid).GetColor()), display.GetSegmentOpacity3D(sid))
    return looks


def _surface_renderer(seg_node, looks, viewport):
    import vtk

    renderer = vtk.vtkRenderer()
    renderer.SetViewport(*viewport)
    renderer.SetBackground(*BACKGROUND)
    renderer.SetUseDepthPeeling(True)
    for sid, (color, opacity) in looks.items():
        polydata = seg_node.GetClosedSurfaceInternalRepresentation(sid)
        if polydata is None or polydata.GetNumberOfPoints() == 0:
            continue
        mapper = vtk.vtkPolyDataMapper()
        mapper.SetInputData(polydata)
        mapper.ScalarVisibilityOff()
        actor = vtk.vtkActor()
        actor.SetMapper(mapper)
        prop = actor.GetProperty()
        prop.SetColor(*color)
        prop.SetOpacity(opacity)
        prop.SetAmbient(0.25)
        prop.SetDiffuse(0.75)
        prop.SetSpecular(0.1)
        renderer.AddActor(actor)
    # anterior view, superior up: the patient's right on the viewer's left (as Slicer's "A" view)
    renderer.ResetCamera()
    camera = renderer.GetActiveCamera()
    focal = np.array(camera.GetFocalPoint())
    distance = camera.GetDistance()
    camera.SetPosition(*(focal + np.array([0.0, distance, 0.0])))
    camera.SetViewUp(0.0, 0.0, 1.0)
    renderer.ResetCamera()
    camera.Zoom(1.25)
    return renderer


def _slice_rgb(ct, seg, looks, organ_for_slice: str) -> np.ndarray:
    """An axial slice (radiological: patient right on the left, anterior up) through the organ,
    soft-tissue window, organs filled with their colours at half their opacity (Slicer's 2D fill)."""
    from TotalFMLib.vocabulary import catalogue
    from TotalFMLib.crops.ct_windows import window_range
    from TotalFMLib.outputs.overlay import lps_array

    ct_lps, spacing = lps_array(ct)
    labels, _ = lps_array(seg)
    organ_id = catalogue.organ(organ_for_slice).label_id
    zs = np.flatnonzero((labels == organ_id).reshape(labels.shape[0], -1).any(axis=1))
    z = int(zs[len(zs) // 2]) if zs.size else labels.shape[0] // 2
    lo, hi = window_range("soft_tissue")
    grey = np.clip((ct_lps[z].astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for sid, (color, opacity) in looks.items():
        mask = labels[z] == catalogue.organ(sid).label_id
        alpha = 0.5 * opacity
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(color)
    return rgb, spacing[:2]


def _image_renderer(rgb: np.ndarray, spacing, viewport):
    import vtk
    from vtk.util import numpy_support

    height, width = rgb.shape[:2]
    pixels = np.ascontiguousarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)[::-1])  # VTK rows go up
    image = vtk.vtkImageData()
    image.SetDimensions(width, height, 1)
    image.SetSpacing(float(spacing[0]), float(spacing[1]), 1.0)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(pixels.reshape(-1, 3), deep=True))
    actor = vtk.vtkImageActor()
    actor.GetMapper().SetInputData(image)
    renderer = vtk.vtkRenderer()
    renderer.SetViewport(*viewport)
    renderer.SetBackground(*BACKGROUND)
    renderer.AddActor(actor)
    renderer.ResetCamera()
    renderer.GetActiveCamera().ParallelProjectionOn()
    renderer.ResetCamera()
    renderer.GetActiveCamera().Zoom(1.35)
    for text, x in (("R", 0.03), ("L", 0.95)):
        label = vtk.vtkTextActor()
        label.SetInput(text)
        label.GetTextProperty().SetFontSize(18)
        label.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        label.GetPositionCoordinate().SetValue(x, 0.5)
        renderer.AddViewProp(label)
    return renderer


def _legend_actors(legend, subtitle: str):
    import vtk

    table = vtk.vtkLookupTable()
    table.SetNumberOfTableValues(256)
    table.SetRange(legend.vmin, legend.vmax)
    for i in range(256):
        table.SetTableValue(i, *legend.color(legend.vmin + (legend.vmax - legend.vmin) * i / 255), 1.0)
    table.Build()
    bar = vtk.vtkScalarBarActor()
    bar.SetLookupTable(table)
    bar.SetOrientationToHorizontal()
    bar.SetNumberOfLabels(3)
    bar.SetLabelFormat("%.1f")
    bar.SetTitle("")
    labels = bar.GetLabelTextProperty()
    labels.SetItalic(False)
    labels.SetBold(False)
    labels.SetShadow(False)
    bar.SetUnconstrainedFontSize(True)
    labels.SetFontSize(14)
    bar.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
    bar.GetPositionCoordinate().SetValue(0.30, 0.01)
    bar.SetWidth(0.40)
    bar.SetHeight(0.09)
    title = vtk.vtkTextActor()
    title.SetInput(f"{legend.title}   (faint: below threshold or not scored)\n{subtitle}")
    title.GetTextProperty().SetFontSize(16)
    title.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
    title.GetPositionCoordinate().SetValue(0.02, 0.91)
    return bar, title


def render_overlay(ct, seg, rows, path, finding: str | None = None, size=(1000, 520), slice_organ: str | None = None):
    """Write the picture (PNG, atomically) and return its path. ``ct``/``seg``: TotalFMLib Volumes
    (CT in HU, TotalSegmentator label map on its grid); ``rows``: ScoreRows of the case."""
    import vtk

    from TotalFMLib.atomic import atomic_path
    from TotalFMLib.results import ANY_LESION

    finding = finding or ANY_LESION
    scene, seg_node, legend = _scene_with_scores(ct, seg, rows, finding)
    looks = _segment_looks(seg_node)
    shown = [r for r in rows if r.finding == finding and r.organ in looks]
    if slice_organ is None:
        slice_organ = max(shown, key=lambda r: r.score).organ if shown else next(iter(looks))

    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    window.SetAlphaBitPlanes(0)
    window.SetMultiSamples(0)
    bottom = 0.12
    window.AddRenderer(_surface_renderer(seg_node, looks, (0.0, bottom, 0.5, 0.9)))
    rgb, spacing = _slice_rgb(ct, seg, looks, slice_organ)
    window.AddRenderer(_image_renderer(rgb, spacing, (0.5, bottom, 1.0, 0.9)))
    frame = vtk.vtkRenderer()  # title and colour bar over the whole window
    frame.SetViewport(0.0, 0.0, 1.0, 1.0)
    frame.SetBackground(*BACKGROUND)
    frame.SetLayer(0)
    models = sorted({r.model_id for r in rows})
    subtitle = f"model: {', '.join(models)}   case: {rows[0].case_id if rows else ''}   slice through: {slice_organ}"
    for actor in _legend_actors(legend, subtitle):
        frame.AddViewProp(actor)
    window.SetNumberOfLayers(2)
    for renderer in window.GetRenderers():
        if renderer is not frame:
            renderer.SetLayer(1)
    window.AddRenderer(frame)
    window.Render()

    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.Update()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(tmp))
        writer.SetInputData(grab.GetOutput())
        writer.SetCompressionLevel(9)
        writer.Write()
        if writer.GetErrorCode():
            raise OSError(f"{path}: the PNG could not be written")
    window.Finalize()
    del scene
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="Screenshots/overlay.png")
    parser.add_argument("--ct", help="CT file (default: the example CT from the test data)")
    parser.add_argument("--seg", help="TotalSegmentator label map (default: the example's)")
    parser.add_argument("--scores", help="score CSV from `totalfm analyze` (default: run the model)")
    parser.add_argument("--model", default="demo", help="demo, official or a checkpoint (when no --scores)")
    parser.add_argument("--finding", default=None)
    parser.add_argument("--size", default="1000x520", help="width x height in pixels")
    parser.add_argument("--slice-organ", help="organ the axial slice passes through (default: top score)")
    args = parser.parse_args(argv)

    from TotalFMLib.inputs.case import load_case
    from TotalFMLib.inputs.sample_data import fetch

    ct, seg = load_case(args.ct or fetch("example_ct"), args.seg or fetch("example_seg"))
    if args.scores:
        from TotalFMLib.outputs.export import read_csv

        rows = read_csv(args.scores)
    else:
        from TotalFMLib.totalfm import TotalFM

        model = TotalFM.load(args.model)
        rows = model.score(model.encode_image(ct, seg), case_id="example_ct")
    size = tuple(int(v) for v in args.size.lower().split("x"))
    out = render_overlay(ct, seg, rows, args.out, args.finding, size=size, slice_organ=args.slice_organ)
    print(f"wrote {out} ({os.path.getsize(out) // 1024} KB)")
    return 0


if __name__ == "__main__":
    ROOT = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(ROOT), str(ROOT / "TotalFMSlicer")]  # TotalFMLib, and the module's TotalFMSlicerLib
    sys.exit(main())
