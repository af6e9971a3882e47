"""The case library: organ embeddings and scores of many studies, searched across studies.

    studies.py   which studies a folder holds, and each one's segmentation (the naming rule)
    indexer.py   each study through the one pipeline, into the library; resumable, parallel
    store.py     the library on disk (SQLite): studies, organs, embeddings, baselines, scores
    query.py     (study, organ) ranked for a typed finding or for likeness to one organ
    ann.py       the approximate index of large organ groups (HNSW, usearch)
    cli.py       ``totalfm index`` and ``totalfm find``
"""
