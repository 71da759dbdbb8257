"""Batches for training: whole index batches drawn at once, sharded across DDP ranks.

Indexing an in-memory dataset with a batch of indices avoids per-item collation, which
dominates at IWAE's batch size of 20. The permutation of each epoch depends only on
``(seed, epoch)``, so every rank agrees on it, and the place inside the epoch is saved in every
checkpoint (:class:`ResumableLoader`): a run resumed at any step continues with the very batches
an uninterrupted run would have drawn.

Semi-supervised runs (``num_labelled > 0``) see every training image without its label except
those of a fixed balanced subset (:func:`labelled_subset`), and
every batch gets ``labelled_batch`` extra items drawn from that subset
(:class:`LabelledBatchSampler`), as in M2 (Kingma et al. 2014).

The user's own images (:func:`~diffvi.data.image_folders.open_image_splits`) train through the
same :class:`ImageDataModule`, given ``(train, held_out)`` data sets instead of a name; a data
set whose items depend on the epoch (random crops) has ``set_epoch``, which the training loader
calls before the first batch of every epoch, a resumed one included.

:class:`FeatureDataModule` trains on an in-memory feature matrix instead of a registered data set
(e.g. the principal components of genotypes). :class:`FlatDataModule` serves models of rows
``y [N, D]`` (VAE-DGP, GP-LVM): flattened images (:class:`FlatImageDataModule`), or any rows.
"""

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    Sampler,
    SequentialSampler,
    Subset,
    TensorDataset,
)

from diffvi.data import dataset_splits, load_dataset
from diffvi.data.paired import PairedData, load_paired, paired_task


def labelled_subset(labels: Tensor, num_labelled: int, seed: int = 0) -> Tensor:
    """Exactly ``num_labelled`` distinct indices into ``labels``, balanced over the classes.

    Args:
        labels: int ``[N]`` class labels ``0 … C−1`` (every class present).
        num_labelled: how many to keep, a multiple of C (``num_labelled / C`` per class).
        seed: the choice is a function of ``(labels, num_labelled, seed)`` only.

    Returns:
        int64 ``[num_labelled]``, sorted ascending.
    """
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.is_floating_point():
        got = f"shape {list(labels.shape)}, {labels.dtype}" if isinstance(labels, Tensor) else ""
        raise ValueError(f"labels must be an integer tensor [N], got {got or type(labels)}")
    if labels.numel() == 0 or int(labels.min()) < 0:
        raise ValueError(
            "labels must be non-empty and >= 0 (an unlabelled data set cannot be used)"
        )
    labels = labels.cpu().long()
    num_classes = int(labels.max()) + 1
    if num_labelled < 1 or num_labelled % num_classes:
        raise ValueError(
            f"num_labelled must be a positive multiple of the {num_classes} classes (an equal "
            f"number per class), got {num_labelled}"
        )
    per_class = num_labelled // num_classes
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).squeeze(1)
        if members.numel() < per_class:
            raise ValueError(
                f"class {c} has {members.numel()} items, fewer than the {per_class} per class "
                f"that num_labelled={num_labelled} needs"
            )
        pick = torch.randperm(members.numel(), generator=generator)[:per_class]
        chosen.append(members[pick])
    return torch.cat(chosen).sort().values


class ResumableBatchSampler(Sampler[torch.Tensor]):
    """A batch sampler whose place inside the epoch is part of a checkpoint.

    Subclasses give the batches of epoch ``self.epoch`` (:meth:`epoch_batches`, a function of
    the seed and the epoch only); this class counts those handed out, and after
    :meth:`load_state_dict` the next iteration over the saved epoch starts where the saved one
    stopped, so a run resumed at any step trains on exactly the batches of an uninterrupted one.
    """

    epoch: int
    position: int = 0  # batches of this epoch handed out so far
    _resume_at: dict[str, int] | None = None
    # Called with the epoch before its first batch (index_batch_loader: the data set's
    # set_epoch, for items that depend on the epoch).
    on_epoch: Callable[[int], None] | None = None

    def epoch_batches(self) -> list[torch.Tensor]:
        """The index batches of epoch ``self.epoch``, in order."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[torch.Tensor]:
        # A generator: the order is drawn at the first next(), after Lightning's set_epoch
        # (on resume Lightning calls iter() before set_epoch).
        resume, self._resume_at = self._resume_at, None
        start = resume["position"] if resume and resume["epoch"] == self.epoch else 0
        self.position = start
        if self.on_epoch is not None:
            self.on_epoch(self.epoch)
        for batch in self.epoch_batches()[start:]:
            self.position += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position"}``: the epoch and how many of its batches were handed out."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Start the next iteration over ``state["epoch"]`` after its ``position`` batches."""
        self._resume_at = {"epoch": int(state["epoch"]), "position": int(state["position"])}


