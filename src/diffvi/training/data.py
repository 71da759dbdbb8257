"""Batches for training: whole index batches drawn at once, sharded across DDP ranks.

Indexing an in-memory dataset with a batch of indices avoids per-item collation, which
dominates at IWAE's batch size of 20. The permutation of each epoch depends only on
``(seed, epoch)``, so every rank agrees on it, and a resumed run replays the same order.
"""

from collections.abc import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from diffvi.data import dataset_splits, load_dataset


class IndexBatchSampler(Sampler[torch.Tensor]):
    """Yields ``LongTensor`` index batches ``[batch_size]`` for rank ``rank`` of ``world_size``."""

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if num_items < 1 or batch_size < 1:
            raise ValueError(f"need num_items, batch_size >= 1; got {num_items}, {batch_size}")
        self.num_items, self.batch_size = num_items, batch_size
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def _rank_indices(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
            order = torch.randperm(self.num_items, generator=generator)
        else:
            order = torch.arange(self.num_items)
        per_rank = self.num_items // self.world_size  # equal shares keep DDP ranks in step
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __iter__(self) -> Iterator[torch.Tensor]:
        # A generator: the order is drawn at the first next(), after Lightning's set_epoch
        # (on resume Lightning calls iter() before set_epoch).
        batches = self._rank_indices().split(self.batch_size)
        if self.drop_last and len(batches) and len(batches[-1]) < self.batch_size:
            batches = batches[:-1]
        yield from batches

    def __len__(self) -> int:
        per_rank = self.num_items // self.world_size
        full, rest = divmod(per_rank, self.batch_size)
        return full + (rest > 0 and not self.drop_last)


def index_batch_loader(dataset: Dataset, sampler: IndexBatchSampler) -> DataLoader:
    """A DataLoader that hands whole index batches to ``dataset[indices]``.

    It has a generator of its own: a DataLoader otherwise draws a seed from the global RNG
    each time it is iterated, which would shift the training noise of a resumed run.
    """
    return DataLoader(dataset, sampler=sampler, batch_size=None, generator=torch.Generator())


class ImageDataModule(L.LightningDataModule):
    """Train and validation loaders for a registered data set.

    Validation uses the first ``val_size`` items of the held-out split (``valid`` where the data
    set has one, else ``test``); each DDP rank trains on its own shard of every epoch's order.
    """

    def __init__(self, dataset: str, batch_size: int, seed: int = 0, val_size: int = 1000) -> None:
        super().__init__()
        self.dataset_name = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.val_size = val_size
        self.train_set = load_dataset(dataset, "train")
        held_out = "valid" if "valid" in dataset_splits(dataset) else "test"
        full_val = load_dataset(dataset, held_out)
        keep = torch.arange(min(val_size, len(full_val)))
        self.val_set = TensorDataset(*full_val[keep])

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.train_set.image_shape)

    def train_dataloader(self) -> DataLoader:
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        sampler = IndexBatchSampler(
            len(self.train_set), self.batch_size, True, self.seed, rank, world, drop_last=True
        )
        return index_batch_loader(self.train_set, sampler)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=500, shuffle=False)
