"""Training VAE-DGPs and Bayesian GP-LVMs (:class:`~diffvi.models.dgp.VAEDGP`): run
configuration, data, Lightning module, fit entry point, export, loading and the latent plot.

Images are flattened to ``y: [N, D]`` with pixel values in [0, 1] and modelled as real
(Gaussian noise per GP layer), as in the paper's Frey faces and MNIST experiments. Training
maximises the minibatch estimate ``N · mean(bound(y_batch))`` of the bound (logged per point):
each step first moves every q(U) by a natural-gradient step of size ``natural_step`` (SVI,
Hensman et al. 2013), then Adam updates the kernels, noise, inducing inputs and the recognition
MLPs (or a GP-LVM's free q(X)). Plain Adam on the whitened q(U) means is unstable here: a step
of ``lr`` on each of the M·D means moves every prediction by far more than the noise level.
Validation logs the held-out bound per point (amortised models only: a GP-LVM has no q for new
points without fitting one). At the end, the RMSE of imputing a fixed random ``val_missing``
fraction of each held-out image's pixels is measured with q fitted to the observed pixels
(:meth:`VAEDGP.refine_posteriors`: the recognition model never saw missing pixels).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from diffvi.data.registry import available_datasets, dataset_splits, load_dataset
from diffvi.diffusion.pretrained import SPEC, WEIGHTS, find_diffusion, save_diffusion
from diffvi.models.dgp import VAEDGP
from diffvi.training.checkpoint import resolve_checkpoint
from diffvi.training.config import JSONConfig
from diffvi.training.data import IndexBatchSampler, index_batch_loader
from diffvi.training.trainer import _last_metric, fit_by_steps
from diffvi.utils.runtime import configure_numerics

KERNELS = ("rbf", "linear")
# Latent widths (bottom, next to the data, first) that ``--layers L`` gives by default.
DEFAULT_LATENT_DIMS = {1: [5], 2: [10, 5], 3: [20, 10, 5]}


@dataclass
class VAEDGPConfig(JSONConfig):
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
    float32).
    """

    dataset: str = "frey-faces"
    latent_dims: list[int] = field(default_factory=lambda: [5])
    num_inducing: int = 50
    recognition_hidden: list[int] = field(default_factory=lambda: [200])
    recognition: bool = True
    kernel: str = "rbf"
    train_size: int | None = None
    batch_size: int = 100
    lr: float = 1e-2
    recognition_lr: float = 3e-4
    natural_step: float = 0.1
    refine_steps: int = 200
    max_steps: int = 3000
    val_every_n_steps: int = 500
    val_size: int = 200
    val_missing: float = 0.5
    seed: int = 0
    double: bool = True
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in available_datasets():
            raise ValueError(
                f"unknown dataset {self.dataset!r}; valid: {sorted(available_datasets())}"
            )
        self.latent_dims = list(self.latent_dims)
        if not self.latent_dims or any(int(q) != q or q < 1 for q in self.latent_dims):
            raise ValueError(f"latent_dims must be one or more ints >= 1, got {self.latent_dims}")
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {list(KERNELS)}, got {self.kernel!r}")
        for name in ("num_inducing", "batch_size", "max_steps", "val_every_n_steps", "val_size"):
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

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.double else torch.float32


def flat_images(dataset: str, split: str, count: int | None = None) -> tuple[Tensor, Tensor]:
    """The first ``count`` images of a registered data set's ``split`` as ``y: [N, D]`` (float,
    [0, 1]) and their labels ``[N]`` (``-1`` where the data set has none)."""
    data = load_dataset(dataset, split)
    images = data.images[:count].flatten(1).float()
    labels = getattr(data, "labels", None)
    labels = torch.full((len(images),), -1) if labels is None else labels[:count].long()
    return images, labels


