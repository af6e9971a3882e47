"""Batch samplers that are deterministic per (seed, epoch), split across ranks, and resumable.

Each sampler builds the epoch's list of *global* batches (``batch_size * world_size``
samples) from the seed and epoch alone, so every rank builds the same list and takes
its own contiguous slice; ``set_epoch(epoch, start=k)`` skips the first k batches (a
resumed run continues inside its epoch exactly where it stopped).

* ``OrganBatchSampler``: each global batch is made of groups of ``group_size`` crops of
  the same organ taken from different cases, ``organs_per_batch * world_size`` groups of
  distinct organs where enough organs remain. Same-organ groups give the contrastive loss
  hard negatives (the same organ with other findings); several organs per batch keep
  organ identity in the picture.
* ``RandomBatchSampler``: plain shuffling through ``torch.utils.data.DistributedSampler``.
"""
from __future__ import annotations

import numpy as np
import torch


class _Resumable:
    def __init__(self, batch_size: int, seed: int, rank: int, world_size: int):
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0):
        self.epoch, self.start = epoch, start

    def global_batches(self) -> list[list[int]]:
        raise NotImplementedError

    def __len__(self):
        """Batches in a full epoch (for this rank; the same on every rank)."""
        return len(self.global_batches())

    def __iter__(self):
        b = self.batch_size
        for batch in self.global_batches()[self.start:]:
            yield batch[self.rank * b:(self.rank + 1) * b]


class OrganBatchSampler(_Resumable):
    def __init__(self, organs: list[str], batch_size: int, organs_per_batch: int = 4, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        super().__init__(batch_size, seed, rank, world_size)
        if batch_size % organs_per_batch:
            raise ValueError("batch_size must be a multiple of organs_per_batch")
        self.group = batch_size // organs_per_batch
        self.n_groups = organs_per_batch * world_size
        self.by_organ: dict[str, list[int]] = {}
        for i, organ in enumerate(organs):
            self.by_organ.setdefault(organ, []).append(i)
        if len(organs) < batch_size * world_size:
            raise ValueError(f"{len(organs)} samples cannot fill one batch of {batch_size * world_size}")
        self._cache: tuple[int, list] | None = None

    def global_batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        names = sorted(self.by_organ)
        queues = {o: list(rng.permutation(self.by_organ[o])) for o in names}
        total, size = sum(len(q) for q in queues.values()), self.batch_size * self.world_size
        batches = []
        while total >= size:
            left = np.array([len(queues[o]) for o in names], dtype=float)
            k = min(self.n_groups, int((left > 0).sum()))
            chosen = rng.choice(len(names), size=k, replace=False, p=left / left.sum())
            groups = []
            for c in chosen:
                q = queues[names[c]]
                groups.append(q[:self.group])
                del q[:self.group]
            batch = [int(i) for g in groups for i in g]
            while len(batch) < size:  # organs ran short: fill from the largest queues
                o = max(names, key=lambda n: len(queues[n]))
                need = size - len(batch)
                batch += [int(i) for i in queues[o][:need]]
                del queues[o][:need]
            total -= size
            batches.append(batch)
        self._cache = (self.epoch, batches)
        return batches


class RandomBatchSampler(_Resumable):
    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(batch_size, seed, rank, world_size)
        self.n = n

    def global_batches(self) -> list[list[int]]:
        # one DistributedSampler per rank, interleaved so that every rank sees the global batch
        per_rank = []
        for r in range(self.world_size):
            s = torch.utils.data.DistributedSampler(range(self.n), num_replicas=self.world_size, rank=r,
                                                    shuffle=True, seed=self.seed, drop_last=True)
            s.set_epoch(self.epoch)
            per_rank.append(list(s))
        b = self.batch_size
        n_batches = len(per_rank[0]) // b
        return [[i for r in range(self.world_size) for i in per_rank[r][k * b:(k + 1) * b]]
                for k in range(n_batches)]