class IndexBatchSampler(ResumableBatchSampler):
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

    def _rank_indices(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
            order = torch.randperm(self.num_items, generator=generator)
        else:
            order = torch.arange(self.num_items)
        per_rank = self.num_items // self.world_size  # equal shares keep DDP ranks in step
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    def epoch_batches(self) -> list[torch.Tensor]:
        batches = list(self._rank_indices().split(self.batch_size))
        if self.drop_last and len(batches) and len(batches[-1]) < self.batch_size:
            batches = batches[:-1]
        return batches

    def __len__(self) -> int:
        per_rank = self.num_items // self.world_size
        full, rest = divmod(per_rank, self.batch_size)
        return full + (rest > 0 and not self.drop_last)


class LabelledBatchSampler(ResumableBatchSampler):
    """The batches of an :class:`IndexBatchSampler` over all training items, each followed by
    ``labelled_batch`` indices drawn from ``labelled`` (int64 ``[N_l]``).

    The labelled indices of an epoch are the concatenation of permutations of ``labelled``
    (enough of them to fill every batch), a function of ``(seed, epoch)`` only, so DDP ranks and
    resumed runs agree. Each yielded batch is ``[b + labelled_batch]``: the base batch first.
    """

    def __init__(
        self, base: IndexBatchSampler, labelled: torch.Tensor, labelled_batch: int
    ) -> None:
        labelled = torch.as_tensor(labelled, dtype=torch.long)
        if labelled.ndim != 1 or labelled.numel() < 1:
            raise ValueError(
                f"labelled must be a non-empty index tensor [N_l], got shape {list(labelled.shape)}"
            )
        if labelled_batch < 1:
            raise ValueError(f"labelled_batch must be >= 1, got {labelled_batch}")
        self.base = base
        self.labelled = labelled
        self.labelled_batch = labelled_batch

    @property
    def epoch(self) -> int:
        return self.base.epoch

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.base.set_epoch(epoch)

    def _labelled_stream(self, num_batches: int) -> torch.Tensor:
        base = self.base
        # Distinct from the base sampler's stream, and from every rank's (DDP ranks draw their
        # own labelled items, as they see their own share of the unlabelled ones).
        seed = base.seed + 1_000_003 * base.epoch + 7_919 * (base.rank + 1) + 104_729
        generator = torch.Generator().manual_seed(seed)
        needed = num_batches * self.labelled_batch
        if needed == 0:
            return self.labelled[:0]
        rounds = -(-needed // self.labelled.numel())
        n = self.labelled.numel()
        perms = [self.labelled[torch.randperm(n, generator=generator)] for _ in range(rounds)]
        return torch.cat(perms)[:needed]

    def epoch_batches(self) -> list[torch.Tensor]:
        batches = self.base.epoch_batches()
        stream = self._labelled_stream(len(batches)).split(self.labelled_batch)
        return [torch.cat((b, extra)) for b, extra in zip(batches, stream, strict=True)]

    def __len__(self) -> int:
        return len(self.base)


class PartiallyLabelledDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A view of a labelled data set whose labels are ``-1`` except at ``labelled`` indices.

    ``view[idx] -> (x, y)`` as the wrapped data set returns it (whole index batches), with
    ``y`` the true label where ``idx`` is in ``labelled`` and ``-1`` elsewhere.
    """

    def __init__(self, dataset: Dataset, labelled: torch.Tensor) -> None:
        labels = getattr(dataset, "labels", None)
        if labels is None:
            raise ValueError("a partially labelled view needs a data set with labels")
        self.dataset = dataset
        self.labelled = torch.as_tensor(labelled, dtype=torch.long)
        visible = torch.full_like(labels, -1)
        visible[self.labelled] = labels[self.labelled.to(labels.device)]
        self.labels = visible
        self.num_classes = getattr(dataset, "num_classes", None)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.dataset.image_shape)

    def __getitem__(self, index):
        x, _ = self.dataset[index]
        return x, self.labels[torch.as_tensor(index, device=self.labels.device)]

    def set_epoch(self, epoch: int) -> None:
        """Passed on to the wrapped data set (where its items depend on the epoch)."""
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)


def rank_batches(module: L.LightningDataModule, num_items: int) -> IndexBatchSampler:
    """The shuffled full batches of ``num_items`` training items that this DDP rank draws each
    epoch (its equal share; one rank without a trainer), with ``module.batch_size`` and
    ``module.seed``."""
    rank, world = 0, 1
    if module.trainer is not None:
        rank, world = module.trainer.global_rank, module.trainer.world_size
    if num_items // world < module.batch_size:
        raise ValueError(
            f"batch size {module.batch_size} is larger than the {num_items} training items"
            + (f" ({num_items // world} per each of {world} processes)" if world > 1 else "")
            + ": an epoch would have no full batch; lower --batch-size"
        )
    return IndexBatchSampler(
        num_items, module.batch_size, True, module.seed, rank, world, drop_last=True
    )


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`ResumableBatchSampler` whose ``state_dict`` (the epoch and
    the batches handed out in it) Lightning stores in every checkpoint and restores on resume."""

    sampler: ResumableBatchSampler

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)


def index_batch_loader(dataset: Dataset, sampler: ResumableBatchSampler) -> ResumableLoader:
    """A DataLoader that hands whole index batches to ``dataset[indices]``, resumable mid-epoch.

    It has a generator of its own: a DataLoader otherwise draws a seed from the global RNG
    each time it is iterated, which would shift the training noise of a resumed run. A data
    set with ``set_epoch`` (random crops) is told the epoch before its first batch.
    """
    sampler.on_epoch = getattr(dataset, "set_epoch", None)
    return ResumableLoader(dataset, sampler=sampler, batch_size=None, generator=torch.Generator())


def held_out_loader(dataset: Dataset, batch_size: int) -> DataLoader:
    """Consecutive index batches ``dataset[[i, …, i + batch_size − 1]]`` over the whole data
    set, in order (for data sets read batch by batch, such as the user's own files)."""
    batches = BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last=False)
    return DataLoader(dataset, sampler=batches, batch_size=None)


