"""What the module needs installed, and installing it the Slicer way at Apply (never at import):
torch through the PyTorch extension, TotalSegmentator's package through its extension (its
label map is TotalFMLib's organ catalogue), the rest of ``Resources/requirements.txt`` with
``slicer.packaging.pip_ensure``. ``missingRequirements`` only looks (the self-test on a fresh
Slicer, where pip_ensure installs nothing in testing mode)."""
from pathlib import Path

import slicer
from slicer.i18n import tr as _


def ensure(requirementsPath, needSegmenter: bool = False, log=print) -> None:
    try:
        import PyTorchUtils
    except ModuleNotFoundError as e:
        raise RuntimeError(_("TotalFM needs the PyTorch extension; install it from the Extensions Manager.")) from e
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not torchLogic.torchInstalled():
        log(_("Installing PyTorch (several minutes)..."))
        if torchLogic.installTorch(askConfirmation=True, torchVersionRequirement=">=2.1") is None:
            raise RuntimeError(_("PyTorch is required; install it with the PyTorch module."))
    if needSegmenter or not _importable("totalsegmentator"):
        log(_("Checking TotalSegmentator's Python packages..."))
        totalSegmentatorLogic().setupPythonRequirements()
    import slicer.packaging

    slicer.packaging.pip_ensure(slicer.packaging.load_requirements(str(requirementsPath)), requester="TotalFMSlicer")


def totalSegmentatorLogic():
    """The TotalSegmentator extension's logic (declared in EXTENSION_DEPENDS)."""
    try:
        return slicer.util.getModuleLogic("TotalSegmentator")
    except (AttributeError, RuntimeError) as e:
        raise RuntimeError(_("TotalFM needs the TotalSegmentator extension to segment the CT and for its "
                             "organ catalogue; install it from the Extensions Manager.")) from e


def missingRequirements(requirementsPath) -> list:
    """torch and the requirements in requirements.txt that are not installed (no install, no network)."""
    import importlib.metadata
    import re

    names = ["torch"]
    for line in Path(requirementsPath).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0])
    missing = []
    for name in names:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
