"""The Slicer side's library: the MRML layer of TotalFM, one concern per file.

Every function takes the scene or the nodes it works on as arguments; nothing here touches
``slicer.app``, ``slicer.mrmlScene``, ``slicer.modules``, Qt or CTK, so the same code runs
inside Slicer and in plain Python with the ``slicer-core`` wheel (Testing/test_slicer_scene.py).

- ``geometry``: TotalFMLib Volumes <-> MRML volume nodes (LPS <-> RAS);
- ``segments``: organ segments, label maps <-> segmentation nodes, terminology;
- ``score_store``: the one place scores are stored in the scene (segment tags);
- ``colouring``: organs coloured by scores or a search, and the original colours restored;
- ``scores_table``: the scores table, review marks and the CSV export.
"""