class ImageDataModule(L.LightningDataModule):
    """Train and validation loaders for a registered data set, or for data sets of your own.

    ``dataset`` is a registered name, or ``(train, held_out)`` data sets that index whole
    batches (e.g. :func:`~diffvi.data.image_folders.open_image_splits` of a folder).
    Validation uses the first ``val_size`` items of the held-out split (``valid`` where the data
    set has one, else ``test``; ``held_out``), with their true labels; each DDP rank trains on
    its own shard of every epoch's order.

    ``num_labelled > 0`` (semi-supervised): the training labels are hidden (``-1``) except at
    ``labelled_subset(labels, num_labelled, seed)`` (exactly ``num_labelled`` images, balanced
    over classes), and every batch of ``batch_size`` images gets ``labelled_batch`` more from
    that subset (:class:`LabelledBatchSampler`).
    """

    def __init__(
        self,
        dataset: str | tuple[Dataset, Dataset],
        batch_size: int,
        seed: int = 0,
        val_size: int = 1000,
        num_labelled: int = 0,
        labelled_batch: int = 100,
    ) -> None:
        super().__init__()
        if num_labelled < 0:
            raise ValueError(f"num_labelled must be >= 0, got {num_labelled}")
        own = not isinstance(dataset, str)
        self.dataset_name = getattr(dataset[0], "name", "data") if own else dataset
        self.batch_size = batch_size
        self.seed = seed
        self.val_size = val_size
        self.num_labelled = num_labelled
        self.labelled_batch = labelled_batch
        self.train_set = dataset[0] if own else load_dataset(dataset, "train")
        self.labelled: torch.Tensor | None = None
        if num_labelled > 0:
            labels = getattr(self.train_set, "labels", None)
            if labels is None:
                raise ValueError(
                    f"semi-supervised training (num_labelled={num_labelled}) needs a labelled "
                    f"data set; {self.dataset_name!r} has no labels"
                )
            self.labelled = labelled_subset(labels, num_labelled, seed)
            self.train_set = PartiallyLabelledDataset(self.train_set, self.labelled)
        if own:
            held = dataset[1]
            self.val_set: Dataset = held if len(held) <= val_size else Subset(held, range(val_size))
            return
        held_out = "valid" if "valid" in dataset_splits(dataset) else "test"
        full_val = load_dataset(dataset, held_out)
        keep = torch.arange(min(val_size, len(full_val)))
        self.val_set = TensorDataset(*full_val[keep])

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.train_set.image_shape)

    @property
    def num_classes(self) -> int | None:
        """Number of classes of the training labels (``None`` for unlabelled data)."""
        return getattr(self.train_set, "num_classes", None)

    def train_dataloader(self) -> DataLoader:
        sampler = rank_batches(self, len(self.train_set))
        if self.labelled is not None:
            sampler = LabelledBatchSampler(sampler, self.labelled, self.labelled_batch)
        return index_batch_loader(self.train_set, sampler)

    def val_dataloader(self) -> DataLoader:
        if isinstance(self.val_set, TensorDataset):
            return DataLoader(self.val_set, batch_size=500, shuffle=False)
        return held_out_loader(self.val_set, 500)


