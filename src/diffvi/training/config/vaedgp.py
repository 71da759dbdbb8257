"""The VAE-DGP family's config: :class:`VAEDGPConfig`."""

import math
from dataclasses import dataclass
from typing import Any

import torch

from diffvi.data.registry import available_datasets
from diffvi.training.config.base import (
    DATA,
    MODEL,
    OPTIM,
    ImageDataConfig,
    RunConfig,
    batch_size_option,
    dataset_option,
    lr_option,
    option,
)

KERNELS = ("rbf", "linear")
# Latent widths (bottom, next to the data, first) that ``train vaedgp --layers L`` gives.
DEFAULT_LATENT_DIMS = {1: [5], 2: [10, 5], 3: [20, 10, 5]}


@dataclass
class VAEDGPConfig(RunConfig, ImageDataConfig):
    """Everything that defines a VAE-DGP training run (JSON-serialisable).

    ``latent_dims`` are the latent widths ``Q_1 … Q_L`` bottom first (one GP layer each);
    ``num_inducing`` inducing points per layer; ``recognition_hidden`` the hidden widths of each
    recognition MLP; ``recognition=False`` trains a Bayesian GP-LVM (free q(x_n) per training
    point; with one layer, Titsias & Lawrence 2010). The first ``train_size`` training images
    are used (all when ``None``); validation uses the first ``val_size`` held-out images with
    ``val_missing`` of their pixels hidden (imputed after ``refine_steps`` of test-time
    inference). Mini-batches of ``batch_size``; q(U) moves by natural-gradient steps of size
    ``natural_step`` (0: Adam at ``lr`` instead), the GP hyperparameters, inducing inputs and
    a GP-LVM's free q(X) by Adam at ``lr``, the recognition MLPs by Adam at
    ``recognition_lr``; ``double`` trains in float64 (the K_zz solves lose precision in
    float32). ``data_dim`` and ``num_points`` (training points) are set from the data, and so
    are a table's ``features`` (its feature columns and the training rows' mean and std,
    :meth:`diffvi.data.tables.TableFeatures.to_dict`; ``None`` for images), with which the
    model reads new rows.

    The data is a registered ``dataset`` or the user's own, ``data``
    (:class:`ImageDataConfig`): images (a folder or an array file, flattened to ``y [N, C·H·W]``
    in [0, 1]; ``size`` and ``crop="center"`` apply) or a table (CSV/TSV, Parquet, 2-D
    ``.npy``, ``.h5ad``: rows standardised by the training rows' mean and std, as
    :mod:`diffvi.training.families.tables` does), of which ``val_fraction`` is held out by
    ``seed``; ``labels`` (a labels file, or the table's label column) colour the latent plot.
    ``train_size``, ``val_size`` and ``val_missing`` apply to both sources.
    """

    dataset: str | None = dataset_option("frey-faces")
    latent_dims: list[int] = option(
        [5], "Latent widths bottom first, one GP layer each, e.g. 10,5.", panel=MODEL
    )
    num_inducing: int = option(50, "Inducing points per layer.", panel=MODEL, min=1)
    recognition_hidden: list[int] = option(
        [200], "Hidden widths of each recognition (encoder) MLP.", panel=MODEL
    )
    recognition: bool = option(
        True,
        "Amortise q(X) with MLPs (VAE-DGP); --no-recognition: Bayesian GP-LVM.",
        panel=MODEL,
    )
    kernel: str = option("rbf", "GP kernel.", panel=MODEL, choices=KERNELS)
    train_size: int | None = option(
        None, "Use the first N training images or rows (default: all).", panel=DATA, min=2
    )
    batch_size: int = batch_size_option(100)
    lr: float = lr_option(1e-2)
    recognition_lr: float = option(3e-4, "Learning rate of the recognition MLPs.", panel=OPTIM)
    natural_step: float = option(
        0.1, "Natural-gradient step on q(U); 0 = Adam.", panel=OPTIM, min=0, max=1
    )
    refine_steps: int = 200
    max_steps: int = 3000
    val_every_n_steps: int | None = 500
    val_size: int = 200
    val_missing: float = 0.5
    double: bool = True
    data_dim: int | None = None
    num_points: int | None = None
    features: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.check_run()
        self.check_data()
        if self.data is not None and self.crop != "center":
            raise ValueError(
                f"crop {self.crop!r}: a VAE-DGP holds its training images in memory, cut once; "
                "use crop 'center'"
            )
        if self.dataset is not None and self.dataset not in available_datasets():
            raise ValueError(
                f"unknown dataset {self.dataset!r}; valid: {sorted(available_datasets())}"
            )
        self.latent_dims = list(self.latent_dims)
        if not self.latent_dims or any(int(q) != q or q < 1 for q in self.latent_dims):
            raise ValueError(f"latent_dims must be one or more ints >= 1, got {self.latent_dims}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {list(KERNELS)}, got {self.kernel!r}")
        for name in ("num_inducing", "batch_size", "val_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_size is not None and self.train_size < 2:
            raise ValueError(f"train_size must be >= 2 (or None for all), got {self.train_size}")
        if not 0 <= self.natural_step <= 1:
            raise ValueError(f"natural_step must be in [0, 1], got {self.natural_step}")
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {self.refine_steps}")
        if not 0 < self.val_missing < 1:
            raise ValueError(f"val_missing must be in (0, 1), got {self.val_missing}")
        for name in ("lr", "recognition_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.features is not None:
            from diffvi.data.tables import TableFeatures

            TableFeatures.from_dict(self.features)  # a ValueError if malformed

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.double else torch.float32
