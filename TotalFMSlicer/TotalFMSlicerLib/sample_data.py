"""The module's sample data: the example CT and its segmentation in Slicer's Sample Data module.

Both files ship with the extension (``Resources/SampleData``, 2.3 MB: TotalSegmentator's test
data, Apache-2.0), so the sample and the self-test work with the network off; SampleData
copies them into its cache from their ``file://`` URI and checks their SHA-256 as it does a
download. A checkout without them falls back to the pinned download URL.
"""
from pathlib import Path

from slicer.i18n import tr as _

# The example CT and its TotalSegmentator segmentation: TotalSegmentator's own test data
# (Apache-2.0), pinned to the v2.18.0 tag and checked by SHA-256.
EXAMPLE_DATA_URL = "https://raw.githubusercontent.com/wasserth/TotalSegmentator/v2.18.0/tests/reference_files/"
EXAMPLE_CT = ("example_ct.nii.gz", "SHA256:dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1")
EXAMPLE_SEG = ("example_seg_fast_force_split.nii.gz",
               "SHA256:e8097758e56e73099075b6caaebce23ef11bc6fad66a4ec3753b9406846558c7")


def sampleUri(bundledFolder, fileName: str, sourceName: str) -> str:
    """The bundled file's ``file://`` URI, or the download URL when it is not there."""
    bundled = Path(bundledFolder) / fileName
    return bundled.resolve().as_uri() if bundled.is_file() else EXAMPLE_DATA_URL + sourceName


def registerSampleData(icon: str, bundledFolder) -> None:
    """The example abdomen CT and its TotalSegmentator label map in the Sample Data module."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataCategory("TotalFM", title=_("TotalFM"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="TotalFM", sampleName="TotalFMExampleCT", thumbnailFileName=icon,
        uris=sampleUri(bundledFolder, "TotalFMExampleCT.nii.gz", EXAMPLE_CT[0]), fileNames="TotalFMExampleCT.nii.gz",
        checksums=EXAMPLE_CT[1], nodeNames="TotalFMExampleCT", loadFileTypes="VolumeFile")
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="TotalFM", sampleName="TotalFMExampleSegmentation", thumbnailFileName=icon,
        uris=sampleUri(bundledFolder, "TotalFMExampleSegmentation.nii.gz", EXAMPLE_SEG[0]),
        fileNames="TotalFMExampleSegmentation.nii.gz",
        checksums=EXAMPLE_SEG[1], nodeNames="TotalFMExampleSegmentation", loadFileTypes="VolumeFile",
        loadFileProperties={"labelmap": True})
