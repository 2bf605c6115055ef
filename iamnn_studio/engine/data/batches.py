"""Mini-batches straight from in-memory tensors: no DataLoader, no workers, no per-sample Python."""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor

from .bundle import ImageTensors


def iterate_batches(
    data: ImageTensors,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    indices: Tensor | Sequence[int] | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (images uint8 [B, C, H, W], labels int64 [B]) on the device ``data`` lives on.

    ``indices`` restricts and orders the samples (a ``DistributedSampler``'s share of an epoch);
    ``shuffle`` permutes whatever is iterated, using ``generator`` for reproducible epochs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = data.labels.device
    order: Tensor | None = None
    if indices is not None:
        order = torch.as_tensor(indices, dtype=torch.long)
    if shuffle:
        count = len(data) if order is None else len(order)
        source = generator.device if generator is not None else "cpu"
        perm = torch.randperm(count, generator=generator, device=source).cpu()
        order = perm if order is None else order[perm]
    if order is not None:
        order = order.to(device)

    total = len(data) if order is None else len(order)
    stop = total - total % batch_size if drop_last else total
    for start in range(0, stop, batch_size):
        if order is None:  # plain slices are views: no copy at all
            yield data.images[start : start + batch_size], data.labels[start : start + batch_size]
        else:
            index = order[start : start + batch_size]
            yield data.images.index_select(0, index), data.labels.index_select(0, index)
