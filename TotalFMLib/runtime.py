"""The process's runtime settings, set once by an entry point (never at import).

``setup()`` is called by the ``totalfm`` command, the training and benchmark scripts and the
Slicer module's Logic before any heavy work. Importing ``TotalFMLib`` changes nothing in the
process: no environment variable, thread count or library setting.

What it sets:

* ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set it): OpenMP threads that wait by spinning
  steal the cores from each other as soon as anything else runs (a shared machine, Slicer's
  own threads); on a loaded 2-core machine the demo encoder ran 7x slower at 2 threads than
  with passive waiting. The OpenMP runtime reads it when torch is first imported, so it only
  takes effect when ``setup()`` runs before that (it says whether it did).
  (Huge-page-backed torch buffers, THP_MEM_ALLOC_ENABLE=1, were tried and left out: they
  saved a fifth of preprocessing in isolation but cost a third right after other
  memory-hungry work, when the kernel must compact memory to find huge pages.)
* torch's intra-op threads: the physical cores (SMT siblings share a core's matrix units).
* ``quiet=True``: the progress bars of transformers and huggingface_hub (a "Loading weights"
  bar when a text encoder is built) are turned off.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def setup(threads: int | None = None, quiet: bool = False) -> dict:
    """Apply the settings above; returns what was set (for logs and benchmarks)."""
    early = "torch" not in sys.modules
    if early:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if quiet:
        quiet_libraries()
    return {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "") if early else "(torch imported before setup)",
            "threads": set_cpu_threads(threads)}


def quiet_libraries() -> None:
    """No progress bars from transformers or huggingface_hub in this process."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for module, function in (("huggingface_hub.utils", "disable_progress_bars"),
                             ("transformers.utils.logging", "disable_progress_bar")):
        try:
            getattr(__import__(module, fromlist=[function]), function)()
        except (ImportError, AttributeError):
            pass


def physical_cores() -> int:
    """Physical cores this process may run on (SMT siblings counted once); >= 1."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology.joinpath("physical_package_id").read_text().strip(),
                       topology.joinpath("core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def set_cpu_threads(threads: int | None = None) -> int:
    """Use ``threads`` (default: the physical cores) intra-op threads; returns the number."""
    import torch

    n = int(threads) if threads else physical_cores()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def pick_device(device=None):
    """``device`` as a ``torch.device``; None: the GPU where there is one, else the CPU."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)