class FeatureDataModule(L.LightningDataModule):
    """Train and validation loaders over an in-memory feature matrix ``features [N, D]``.

    Every row trains (an embedding is fitted to the whole data set, as DDVI does for genotypes);
    validation uses ``val_size`` rows chosen by ``seed``, or the held-out rows
    ``val_features [M, D]`` (with ``val_labels [M]``) when given. ``labels [N]`` (int64, ``-1``
    for unknown) only travel with the batches; ``label_names[c]`` names class ``c`` where the
    labels were names (a table's text label column), for plots. ``event_shape`` is ``(D,)``.
    """

    def __init__(
        self,
        features: torch.Tensor,
        batch_size: int,
        seed: int = 0,
        val_size: int = 500,
        labels: torch.Tensor | None = None,
        val_features: torch.Tensor | None = None,
        val_labels: torch.Tensor | None = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.label_names = None if label_names is None else [str(n) for n in label_names]
        if features.ndim != 2 or not features.is_floating_point() or len(features) < 2:
            raise ValueError(
                f"features must be a float tensor [N >= 2, D], got {features.dtype} "
                f"{tuple(features.shape)}"
            )
        if not torch.isfinite(features).all():
            raise ValueError("features contain NaN or Inf")
        if labels is None:
            labels = torch.full((len(features),), -1, dtype=torch.long)
        if labels.shape != (len(features),):
            raise ValueError(f"labels must have shape [{len(features)}], got {tuple(labels.shape)}")
        self.batch_size, self.seed = min(batch_size, len(features)), seed
        self.train_set = TensorDataset(features.float(), labels.long())
        if val_features is not None:
            if val_features.ndim != 2 or val_features.shape[1:] != features.shape[1:]:
                raise ValueError(
                    f"val_features must be [M, {features.shape[1]}], got "
                    f"{tuple(val_features.shape)}"
                )
            if val_labels is None:
                val_labels = torch.full((len(val_features),), -1, dtype=torch.long)
            self.val_set = TensorDataset(val_features.float(), val_labels.long())
            return
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(features), generator=generator)[: max(1, val_size)]
        self.val_set = TensorDataset(features[keep].float(), labels[keep].long())

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.train_set.tensors[0].shape[1],)

    def train_dataloader(self) -> DataLoader:
        return index_batch_loader(self.train_set, rank_batches(self, len(self.train_set)))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=500, shuffle=False)


# Validation batch of the paired tasks (the CVDM family counts its sampled pairs by it).
PAIRED_VAL_BATCH = 64


