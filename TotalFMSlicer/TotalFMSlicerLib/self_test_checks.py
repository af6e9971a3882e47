"""What the module's self-test (``TotalFMSlicerTest`` in the module file) checks on the whole path,
written as a function of the running TestCase so the module file stays small."""
import os
import tempfile

from .logic import ANY_LESION


def checkWholePath(test, logic, ctNode, labelNode) -> None:
    """Scores on every organ with matching colours and opacities, search highlighting and
    ordering the table, a review mark, centring, the CSV export and restored colours."""
    import numpy as np

    import slicer

    from TotalFMLib.vocabulary import catalogue
    from . import colouring, score_store

    test.delayDisplay("Scoring with the demo model")
    segmentationNode, tableNode, legend = logic.process(ctNode, labelNode, "demo", cpu=True)

    rows = score_store.scored_rows(segmentationNode)
    organs = {r.organ for r in rows}
    test.assertGreater(len(organs), 5)
    test.assertEqual(tableNode.GetNumberOfRows(), len(organs))
    test.assertEqual(set(logic.tableOrgans(tableNode)), organs)
    segmentation = segmentationNode.GetSegmentation()
    display = segmentationNode.GetDisplayNode()
    for row in rows:
        if row.finding != ANY_LESION:
            continue
        segment = segmentation.GetSegment(row.organ)
        test.assertTrue(np.allclose(segment.GetColor(), legend.color(row.score), atol=1e-6))
        expected = 1.0 if row.flagged else colouring.DIM_OPACITY
        test.assertAlmostEqual(display.GetSegmentOpacity3D(row.organ), expected)

    test.delayDisplay("Finding search")
    hits = logic.search(segmentationNode, "kidney stone", tableNode, topK=3, threshold=float("-inf"))
    matched = [h.organ for h in sorted(hits, key=lambda h: h.rank) if h.matched]
    test.assertEqual(len(matched), 3)
    test.assertEqual(logic.tableOrgans(tableNode)[: len(matched)], matched)
    test.assertTrue(np.allclose(segmentation.GetSegment(matched[0]).GetColor(), colouring.HIGHLIGHT_COLOR))

    test.delayDisplay("Review and export")
    logic.setReview(tableNode, matched[0], "agree")
    centre = logic.centerViewsOnOrgan(segmentationNode, matched[0])
    for sliceNode in slicer.util.getNodesByClass("vtkMRMLSliceNode"):  # each slice view centred on the organ
        sliceToRas = sliceNode.GetSliceToRAS()
        test.assertTrue(np.allclose([sliceToRas.GetElement(i, 3) for i in range(3)], centre, atol=1e-3))
    path = os.path.join(tempfile.mkdtemp(), "scores.csv")
    logic.exportCsv(segmentationNode, tableNode, path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    test.assertEqual(len(lines), len(rows) + 1)
    test.assertTrue(lines[0].endswith(",review"))

    logic.restoreColors(segmentationNode)
    liver = segmentation.GetSegment("liver")
    test.assertTrue(np.allclose(liver.GetColor(), np.array(catalogue.organ("liver").color) / 255.0))


def checkCancelLeavesScene(test, logic, ctNode, labelNode) -> None:
    """A run cancelled at once shows nothing and leaves the scene's nodes as they were."""
    import slicer

    before = slicer.mrmlScene.GetNumberOfNodes()
    run = logic.startAnalysis(ctNode, labelNode, "demo", cpu=True)
    run.job.cancel()
    run.job.wait()
    test.assertIsNone(logic.finishAnalysis(run))
    test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
