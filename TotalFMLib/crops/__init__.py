"""Stage 2: organ crops by the published recipe (``recipe``), and its fast, bit-identical path
(``organ_crops``)."""