class PairedDataModule(L.LightningDataModule):
    """Train and validation loaders of a paired task: ``(condition [B, C_x, H, W], target
    [B, C_y, H, W])`` batches, whole index batches drawn by
    :class:`IndexBatchSampler` (sharded across DDP ranks, reproducible
    order on resume)."""

    def __init__(
        self,
        task: str,
        batch_size: int,
        seed: int = 0,
        val_size: int = 64,
        train_size: int | None = None,
        data_seed: int = 0,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        options = dict(options or {})
        self.batch_size, self.seed = batch_size, seed
        self.train_data: PairedData = load_paired(task, "train", train_size, data_seed, **options)
        held_out = "valid" if "valid" in paired_task(task).splits else "test"
        self.val_data: PairedData = load_paired(task, held_out, val_size, data_seed, **options)
        if len(self.train_data) < batch_size:
            raise ValueError(
                f"{task} has {len(self.train_data)} training pairs, fewer than one batch "
                f"({batch_size})"
            )
        self.train_set = TensorDataset(self.train_data.condition, self.train_data.target)
        self.val_set = TensorDataset(self.val_data.condition, self.val_data.target)

    def train_dataloader(self) -> DataLoader:
        return index_batch_loader(self.train_set, rank_batches(self, len(self.train_set)))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=PAIRED_VAL_BATCH, shuffle=False)


def flat_images(dataset: str, split: str, count: int | None = None) -> tuple[Tensor, Tensor]:
    """The first ``count`` images of a registered data set's ``split`` as ``y: [N, D]`` (float,
    [0, 1]) and their labels ``[N]`` (``-1`` where the data set has none)."""
    data = load_dataset(dataset, split)
    images = data.images[:count].flatten(1).float()
    labels = getattr(data, "labels", None)
    labels = torch.full((len(images),), -1) if labels is None else labels[:count].long()
    return images, labels


def observed_mask(shape: torch.Size | tuple[int, ...], missing: float, seed: int) -> Tensor:
    """Bool mask ``shape``, True where observed, hiding a ``missing`` fraction per entry."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) >= missing


class FlatDataModule(L.LightningDataModule):
    """Rows ``y [N, D]`` for models of ``y`` (VAE-DGP, GP-LVM): training batches ``(y [B, D],
    index [B])`` (index: row numbers, for a GP-LVM's free q(x_n)) of ``train_y``, and
    validation batches ``(y, mask)`` of ``val_y`` with a ``val_missing`` fraction of its entries
    hidden (mask False, drawn from ``seed + 1``), all in ``dtype``. ``train_labels [N]`` (int64,
    ``-1`` where unknown) colour a latent plot, its legend naming class ``c`` ``label_names[c]``
    where the labels were names; they do not train."""

    def __init__(
        self,
        train_y: Tensor,
        val_y: Tensor,
        batch_size: int,
        seed: int = 0,
        val_missing: float = 0.5,
        dtype: torch.dtype = torch.float32,
        train_labels: Tensor | None = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.label_names = None if label_names is None else [str(n) for n in label_names]
        if train_y.ndim != 2 or val_y.ndim != 2 or train_y.shape[1] != val_y.shape[1]:
            raise ValueError(
                f"train_y and val_y must be [N, D] and [M, D], got {list(train_y.shape)} and "
                f"{list(val_y.shape)}"
            )
        if train_labels is None:
            train_labels = torch.full((len(train_y),), -1, dtype=torch.long)
        self.train_y, self.train_labels = train_y.to(dtype), train_labels.long()
        mask = observed_mask(val_y.shape, val_missing, seed + 1)
        self.val_set = TensorDataset(val_y.to(dtype), mask)
        self.batch_size, self.seed = min(batch_size, len(train_y)), seed

    @property
    def num_train(self) -> int:
        return len(self.train_y)

    def train_dataloader(self) -> DataLoader:
        dataset = TensorDataset(self.train_y, torch.arange(self.num_train))
        return index_batch_loader(dataset, rank_batches(self, self.num_train))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=500, shuffle=False)


class FlatImageDataModule(FlatDataModule):
    """A :class:`FlatDataModule` of a registered data set's flattened images: the first
    ``train_size`` training images and the first ``val_size`` held-out ones (``valid`` where
    the data set has one, else ``test``)."""

    def __init__(
        self,
        dataset: str,
        batch_size: int,
        seed: int = 0,
        train_size: int | None = None,
        val_size: int = 200,
        val_missing: float = 0.5,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        train, labels = flat_images(dataset, "train", train_size)
        held_out = "valid" if "valid" in dataset_splits(dataset) else "test"
        val, _ = flat_images(dataset, held_out, val_size)
        super().__init__(train, val, batch_size, seed, val_missing, dtype, labels)
