"""Stage 1, the door: CT and segmentation readers, the ``Volume`` type, label maps, and the
checks that every case passes once (``case.load_case``)."""
