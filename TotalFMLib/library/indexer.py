"""Indexing: every study under a folder through the one pipeline, into the library.

``index_study(model, source)`` runs ``pipeline.analyze`` on one study and returns its
``StudyRecord`` (a failure becomes a record with its one-line reason, never an exception);
``index_folder`` finds the studies (``studies.find_studies``), skips those the library already
holds for this model (resuming), and writes each record in its own transaction as it
arrives, so an interruption (Ctrl-C, ``kill -9``) loses at most the studies in flight and a
rerun continues without duplicates. ``workers`` > 1 runs studies in that many processes
(each loads the model once and uses its share of the CPU threads); ``scheduler`` sends them
to a Dask cluster instead (many machines; each worker loads the model once). Either way the
parent alone writes the library.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from ..errors import TotalFMError
from .store import Library, StudyRecord
from .studies import StudySource, find_studies


def organ_boxes(case, organs) -> dict[str, dict]:
    """{organ: {"voxels": [[z0, z1], [y0, y1], [x0, x1]], "center_mm": [x, y, z], "crop": {...}}}:
    the organ's box on the CT grid, its centre, and the crop geometry of the published recipe
    (``crops.recipe``: spacing of the resampled grid, the crop box on it), computed from the
    organ's box scaled to that grid (to within a voxel of the crop stage's own box)."""
    from scipy import ndimage

    from ..crops.recipe import crop_box, target_size, target_spacing
    from ..vocabulary import catalogue

    spacing = target_spacing(case.ct.spacing)
    size_xyz = target_size(case.ct.shape[::-1], case.ct.spacing, spacing)
    scale = np.asarray(case.ct.spacing[::-1]) / np.asarray(spacing[::-1])  # (z, y, x) old / new voxel size

    labels = case.seg.array
    slices = ndimage.find_objects(labels.astype(np.int32, copy=False))
    direction = np.asarray(case.ct.direction, dtype=float).reshape(3, 3)
    boxes = {}
    for name in organs:
        i = catalogue.organ(name).label_id - 1
        if i >= len(slices) or slices[i] is None:
            continue
        z, y, x = slices[i]
        centre_ijk = np.array([(x.start + x.stop - 1) / 2, (y.start + y.stop - 1) / 2, (z.start + z.stop - 1) / 2])
        centre = np.asarray(case.ct.origin) + direction @ (centre_ijk * np.asarray(case.ct.spacing))
        scaled = tuple(slice(int(sl.start * f), max(int(sl.start * f) + 1, int(round(sl.stop * f))))
                       for sl, f in zip((z, y, x), scale))
        crop = crop_box(scaled, size_xyz[::-1])
        boxes[name] = {"voxels": [[z.start, z.stop], [y.start, y.stop], [x.start, x.stop]],
                       "center_mm": [round(float(c), 2) for c in centre],
                       "crop": {"spacing_mm": [round(float(v), 4) for v in spacing],
                                "voxels": [[c.start, c.stop] for c in crop]}}
    return boxes


def _dicom_ids(case) -> tuple[str, str, str]:
    """(Study Instance UID, Series Instance UID, Patient ID) of a CT read from DICOM, else blanks.
    The patient's name is not read."""
    files = case.ct.meta.get("files") if case.ct.meta.get("format") == "DICOM" else None
    if not files:
        return "", "", ""
    import pydicom

    ds = pydicom.dcmread(files[0], stop_before_pixels=True,
                         specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "PatientID"])
    return (str(ds.get("StudyInstanceUID", "") or ""), str(ds.get("SeriesInstanceUID", "") or ""),
            str(ds.get("PatientID", "") or ""))


