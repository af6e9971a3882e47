"""Inputs of the benchmark: the real example case, a full-resolution CT made from it, models."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from TotalFMLib.config import ImageArch

# the demo model's size (issue 5), from the config it is trained with; weights do not change timings
_DEMO_MODEL = json.loads((Path(__file__).resolve().parents[2] / "Training" / "configs"
                          / "demo_contrastive.json").read_text())["model"]
DEMO_ARCH = ImageArch.from_dict(_DEMO_MODEL["arch"])
DEMO_EMBED = int(_DEMO_MODEL["embed_dim"])

# full-resolution grid: 512 x 512 at 0.7421875 mm (a 380 mm field of view), 1 mm slices
FULL_SPACING = (0.7421875, 0.7421875, 1.0)
FULL_SIZE = (512, 512, 336)
FULL_DESCRIPTION = ("the real TotalSegmentator example CT (3 mm, 122x101x112) with its segmentation, "
                    "upsampled by SimpleITK (CT linear, labels nearest) to 512x512x336 voxels of "
                    "0.742x0.742x1.0 mm, centred in a 380 mm field of view (air / label 0 around it)")


def example_case():
    """The real example CT (3 mm abdomen) and its TotalSegmentator label map."""
    from TotalFMLib.inputs import sample_data
    from TotalFMLib.inputs.case import load_case

    return load_case(sample_data.fetch("example_ct"), sample_data.fetch("example_seg"))


def full_resolution_case(ct=None, seg=None):
    """(ct, seg) Volumes on the FULL_SIZE grid, made from the real example case."""
    import SimpleITK as sitk

    from TotalFMLib.inputs.volume import Volume

    if ct is None:
        ct, seg = example_case()
    out = []
    for vol, interp, fill in ((ct, sitk.sitkLinear, -1000.0), (seg, sitk.sitkNearestNeighbor, 0.0)):
        img = vol.to_sitk()
        d = np.asarray(img.GetDirection()).reshape(3, 3)
        extent_in = np.asarray(img.GetSize()) * np.asarray(img.GetSpacing())
        extent_out = np.asarray(FULL_SIZE) * np.asarray(FULL_SPACING)
        shift = (extent_in - extent_out) / 2
        shift[2] = 0.0  # same head-foot range
        # voxel centres: keep the in-plane centre of the field of view, start at the first slice's edge
        origin = np.asarray(img.GetOrigin()) + d @ (shift + (np.asarray(FULL_SPACING) - np.asarray(img.GetSpacing())) / 2)
        res = sitk.Resample(img, list(FULL_SIZE), sitk.Transform(), interp, tuple(float(o) for o in origin),
                            FULL_SPACING, img.GetDirection(), fill, img.GetPixelID())
        out.append(Volume.from_sitk(res, source=f"{vol.source} (upsampled)"))
    return out[0], out[1]


def write_case(ct, seg, folder: Path) -> tuple[Path, Path]:
    """Both volumes as NIfTI files (what a user would pass to the CLI)."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    ct_path, seg_path = folder / "ct.nii.gz", folder / "seg.nii.gz"
    sitk.WriteImage(ct.to_sitk(), str(ct_path), useCompression=False)
    sitk.WriteImage(seg.to_sitk(), str(seg_path), useCompression=False)
    return ct_path, seg_path


def random_model(path: Path, arch: dict, embed_dim: int, seed: int = 0) -> Path:
    """A randomly initialised model of ``arch`` with the default MiniLM text backbone, saved
    in our checkpoint format (the frozen backbone left out, as the demo model does)."""
    import torch

    from TotalFMLib.config import ModelConfig
    from TotalFMLib.models.totalfm_model import TotalFMModel
    from TotalFMLib.training.checkpointing import save_model_checkpoint

    torch.manual_seed(seed)
    config = ModelConfig(model_id=f"random-{arch.dim}", arch=arch, embed_dim=embed_dim)
    model = TotalFMModel(config)
    model.text_tower.freeze_backbone(0)
    return save_model_checkpoint(path, model, config, drop_frozen_text=True)


def resolve_model(choice: str | None, workdir: Path) -> tuple[Path, str]:
    """(checkpoint path, description) for --model: "demo" (the bundled file, else a random
    model of the demo size), or a checkpoint path."""
    from TotalFMLib.totalfm import DEMO_MODEL

    if choice in (None, "demo"):
        if DEMO_MODEL.is_file():
            return DEMO_MODEL, f"bundled demo model ({DEMO_MODEL.name})"
        if choice == "demo":
            print(f"note: {DEMO_MODEL} is not there yet; using a random model of the demo size")
        return random_model(workdir / "demo_size_random.pt", DEMO_ARCH, DEMO_EMBED), \
            "random model of the demo size (bundled demo model not present)"
    path = Path(choice).expanduser()
    return path, str(path)


def synthetic_crops(n: int, crop_size: int, frames: int, seed: int = 0):
    """(n, 3, crop, crop, frames) float32 crops in [0, 1] without any data: smooth random
    volumes (coarse noise resized trilinearly), for timing the encoder anywhere."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, 3, max(1, crop_size // 8), max(1, crop_size // 8), max(1, frames // 4)),
                        generator=generator)
    fine = torch.nn.functional.interpolate(coarse, size=(crop_size, crop_size, frames), mode="trilinear",
                                           align_corners=False)
    return fine.clamp_(0, 1)


def machine_description(device="cpu") -> dict:
    """CPU model, cores, load, torch build (and the GPU of ``device``); stated next to every figure."""
    import platform
    import subprocess

    import torch

    from TotalFMLib.models.precision import bf16_supported
    from TotalFMLib.runtime import physical_cores

    model = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "cpu": model,
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_native": bf16_supported("cpu"),
        "gpu": (f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, "
                f"{torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB"
                if torch.device(device).type == "cuda" else
                torch.cuda.get_device_name(0) + " (not used)" if torch.cuda.is_available() else "none"),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }
