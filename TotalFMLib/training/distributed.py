"""torchrun support: process-group set-up from the environment and embedding gathering.

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; without them
the run is a single process and nothing here talks to a process group. The backend is
nccl when the device is CUDA, gloo otherwise.

Commands (``batch_size`` in the config is per process; the loss sees
``batch_size * world_size`` pairs)::

    # one machine, 8 GPUs
    torchrun --standalone --nproc_per_node 8 Training/train_contrastive.py \
        --config Training/configs/full_contrastive.json --data CACHE --out runs/full
    # two machines with 8 GPUs each: the same command on both (HOST = first machine's address)
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_id totalfm --rdzv_backend c10d \
        --rdzv_endpoint HOST:29500 Training/train_contrastive.py \
        --config Training/configs/full_contrastive.json --data CACHE --out runs/full
    # CPU only, 2 processes (gloo), as in the tests
    python -m torch.distributed.run --standalone --nproc_per_node 2 Training/train_contrastive.py \
        --config Training/configs/demo_contrastive.json --data CACHE --out runs/demo --set device=cpu

Every node reads CACHE; only rank 0 writes OUT; ``--resume`` reads the checkpoint on
every rank, so OUT must be on a shared file system (or the file copied to each node).

Contrastive gathering: every rank gathers all ranks' embeddings and computes the loss
on the whole global batch (the same value on every rank). ``all_gather`` itself carries
no gradient, so the rank's own slice is put back as the local tensor (which keeps its
graph) and the gradient through it is multiplied by the world size: DDP then averages
the ranks' gradients, which gives exactly the gradient of the single-process loss on the
concatenated batch (the logit scale/bias, used whole on every rank, are averaged to
their exact gradient too).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank and world size from torchrun's environment variables (single process if unset)."""
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                    int(os.environ.get("WORLD_SIZE", 1)))


def init_distributed(device_type: str = "cpu") -> DistInfo:
    """Join the process group when launched by torchrun; returns the rank information."""
    info = env_info()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return info


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier():
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor: float):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B_local, ...) of all ranks in rank order; the local slice keeps its
    gradient (scaled by the world size, see module docstring). Identity on one process."""
    n = world_size()
    if n == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(n)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = _ScaleGrad.apply(x, float(n))
    return torch.cat(parts, dim=0)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate a tensor without gradient (e.g. text keys) across ranks."""
    n = world_size()
    if n == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(n)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def mean_over_ranks(value: float) -> float:
    """Average a Python float over ranks (for logging)."""
    n = world_size()
    if n == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item()) / n