def index_study(model, source: StudySource, organs=None) -> StudyRecord:
    """One study through the pipeline: its record, done or failed with the reason."""
    from ..pipeline import analyze, open_case
    from ..zeroshot.scoring import organ_matrix
    from ..zeroshot.search import baseline

    started = time.perf_counter()
    record = StudyRecord(source.key, source.relative, model.model_id, model.checksum, str(source.path.resolve()),
                         str(source.segmentation.resolve()) if source.segmentation else "")
    try:
        case = open_case(source.path, source.segmentation)
        result = analyze(model, case, organs=organs, case_id=source.relative)
        chosen, matrix = organ_matrix(result.embeddings)
        mean, sd = baseline(matrix, chosen, model.encode_texts, model.config.query_style)
        boxes = organ_boxes(case, [o.name for o in chosen])
        record.study_uid, record.series_uid, record.patient_id = _dicom_ids(case)
        scores: dict[str, dict] = {}
        for r in result.rows:
            scores.setdefault(r.organ, {})[r.finding] = [round(r.score, 6), bool(r.flagged)]
        record.organs = [{"organ": o.name, "label_id": o.label_id, "embedding": matrix[i].astype(np.float32),
                          "mean": mean[i], "sd": sd[i], "bbox": boxes.get(o.name, {}),
                          "scores": scores.get(o.name, {})} for i, o in enumerate(chosen)]
    except TotalFMError as e:
        record.status, record.reason = "failed", str(e)
    except Exception as e:  # noqa: BLE001 - one study must not stop the archive; the reason is kept
        record.status, record.reason = "failed", f"unexpected {type(e).__name__}: {e}".splitlines()[0]
    record.seconds = time.perf_counter() - started
    return record


@dataclass
class IndexSummary:
    found: int
    skipped: int        # already in the library for this model
    done: int
    failed: int
    seconds: float


_worker_models: dict = {}


def _worker_init(model_source: str, device, threads: int) -> None:
    from .. import runtime

    runtime.setup(threads=threads, quiet=True)
    _worker_model(model_source, device)


def _worker_model(model_source: str, device):
    """The model of this worker process, loaded once (the pool's and Dask's workers)."""
    from ..totalfm import TotalFM

    key = (model_source, device)
    if key not in _worker_models:
        _worker_models[key] = TotalFM.load(model_source, device=device)
    return _worker_models[key]


def _worker_index(source: StudySource, organs, model_source: str = "demo", device=None) -> StudyRecord:
    return index_study(_worker_model(model_source, device), source, organs)


def _run_on_dask(scheduler: str, todo, organs, model_source, device, keep) -> None:
    """The studies as tasks on a Dask cluster (``scheduler``: its address); results come back
    here, where the library is written (one writer)."""
    try:
        from distributed import Client, as_completed
    except ImportError:
        from ..errors import InputError

        raise InputError(None, 'indexing on a Dask cluster needs dask.distributed: pip install "dask[distributed]"') \
            from None
    with Client(scheduler, timeout="30s") as client:
        futures = [client.submit(_worker_index, s, organs, model_source, device, key=f"totalfm-index-{s.key}",
                                 pure=False) for s in todo]
        for future in as_completed(futures):
            keep(future.result())


def index_folder(root, library: Library, model, model_source: str = "demo", *, workers: int = 1, organs=None,
                 retry_failed: bool = False, device=None, progress=None, scheduler: str | None = None) -> IndexSummary:
    """Index every study under ``root`` not yet in ``library`` for ``model``; ``progress(done,
    total, record)`` after each study. ``scheduler``: a Dask cluster's address, whose workers
    index the studies (they must see ``root`` under the same path)."""
    started = time.perf_counter()
    sources = find_studies(root)
    have = library.done_keys(model.checksum, retry_failed)
    todo = [s for s in sources if s.key not in have]
    done = failed = 0

    def keep(record: StudyRecord) -> None:
        nonlocal done, failed
        library.write(record)
        done += record.status == "done"
        failed += record.status == "failed"
        if progress is not None:
            progress(done + failed, len(todo), record)

    if scheduler:
        _run_on_dask(scheduler, todo, organs, model_source, device, keep)
    elif workers <= 1 or len(todo) <= 1:
        for source in todo:
            keep(index_study(model, source, organs))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                                 initargs=(model_source, device, threads)) as pool:
            futures = [pool.submit(_worker_index, s, organs, model_source, device) for s in todo]
            try:
                for future in as_completed(futures):
                    keep(future.result())
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    return IndexSummary(len(sources), len(sources) - len(todo), done, failed, time.perf_counter() - started)
