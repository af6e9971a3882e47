"""The door of the pipeline: a CT and its organ segmentation, read and checked once.

``load_case(ct, seg)`` takes paths or ``Volume``s and returns a ``Case``: the CT in HU
(``ct.check_ct``) and an int16 label map of TotalSegmentator v2 ``total`` ids on the CT's
grid (``segmentation.load_segmentation``). Every problem is an ``InputError("<file>:
<problem>")`` raised here, before any heavy work; the stages after the door (crops,
embeddings, scores) take a ``Case`` and check nothing again.

A ``Case`` also carries warnings that do not stop the work, such as anatomy that contradicts
the file's stated orientation (``anatomy.orientation_warnings``): a mis-oriented file would
otherwise be scored silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .anatomy import orientation_warnings
from .ct import check_ct, load_ct
from .fingerprint import pair_key
from .label_maps import check_same_grid
from .segmentation import check_labels, load_segmentation
from .volume import Volume


@dataclass(frozen=True)
class Case:
    """A checked CT and label map on one grid. It reads as the pair (CT, label map):
    ``ct, seg = case``, ``case[0]``.

    Build it with ``load_case``. Code that made both volumes itself on one grid (the
    training benchmark) may build ``Case(ct, seg)`` directly; nothing is checked then.
    """

    ct: Volume
    seg: Volume
    warnings: tuple[str, ...] = field(default=())
    inputs_key: str = ""  # what the case was read from (``fingerprint``), "" for volumes built in memory

    def __iter__(self):
        return iter((self.ct, self.seg))

    def __getitem__(self, index):
        return (self.ct, self.seg)[index]

    def __len__(self) -> int:
        return 2

    def key(self) -> str:
        """Identity of the case's inputs for caches: the files it was read from (path, size,
        time), else the content of its volumes."""
        return self.inputs_key or pair_key(self.ct, self.seg)

    @property
    def organs(self) -> dict[str, int]:
        """{structure name: voxel count} of the organs in the label map (as loaded)."""
        return dict(self.seg.meta.get("organs", {}))


def load_case(ct, seg) -> Case:
    """The checked ``Case`` of a CT and its segmentation, each a path or a ``Volume``; a
    ``Case`` is returned as it is."""
    if isinstance(ct, Case):
        return ct
    ct_volume = checked_ct(ct)
    seg_volume = load_segmentation(seg, ct_volume)
    from_files = not isinstance(ct, Volume) and not isinstance(seg, Volume)
    key = pair_key(ct, seg) if from_files else ""
    warnings = orientation_warnings(seg_volume)
    if seg_volume.meta.get("group_segments"):
        warnings.append(f"{seg_volume.source}: {seg_volume.meta['group_segments']}; they are not scored")
    return Case(ct_volume, seg_volume, tuple(warnings), key)


def checked_ct(ct) -> Volume:
    """A CT ``Volume`` checked, or a CT path loaded (and so checked)."""
    if isinstance(ct, Volume):
        check_ct(ct)
        return ct
    return load_ct(ct)


def validate_case(ct: Volume, seg: Volume | None = None) -> None:
    """Raise InputError unless ``ct`` is a CT-like 3-D volume and ``seg`` (if given) an
    integer label map of known ``total`` ids with at least one organ, on the CT's grid."""
    check_ct(ct)
    if seg is not None:
        check_labels(seg)
        check_same_grid(seg, ct)
