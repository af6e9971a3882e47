"""The training loop shared by VideoMAE pre-training and contrastive training.

A *task* (``videomae.VideoMAETask``, ``contrastive.ContrastiveTask``) supplies the
module, its parameter groups, the data and the loss; ``train`` does the rest: device
and precision, seeds, DDP, AdamW with a linear warm-up + cosine schedule, gradient
accumulation, gradient clipping, a tqdm bar, the JSONL metrics log and its PNG plot,
resumable checkpoints and the final model file. Only rank 0 writes files.

Mixed precision: on CUDA, ``precision="auto"`` means bf16 autocast where the GPU has it,
else fp16 autocast with a GradScaler; on CPU everything is fp32.

Output folder: ``train_config.json``, ``metrics.jsonl``, ``curves.png``,
``checkpoint_last.pt`` (resumable), and the task's final model file.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..models.precision import torch_dtype
from . import distributed as D
from .checkpointing import restore_train_state, save_train_state
from .curves import MetricsLog, plot_curves
from .train_config import TrainConfig


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_with_warmup(warmup: int, total: int, min_ratio: float):
    """lr multiplier at optimizer step s (0-based): linear 0->1 over ``warmup``, cosine to ``min_ratio``."""
    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def pick_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for plain fp32."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch_dtype(precision)


def decay_groups(named_params, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices only (not biases, norms, embeddings, scalars)."""
    decay, no_decay = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        if p.ndim < 2 or ".embeddings." in name or name.endswith(("_embed.weight", "pos", "mask_token")):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    return groups


class Task:
    """What a training task provides to ``train``; see VideoMAETask and ContrastiveTask."""
    name = "task"
    model: torch.nn.Module
    dataset: torch.utils.data.Dataset

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        raise NotImplementedError

    def batch_sampler(self, cfg: TrainConfig, info: D.DistInfo):
        raise NotImplementedError

    def collate(self, items):
        raise NotImplementedError

    def loss(self, module, batch, device) -> torch.Tensor:
        """Loss of one micro-batch (module is the DDP-wrapped model when distributed)."""
        raise NotImplementedError

    def after_step(self):
        """Called after each optimizer step (e.g. clamp the logit scale)."""

    def log_extra(self) -> dict:
        return {}

    def save_final(self, out: Path) -> Path:
        raise NotImplementedError


def _optimizer_step(model, optimizer, scaler, grad_clip: float) -> None:
    """One optimizer step on the accumulated gradients (unscaled and clipped first), then
    the gradients are cleared."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _open_run_folder(out: Path, cfg: TrainConfig, step: int) -> MetricsLog:
    """The run folder with its ``train_config.json``; the metrics log, cut back to ``step``
    (a resumed run rewrites what followed its checkpoint)."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "train_config.json") as tmp:
        tmp.write_text(json.dumps(cfg.to_dict(), indent=1))
    log = MetricsLog(out / "metrics.jsonl")
    log.truncate_after(step)
    return log


def _loader_from(task: Task, cfg: TrainConfig, sampler, step: int, per_epoch: int, device):
    """(epoch, data loader) going on from optimizer step ``step``: the epoch's order (sampler
    and dataset), skipping the micro-batches already used in that epoch."""
    epoch, offset = divmod(step, per_epoch)
    sampler.set_epoch(epoch, offset * cfg.accum_steps)
    if hasattr(task.dataset, "set_epoch"):
        task.dataset.set_epoch(epoch)
    return epoch, torch.utils.data.DataLoader(
        task.dataset, batch_sampler=sampler, collate_fn=task.collate, num_workers=cfg.num_workers,
        generator=torch.Generator().manual_seed(cfg.seed + epoch),  # keeps the global RNG untouched
        persistent_workers=False, pin_memory=device.type == "cuda")


def train(task: Task, cfg: TrainConfig, out: str | Path, resume: str | Path | None = None,
          progress: bool = True, max_steps: int | None = None) -> dict:
    """Run ``cfg.steps`` optimizer steps (``max_steps`` stops earlier, for tests).

    Returns ``{"step", "loss", "final", "seconds_per_step"}`` (final: the model file on rank 0).
    """
    out = Path(out)
    device = pick_device(cfg.device)
    info = D.init_distributed(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    amp_dtype = pick_precision(cfg.precision, device)
    model = task.model.to(device)
    optimizer = torch.optim.AdamW(task.param_groups(cfg), betas=tuple(cfg.optim.betas))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(cfg.optim.warmup_steps, cfg.steps, cfg.optim.min_lr_ratio))
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    # before the DDP wrap, which then broadcasts rank 0's restored weights
    step = restore_train_state(resume, model=model, optimizer=optimizer, scheduler=scheduler,
                               scaler=scaler) if resume else 0
    if info.rank:  # dropout and masking differ between ranks (the weights are rank 0's, via DDP)
        torch.manual_seed(cfg.seed + 7919 * info.rank + step)
    module = model
    if info.enabled:
        module = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    log = _open_run_folder(out, cfg, step) if info.is_main else None

    sampler = task.batch_sampler(cfg, info)
    per_epoch = len(sampler) // cfg.accum_steps  # optimizer steps per epoch
    if per_epoch < 1:
        raise ValueError(f"the data fill {len(sampler)} micro-batches, fewer than accum_steps={cfg.accum_steps}")
    end = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=end, initial=step, desc=task.name, dynamic_ncols=True)

    model.train()
    last_loss, t_start, steps_done = math.nan, time.perf_counter(), 0
    try:
        while step < end:
            epoch, loader = _loader_from(task, cfg, sampler, step, per_epoch, device)
            micro, acc = 0, 0.0
            for batch in loader:
                last = (micro + 1) % cfg.accum_steps == 0
                sync = module.no_sync() if info.enabled and not last else contextlib.nullcontext()
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                        loss = task.loss(module, batch, device)
                    scaled = loss / cfg.accum_steps
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                micro_loss = float(loss.detach())
                acc = (0.0 if micro % cfg.accum_steps == 0 else acc) + micro_loss
                micro += 1
                if not last:
                    continue
                _optimizer_step(model, optimizer, scaler, cfg.optim.grad_clip)
                lr = scheduler.get_last_lr()[0]
                scheduler.step()
                task.after_step()
                step += 1
                steps_done += 1
                end_of_epoch = step % per_epoch == 0  # leftover micro-batches are not used
                last_loss = D.mean_over_ranks(acc / cfg.accum_steps)
                if info.is_main:
                    if step % cfg.log_every == 0 or step == end:
                        log.write({"step": step, "epoch": epoch, "loss": last_loss, "lr": lr,
                                   **task.log_extra(), "seconds": time.perf_counter() - t_start})
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
                if step % cfg.ckpt_every == 0 or step == end:
                    if info.is_main:
                        save_train_state(out / "checkpoint_last.pt", model=model, optimizer=optimizer,
                                         scheduler=scheduler, scaler=scaler, step=step,
                                         train_config=cfg.to_dict(), model_config=cfg.model_config())
                        plot_curves(out / "metrics.jsonl", out / "curves.png")
                    D.barrier()
                if step >= end or end_of_epoch:
                    break
        seconds = (time.perf_counter() - t_start) / max(1, steps_done)
        final = None
        if info.is_main and step >= cfg.steps:
            final = task.save_final(out)
        D.barrier()
        return {"step": step, "loss": last_loss, "final": final, "seconds_per_step": seconds}
    finally:
        if bar is not None:
            bar.close()
