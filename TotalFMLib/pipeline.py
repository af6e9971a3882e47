"""The one pipeline: a case through every stage of the data flow.

    CT + segmentation --(inputs: the door)--> Case --(crops)--> organ crops
        --(models)--> organ embeddings --(zeroshot)--> score rows          -> CaseResult

``analyze(model, ct, seg)`` runs it; the ``totalfm`` command, the Slicer module's Logic and
(from the crop stage on: ``embed_crops``) the benchmark evaluation call it, and nothing else
strings the stages together. ``check_selection`` checks organ and finding names before a
model is loaded; ``open_case`` is the door (TotalSegmentator first when no segmentation is
given). Each step takes plain inputs and returns plain outputs; long steps report
``progress(fraction, message)`` and stop with ``errors.Cancelled`` when ``cancel()`` is true.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import Cancelled
from .progress import Progress, sub_progress
from .results import ScoreRow


@dataclass(frozen=True)
class Selection:
    """Organs and findings asked for, checked: structure names, and finding names (None: all
    that apply to each organ)."""

    organs: tuple[str, ...]
    findings: tuple[str, ...] | None
    named_organs: bool = False  # the caller named the organs (else the default set)


def check_selection(organs=None, findings=None) -> Selection:
    """The organ and finding selection, or InputError naming the unknown name (cheap: no model)."""
    from .vocabulary import catalogue
    from .zeroshot.scoring import wanted_findings

    chosen = tuple(o.name for o in catalogue.resolve(organs))
    wanted = wanted_findings(findings)
    return Selection(chosen, None if wanted is None else tuple(f.finding for f in wanted), organs is not None)


@dataclass
class CaseResult:
    """What the pipeline returns for one case."""

    case_id: str
    embeddings: dict[str, np.ndarray]      # structure name -> unit vector
    rows: list[ScoreRow]                   # one per organ and finding (results.ScoreRow)
    model_id: str
    model_checksum: str
    missing: list[str] = field(default_factory=list)   # organs asked for by name but absent
    warnings: list[str] = field(default_factory=list)  # one line each (e.g. orientation)
    sources: dict[str, str] = field(default_factory=dict)  # "ct", "seg": where the case came from

    def meta(self) -> dict:
        """Plain values for an export's header (JSON ``meta``)."""
        return {"case_id": self.case_id, "model_id": self.model_id, "model_checksum": self.model_checksum,
                "organs": sorted(self.embeddings), "missing": self.missing, "warnings": self.warnings,
                **self.sources}


def case_id_of(ct) -> str:
    """Default case id: the CT file or folder name without its extensions."""
    source = getattr(getattr(ct, "ct", ct), "source", None) if not isinstance(ct, (str, Path)) else ct
    return Path(str(source)).name.split(".")[0] if source else "case"


def open_case(ct, seg=None, device=None, log=None):
    """The door: a checked ``inputs.case.Case`` (a Case passes through). Without ``seg``,
    TotalSegmentator segments the CT first (fast mode, its inference must be installed)."""
    from .inputs.case import Case, load_case

    if isinstance(ct, Case) or seg is not None:
        return load_case(ct, seg)
    from .inputs.case import checked_ct
    from .inputs.segment import segment_ct

    volume = checked_ct(ct)  # a damaged or non-CT file is refused before segmentation is tried
    with tempfile.TemporaryDirectory(prefix="totalfm-seg-") as tmp:
        source = ct
        if not isinstance(ct, (str, Path)):  # a Volume: TotalSegmentator reads files
            source = Path(tmp) / "ct.nii.gz"
            import SimpleITK as sitk

            sitk.WriteImage(volume.to_sitk(), str(source))
        if log is not None:
            log(f"no segmentation given: segmenting {getattr(ct, 'source', None) or ct} with TotalSegmentator (fast)")
        seg_path = segment_ct(source, Path(tmp) / "segmentation.nii.gz", fast=True, device=device)
        return load_case(ct, seg_path)


def embed_crops(model, crops, progress: Progress | None = None, cancel=None, encode=None) -> dict[str, np.ndarray]:
    """{organ: unit vector} of a case's ``OrganCrops`` (``crops.shared`` : one crop stands for
    every organ, the whole-volume baseline). ``encode`` replaces ``model.encode_crops``."""
    images = crops.images[:1] if crops.shared else crops.images
    if encode is None:
        vectors = model.encode_crops(images, progress=progress, cancel=cancel)
    else:
        vectors = encode(images.float())
    vectors = np.asarray(vectors, dtype=np.float32)
    if crops.shared:
        vectors = np.repeat(vectors[:1], len(crops.organs), axis=0)
    return dict(zip(crops.organs, vectors))


@dataclass
class EmbeddedCase:
    """A case through the door and the embedding stage."""

    case: object                           # inputs.case.Case
    embeddings: dict[str, np.ndarray]      # structure name -> unit vector
    missing: list[str]                     # organs asked for by name but absent


def embed(model, ct, seg=None, *, organs=None, progress: Progress | None = None, cancel=None, device=None,
          log=None) -> EmbeddedCase:
    """The door, then organ crops and embeddings (``model.encode_image``, which keeps a per-case
    cache). ``ct``, ``seg``: paths or Volumes, or a checked ``Case`` as ``ct`` (``seg`` None).
    The organ names are checked before the case is read."""
    selection = check_selection(organs)
    progress = progress or (lambda fraction, message: None)
    progress(0.0, "reading the CT and its segmentation")
    case = open_case(ct, seg, device=device, log=log)
    if cancel is not None and cancel():
        raise Cancelled("cancelled")
    embeddings = model.encode_image(case, organs=list(selection.organs), progress=sub_progress(progress, 0.05, 1.0),
                                    cancel=cancel)
    missing = [o for o in selection.organs if o not in embeddings] if selection.named_organs else []
    return EmbeddedCase(case, embeddings, missing)


def analyze(model, ct, seg=None, *, organs=None, findings=None, case_id: str | None = None,
            progress: Progress | None = None, cancel=None, device=None, log=None) -> CaseResult:
    """A case through every stage: ``embed``, then the scores of ``findings`` (None: all that
    apply to each organ). ``model``: a ``TotalFM``. Organ and finding names are checked before
    the case is read."""
    selection = check_selection(organs, findings)
    progress = progress or (lambda fraction, message: None)
    done = embed(model, ct, seg, organs=organs, progress=sub_progress(progress, 0.0, 0.9), cancel=cancel,
                 device=device, log=log)
    if cancel is not None and cancel():
        raise Cancelled("cancelled")
    progress(0.9, f"scoring {len(done.embeddings)} organs")
    case_id = case_id or case_id_of(done.case)
    rows = model.score(done.embeddings, findings=None if selection.findings is None else list(selection.findings),
                       case_id=case_id)
    progress(1.0, f"{len(rows)} scores")
    case = done.case
    return CaseResult(case_id, done.embeddings, rows, model.model_id, model.checksum, done.missing,
                      list(case.warnings), {"ct": str(case.ct.source or ""), "seg": str(case.seg.source or "")})
