"""The module's texts: the help and acknowledgement shown in Slicer, and the question asked
before the released weights are downloaded (translatable through Slicer's i18n)."""
from slicer.i18n import tr as _

DOCS_URL = "https://github.com/TotalFMSlicer/SlicerTotalFM#3d-slicer"


def helpText() -> str:
    return _("""
Organ-wise zero-shot CT findings with TotalFM, an organ-separated CT vision-language model.
Select a CT and a TotalSegmentator segmentation (or let TotalSegmentator make one), press Apply:
each organ is coloured by its lesion score, a typed finding highlights the matching organs, and
the table lets you review organ by organ and export CSV or DICOM (SEG and SR).
See the <a href="{docs}">documentation</a>.<br><br>
<b>Models and licences.</b> TotalFMSlicer and TotalFMLib: Apache-2.0.
<i>demo</i>: a small model bundled with the extension to try the workflow; its scores mean little.
<i>official</i>: the released TotalFM weights (Hugging Face jichi-labo/TotalFM), downloaded on first
use after you agree; the authors release them for research purposes only.
TotalSegmentator (<i>total</i> task): Apache-2.0.<br>
Research software, not a medical device: not for clinical decisions.
""").format(docs=DOCS_URL)


def acknowledgementText() -> str:
    return _("""
TotalFM: Yamamoto and Kikuchi, MICCAI 2026, arXiv:2601.00260 (code: github.com/jichi-labo/TotalFM).
TotalSegmentator: Wasserthal J. et al., TotalSegmentator: Robust Segmentation of 104 Anatomic
Structures in CT Images, Radiology: Artificial Intelligence 2023;5(5):e230024.
The example CT is TotalSegmentator's test data.
""")


def officialDownloadQuestion() -> str:
    return _("Download the released TotalFM weights (more than 1 GB) from Hugging Face (jichi-labo/TotalFM)? "
             "The authors release them for research purposes only; they are kept in the model cache folder.")
