"""What a reader's uploads become: the CT and segmentation paths that the core's checked readers
(``TotalFMLib.inputs.case.load_case``) open, and saved reviews (.mrb) checked before the scene
reader sees them. Every problem is one line naming the file."""
from __future__ import annotations

import posixpath
import zipfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from TotalFMLib.errors import InputError

MAX_BUNDLE_BYTES = 4 << 30  # unpacked size of a saved review; a larger one is refused before unpacking


def _one_or_folder(files: list[Path], what: str) -> Path | None:
    """A single file as it is; several files (a DICOM series, a folder of organ masks) as the
    folder they were uploaded into together."""
    if not files:
        return None
    if len(files) == 1:
        return files[0]
    folders = {f.parent for f in files}
    if len(folders) != 1:
        raise InputError(None, f"the {what} files were uploaded in separate batches; upload them together")
    return folders.pop()


def arrange_uploads(ct_files: list[Path], seg_files: list[Path], dest: Path) -> tuple[Path, Path | None]:
    """(CT, segmentation or None): one file each, or the folder of a multi-file upload."""
    ct = _one_or_folder(ct_files, "CT")
    if ct is None:
        raise InputError(None, "upload a CT first (a NIfTI or NRRD file, or the files of a DICOM series)")
    return ct, _one_or_folder(seg_files, "segmentation")


def case_name(ct: Path) -> str:
    return ct.name.split(".")[0] or "case"


def _safe_member(name: str) -> bool:
    norm = posixpath.normpath(name.replace("\\", "/"))
    return not (norm.startswith("/") or norm.startswith("..") or ":" in norm.split("/")[0])


def check_bundle(path: Path) -> None:
    """Refuse a saved review that is not a zip, names a path outside itself (in the archive or in
    its scene's storage nodes), unpacks to more than ``MAX_BUNDLE_BYTES`` or holds no scene."""
    try:
        with zipfile.ZipFile(path) as bundle:
            members = bundle.infolist()
            bad = [m.filename for m in members if not _safe_member(m.filename)]
            if bad:
                raise InputError(path, f"names a path outside the bundle: {bad[0]}")
            if sum(m.file_size for m in members) > MAX_BUNDLE_BYTES:
                raise InputError(path, f"unpacks to more than {MAX_BUNDLE_BYTES >> 30} GB")
            scenes = [m for m in members if m.filename.endswith(".mrml")]
            if len(scenes) != 1:
                raise InputError(path, f"a saved review holds one scene (.mrml); this one holds {len(scenes)}")
            root = ElementTree.fromstring(bundle.read(scenes[0]))
    except zipfile.BadZipFile:
        raise InputError(path, "not a saved review (.mrb, a zip file): it cannot be opened as a zip") from None
    except ElementTree.ParseError as e:
        raise InputError(path, f"its scene is not valid MRML XML ({e})") from None
    for element in root.iter():
        for attribute in ("fileName", "fileListMember0"):
            name = element.get(attribute)
            if name and not _safe_member(name):
                raise InputError(path, f"its scene reads a file outside the bundle: {name}")


def review_nodes(scene, bundle: Path):
    """(CT, scored segmentation, scores table) of a reopened review."""
    from TotalFMSlicerLib import score_store

    segmentations = [n for n in scene.GetNodesByClass("vtkMRMLSegmentationNode") if score_store.scored_rows(n)]
    tables = list(scene.GetNodesByClass("vtkMRMLTableNode"))
    volumes = [n for n in scene.GetNodesByClass("vtkMRMLScalarVolumeNode") if not n.IsA("vtkMRMLLabelMapVolumeNode")]
    if not segmentations or not tables or not volumes:
        raise InputError(bundle, "holds no TotalFM review (a CT, a scored segmentation and its scores table)")
    return volumes[0], segmentations[0], tables[0]