def random_mask(shape: torch.Size | tuple[int, ...], missing: float, seed: int) -> Tensor:
    """Bool mask ``shape``, True where observed, hiding a ``missing`` fraction per entry."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) >= missing


class VAEDGPDataModule(L.LightningDataModule):
    """Training batches ``(y [B, D], index [B])`` (index: row numbers, for a GP-LVM's free q)
    and validation batches ``(y, mask)`` of held-out images with hidden pixels."""

    def __init__(self, config: VAEDGPConfig) -> None:
        super().__init__()
        self.config = config
        train, self.train_labels = flat_images(config.dataset, "train", config.train_size)
        held_out = "valid" if "valid" in dataset_splits(config.dataset) else "test"
        val, _ = flat_images(config.dataset, held_out, config.val_size)
        self.train_y = train.to(config.dtype)
        mask = random_mask(val.shape, config.val_missing, config.seed + 1)
        self.val_set = TensorDataset(val.to(config.dtype), mask)
        self.batch_size = min(config.batch_size, len(train))

    @property
    def num_train(self) -> int:
        return len(self.train_y)

    def train_dataloader(self) -> DataLoader:
        dataset = TensorDataset(self.train_y, torch.arange(self.num_train))
        sampler = IndexBatchSampler(
            self.num_train, self.batch_size, True, self.config.seed, drop_last=True
        )
        return index_batch_loader(dataset, sampler)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=500, shuffle=False)


def build_vaedgp(config: VAEDGPConfig, data_dim: int, num_points: int) -> VAEDGP:
    """The model ``config`` describes for ``data_dim``-wide data of ``num_points`` points."""
    return VAEDGP(
        data_dim,
        config.latent_dims,
        config.num_inducing,
        config.recognition_hidden,
        recognition=config.recognition,
        num_points=num_points,
        kernel=config.kernel,
    ).to(config.dtype)


class VAEDGPModule(L.LightningModule):
    """Trains a :class:`~diffvi.models.dgp.VAEDGP` on the minibatch estimate of its bound."""

    def __init__(
        self, config: VAEDGPConfig | dict[str, Any], data_dim: int, num_points: int
    ) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = VAEDGPConfig.from_dict(config)
        self.config = config
        self.num_points = num_points
        self.save_hyperparameters(
            {"config": config.to_dict(), "data_dim": data_dim, "num_points": num_points}
        )
        self.model = build_vaedgp(config, data_dim, num_points)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        y, index = batch
        if self.config.natural_step > 0:
            self.model.natural_gradient_step(y, self.num_points, self.config.natural_step, index)
        bound = self.model.bound(y, num_data=self.num_points, index=index).mean()
        if not torch.isfinite(bound):
            raise FloatingPointError(
                f"the bound became {bound.item()} at step {self.global_step}; stopping before "
                "writing a checkpoint. Try a lower learning rate or double=True."
            )
        self.log("train/bound", bound, prog_bar=True)
        for k, layer in enumerate(self.model.layers, 1):
            self.log(f"train/noise_var_{k}", layer.noise_var.detach())
        return -bound  # per point: the full bound's gradient divided by N

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        y, mask = batch
        if not self.model.amortised:
            return
        bound = self.model.bound(y, num_data=self.num_points).mean()
        self.log("val/bound", bound, prog_bar=True, batch_size=y.shape[0])

    def configure_optimizers(self) -> Any:
        skip = set()
        if self.config.natural_step > 0:
            skip = {id(p) for layer in self.model.layers for p in layer.q_u_parameters()}
        named = [(n, p) for n, p in self.model.named_parameters() if id(p) not in skip]
        recognition = [p for n, p in named if n.startswith("encoders.")]
        others = [p for n, p in named if not n.startswith("encoders.")]
        groups = [{"params": others, "lr": self.config.lr}]
        if recognition:
            groups.append({"params": recognition, "lr": self.config.recognition_lr})
        return torch.optim.Adam(groups)

    def exported_spec(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": "vaedgp",
            "config": self.config.to_dict(),
            "data_dim": self.model.data_dim,
            "num_points": self.num_points,
            "metadata": metadata,
        }


def load_vaedgp(
    name_or_path: str | Path, device: str | torch.device = "cpu"
) -> tuple[VAEDGP, dict]:
    """Load an exported VAE-DGP (a run folder or its ``export/``; eval mode) and its spec."""
    folder = find_diffusion(name_or_path)
    spec = json.loads((folder / SPEC).read_text())
    if spec.get("kind") != "vaedgp":
        raise ValueError(f"{folder} holds a {spec.get('kind')!r} model, not a VAE-DGP")
    config = VAEDGPConfig.from_dict(spec["config"])
    model = build_vaedgp(config, spec["data_dim"], spec["num_points"])
    model.load_state_dict(load_file(folder / WEIGHTS, device=str(device)))
    return model.to(device).eval(), spec


def relevant_dims(model: VAEDGP, count: int = 2) -> list[int]:
    """The ``count`` top-latent dimensions the top GP layer uses most: the shortest ARD
    lengthscales (RBF) or the largest ARD variances (linear kernel)."""
    kernel = model.layers[-1].kernel
    if hasattr(kernel, "lengthscale"):
        order = kernel.lengthscale.detach().argsort()
    else:
        order = kernel.variance.detach().reshape(-1).argsort(descending=True)
    return order[:count].tolist()


@torch.no_grad()
def save_latent_plot(model: VAEDGP, y: Tensor, labels: Tensor, path: Path, title: str) -> Path:
    """Scatter of the top-layer latent means of ``y [N, D]`` on their two most relevant
    dimensions (:func:`relevant_dims`), coloured by ``labels`` where known."""
    from diffvi.evaluation.plots import save_latent_scatter

    index = torch.arange(len(y)) if not model.amortised else None
    z = model.encode(y.to(model.fill_value), index=index)
    z = z[:, relevant_dims(model)] if z.shape[1] > 1 else torch.cat([z, torch.zeros_like(z)], 1)
    known = labels if (labels >= 0).any() else None
    return save_latent_scatter(z.float().cpu(), known, path, title=title)


def imputation_rmse(model: VAEDGP, y: Tensor, mask: Tensor, steps: int = 200) -> float:
    """RMSE over the hidden entries (``mask`` False) of ``y [N, D]`` imputed by ``model``
    after ``steps`` of test-time inference on the observed entries."""
    filled = model.impute(y, mask, steps=steps)
    return (filled - y.to(filled))[~mask].pow(2).mean().sqrt().item()


def fit_vaedgp(
    config: VAEDGPConfig,
    run_dir: str | Path,
    resume: bool = False,
    accelerator: str = "auto",
    devices: int | str = "auto",
    progress_bar: bool = True,
    callbacks: tuple[Callback, ...] | list[Callback] = (),
    log_every_n_steps: int = 50,
) -> VAEDGPModule:
    """Train a VAE-DGP (or Bayesian GP-LVM) as ``config`` says and write the run to
    ``run_dir``: ``config.json`` (``{"kind": "vaedgp", …}``), ``checkpoints/last.ckpt``
    (atomic, resumable), ``logs/version_N/metrics.csv``, ``latents.png`` and ``export/``
    (loadable with :func:`load_vaedgp`). A non-finite bound stops with ``FloatingPointError``.
    A fresh run starts from :meth:`VAEDGP.initialise` on (up to 2000 of) the training images.
    """
    run_dir = Path(run_dir)
    configure_numerics(config.flush_denormal)
    L.seed_everything(config.seed, workers=True, verbose=False)
    data = VAEDGPDataModule(config)
    module = VAEDGPModule(config, data.train_y.shape[1], data.num_train)
    if not resume:
        generator = torch.Generator().manual_seed(config.seed)
        y = data.train_y if not config.recognition else data.train_y[:2000]
        module.model.initialise(y, generator=generator)
    ckpt_path = str(resolve_checkpoint(run_dir)) if resume else None
    trainer, seconds = fit_by_steps(
        module,
        data,
        run_dir,
        {"kind": "vaedgp", **config.to_dict()},
        ckpt_path,
        max_steps=config.max_steps,
        val_every_n_steps=config.val_every_n_steps,
        grad_clip=0.0,
        accelerator=accelerator,
        devices=devices,
        progress_bar=progress_bar,
        callbacks=callbacks,
        log_every_n_steps=log_every_n_steps,
    )
    if trainer.is_global_zero:
        model = module.model.cpu().eval()
        metadata = {
            "steps": int(trainer.global_step),
            "train_seconds_this_session": round(seconds, 1),
            "val_bound": _last_metric(trainer, "val/bound"),
            "val_impute_rmse": imputation_rmse(model, *data.val_set.tensors, config.refine_steps),
        }
        save_diffusion(model, module.exported_spec(metadata), run_dir / "export")
        name = "VAE-DGP" if config.recognition else "Bayesian GP-LVM"
        title = f"{name} {config.latent_dims} on {config.dataset}: top latent means"
        save_latent_plot(model, data.train_y, data.train_labels, run_dir / "latents.png", title)
    return module
