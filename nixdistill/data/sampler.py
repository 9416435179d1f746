"""Length-bucketed, resumable, DDP-aware batch sampler and the loader factory.

Like jaywalnut310/vits ``DistributedBucketSampler``, batches hold items of similar length so
little compute goes to padding. Differences:

* lengths come from the dataset at the **training** sample rate (the unofficial Nix-TTS port
  bucketed at 44.1 kHz while training at 22.05 kHz and silently lost 2.4% of the clips);
* no item is dropped: buckets are length quantiles, not fixed boundaries;
* the order is a pure function of ``(seed, epoch)``, and ``start_batch`` skips the batches a
  resumed run has already consumed.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch

from .dataset import collate
from .readers import DataError

__all__ = ["BucketSampler", "make_loader"]

DEFAULT_BUCKETS = 8


class BucketSampler(torch.utils.data.Sampler[list[int]]):
    """Batch sampler over length buckets.

    Args:
        lengths: per-item length (frames at the training rate, or tokens), length N.
        batch_size: items per batch per process.
        n_buckets: number of length-quantile buckets (fewer when N is small).
        shuffle: shuffle items within buckets and the batch order (else sorted, fixed).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        num_replicas / rank: DDP world size and this process's rank; each rank gets a
            disjoint, equally long list of batches (the remainder batches are left out for
            that epoch when the count is not divisible).
        drop_last: drop the incomplete last batch of each bucket.

    Raises:
        DataError: for an empty dataset. ValueError: ``batch_size < 1`` or ``rank`` out of range.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, n_buckets: int = DEFAULT_BUCKETS,
                 shuffle: bool = True, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 drop_last: bool = False):
        if len(lengths) == 0:
            raise DataError("BucketSampler: the dataset is empty")
        if batch_size < 1:
            raise ValueError(f"BucketSampler: batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"BucketSampler: rank {rank} not in [0, {num_replicas})")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0
        order = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], i))
        n_buckets = max(1, min(n_buckets, math.ceil(len(order) / batch_size)))
        size = math.ceil(len(order) / n_buckets)
        self.buckets: list[list[int]] = [order[i:i + size] for i in range(0, len(order), size)]

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (call before each epoch, as with DDP samplers)."""
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        batches: list[list[int]] = []
        for bucket in self.buckets:
            items = bucket
            if self.shuffle:
                items = [bucket[i] for i in torch.randperm(len(bucket), generator=g).tolist()]
            for i in range(0, len(items), self.batch_size):
                batch = items[i:i + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        per_rank = len(batches) // self.num_replicas
        return batches[self.rank:per_rank * self.num_replicas:self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()[self.start_batch:]
        self.start_batch = 0  # only the resumed epoch skips
        return iter(batches)

    def __len__(self) -> int:
        return max(0, len(self._all_batches()) - self.start_batch)


def make_loader(dataset, batch_size: int, seed: int = 0, shuffle: bool = True,
                num_workers: int = 0, ddp: bool = False, n_buckets: int = DEFAULT_BUCKETS,
                drop_last: bool = False, collate_fn=collate) -> torch.utils.data.DataLoader:
    """DataLoader with a :class:`BucketSampler` over ``dataset.lengths`` and :func:`collate`.

    Args:
        dataset: an ``AudioTextDataset`` or ``TextOnlyDataset`` (anything with ``lengths``).
        batch_size: items per batch per process.
        seed: sampler seed. shuffle: shuffle per epoch.
        num_workers: loader workers (kept alive across epochs so the text-id cache persists).
        ddp: shard batches by ``torch.distributed`` world size and rank.
        collate_fn: turns a list of items into a batch (default :func:`collate`).
    Returns:
        DataLoader yielding :class:`~nixdistill.data.dataset.Batch`; its ``batch_sampler`` is
        the :class:`BucketSampler` (call ``set_epoch``, set ``start_batch`` to resume).
    """
    num_replicas, rank = 1, 0
    if ddp and torch.distributed.is_available() and torch.distributed.is_initialized():
        num_replicas, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
    sampler = BucketSampler(dataset.lengths, batch_size, n_buckets=n_buckets, shuffle=shuffle,
                            seed=seed, num_replicas=num_replicas, rank=rank, drop_last=drop_last)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate_fn, num_workers=num_workers,
        persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(),
    )
