"""The Slicer side's library: the module's Logic and its MRML layer, one concern per file.

The MRML layer takes the scene or the nodes it works on as arguments; nothing in it touches
``slicer.app``, ``slicer.mrmlScene``, ``slicer.modules``, Qt or CTK, so the same code runs
inside Slicer and in plain Python with the ``slicer-core`` wheel (Testing/test_slicer_scene.py):

- ``geometry``: TotalFMLib Volumes <-> MRML volume nodes (LPS <-> RAS);
- ``segments``: organ segments, label maps <-> segmentation nodes, terminology;
- ``score_store``: the one place scores are stored in the scene (segment tags);
- ``colouring``: organs coloured by scores or a search, the legend, the original colours restored;
- ``scores_table``: the scores table, review marks and the CSV export.

The application side, which reaches ``slicer.mrmlScene`` and the other modules (tested with
the application stood in, Testing/test_slicer_module.py):

- ``logic``: the module's Logic (inputs, the core pipeline on a background job, results, search,
  review, export);
- ``parameters``: the parameter node;
- ``dependencies``: installing torch, TotalSegmentator and the requirements at Apply;
- ``sample_data``: the example CT and segmentation in the Sample Data module;
- ``self_test_checks``: what the module's self-test checks on the whole path.
"""
