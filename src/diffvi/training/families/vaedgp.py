"""The VAE-DGP family: VAE-DGPs and Bayesian GP-LVMs (:class:`~diffvi.models.dgp.VAEDGP`).

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
(:meth:`VAEDGP.refine_posteriors`: the recognition model never saw missing pixels), and the
top-layer latent means are plotted to ``latents.png``.

The user's own data (``data``) is a folder or array of images, flattened as the registered ones
are, or a table, whose rows are standardised by the training rows' mean and std
(:func:`~diffvi.training.families.tables.build_table_data`); either way ``val_fraction`` of it is
held out by ``seed`` and ``labels`` colour the latent plot (its legend names the classes where
the labels were names). A model trained on a table keeps its feature columns, mean and std
(``config.features``) and encodes new rows of the same kind to their top-layer latent means
(:meth:`VAEDGPFamily.encode_table`; ``diffvi embed table NEW --model RUN``).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from diffvi.data.modules import FlatDataModule, FlatImageDataModule
from diffvi.models.dgp import VAEDGP
from diffvi.training.config import VAEDGPConfig
from diffvi.training.families.tables import TableInputs
from diffvi.training.family import Family, LossOutput, Metric, format_number


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
def save_latent_plot(
    model: VAEDGP,
    y: Tensor,
    labels: Tensor,
    path: Path,
    title: str,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Scatter of the top-layer latent means of ``y [N, D]`` on their two most relevant
    dimensions (:func:`relevant_dims`), coloured by ``labels`` where known; the legend names
    class ``c`` ``label_names[c]`` (default: the number)."""
    from diffvi.evaluation.plots import save_latent_scatter

    index = torch.arange(len(y)) if not model.amortised else None
    z = model.encode(y.to(model.fill_value), index=index)
    z = z[:, relevant_dims(model)] if z.shape[1] > 1 else torch.cat([z, torch.zeros_like(z)], 1)
    known = labels if (labels >= 0).any() else None
    names = label_names if known is not None else None
    return save_latent_scatter(z.float().cpu(), known, path, title=title, names=names)


def imputation_rmse(model: VAEDGP, y: Tensor, mask: Tensor, steps: int = 200) -> float:
    """RMSE over the hidden entries (``mask`` False) of ``y [N, D]`` imputed by ``model``
    after ``steps`` of test-time inference on the observed entries."""
    filled = model.impute(y, mask, steps=steps)
    return (filled - y.to(filled))[~mask].pow(2).mean().sqrt().item()


def gather_across_ranks(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Each tensor concatenated over the ranks of a running DDP group (rank order; equal
    shapes on every rank); unchanged without one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    gathered = []
    for tensor in tensors:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        gathered.append(torch.cat(parts))
    return tuple(gathered)


def own_data(config: VAEDGPConfig) -> FlatDataModule:
    """The :class:`FlatDataModule` of ``config.data``: a table's standardised rows
    (:func:`~diffvi.training.families.tables.build_table_data`; the module keeps its
    ``table_features``), or flattened images
    (:func:`~diffvi.training.families.images.own_image_splits`); ``val_fraction`` held out by
    ``seed``, the first ``val_size`` of those kept, the first ``train_size`` training rows;
    labels ``-1`` where unknown, ``label_names`` where they were names (a table's text label
    column, a labels file of names, subfolders)."""
    from diffvi.training.families.tables import build_table_data, uses_table

    table = None
    if uses_table(config):
        table = build_table_data(config)
        (train_y, train_labels), (val_y, _) = table.train_set.tensors, table.val_set.tensors
        names = table.label_names
    else:
        from diffvi.training.families.images import own_image_splits

        train, held_out = own_image_splits(config)
        count = len(train) if config.train_size is None else min(len(train), config.train_size)
        train_x, train_labels = train[torch.arange(count)]
        val_x, _ = held_out[torch.arange(len(held_out))]
        train_y, val_y, names = train_x.flatten(1), val_x.flatten(1), train.classes
    data = FlatDataModule(
        train_y[: config.train_size], val_y, config.batch_size, config.seed,
        config.val_missing, config.dtype, train_labels[: config.train_size], names,
    )  # fmt: skip
    data.table_features = None if table is None else table.table_features
    return data


class VAEDGPFamily(TableInputs, Family):
    """Trains a :class:`~diffvi.models.dgp.VAEDGP` ``model`` on the minibatch estimate of
    its bound; see the module docstring. A model trained on a table reads and encodes new
    rows (:class:`~diffvi.training.families.tables.TableInputs`)."""

    kind = "vaedgp"
    table_command = "train vaedgp --data TABLE"
    exported_module = "model"
    config_class = VAEDGPConfig
    progress_metrics = ("bound",)

    def __init__(self, config: VAEDGPConfig) -> None:
        super().__init__(config)
        if config.data_dim is None or config.num_points is None:
            raise ValueError("config.data_dim and config.num_points are set from the data first")
        self.model = build_vaedgp(config, config.data_dim, config.num_points)

    @classmethod
    def build_data(cls, config: VAEDGPConfig) -> L.LightningDataModule:
        if config.data is None:
            return FlatImageDataModule(
                config.dataset, config.batch_size, config.seed, config.train_size,
                config.val_size, config.val_missing, config.dtype,
            )  # fmt: skip
        return own_data(config)

    @classmethod
    def fit_config_to_data(cls, config: VAEDGPConfig, data: L.LightningDataModule) -> None:
        config.data_dim, config.num_points = data.train_y.shape[1], data.num_train
        saved = getattr(data, "table_features", None)  # a table's columns, mean and std
        config.features = None if saved is None else saved.to_dict()

    def attach_data(self, data: L.LightningDataModule, resumed: bool) -> None:
        """A new run starts from :meth:`VAEDGP.initialise` on (up to 2000 of) the training
        images."""
        if resumed:
            return
        generator = torch.Generator().manual_seed(self.config.seed)
        y = data.train_y if not self.config.recognition else data.train_y[:2000]
        self.model.initialise(y, generator=generator)

    def check_encoder(self) -> None:
        """A ValueError for a Bayesian GP-LVM, which has no encoder for new rows."""
        if not self.model.amortised:
            raise ValueError(
                "a Bayesian GP-LVM (train vaedgp --no-recognition) has a free q(x_n) per "
                "training point and no encoder for new rows; train a VAE-DGP (with recognition)"
            )

    @torch.no_grad()
    def encode(
        self, x: Tensor, *, seed: int = 0, batch_size: int = 500, progress: bool = False
    ) -> Tensor:
        """Top-layer latent means ``[N, Q_L]`` (float32, on the CPU) of model inputs ``x [N,
        D]`` (flattened images, or a table's standardised rows), by the recognition MLPs in
        batches of ``batch_size``. The means are deterministic: ``seed`` and ``progress`` are
        taken for the encoders' common signature and do nothing. A Bayesian GP-LVM has no
        recognition model for new points: a ValueError."""
        self.check_encoder()
        if x.ndim != 2 or x.shape[1] != self.model.data_dim:
            raise ValueError(
                f"expected inputs [N, {self.model.data_dim}], got shape {list(x.shape)}"
            )
        reference = self.model.fill_value
        parts = [
            self.model.encode(part.to(reference)).float().cpu()
            for part in x.split(max(1, batch_size))
        ]
        return torch.cat(parts) if parts else torch.zeros(0, self.config.latent_dims[-1])

    def loss(self, batch: tuple[Tensor, Tensor]) -> LossOutput:
        y, index = batch
        num_points = self.config.num_points
        if self.config.natural_step > 0:
            # Under DDP every rank takes the same step, on the batches of all ranks: q(U) is
            # moved outside the gradient all-reduce, so per-rank steps would drift apart.
            y_all, index_all = gather_across_ranks(y, index)
            self.model.natural_gradient_step(y_all, num_points, self.config.natural_step, index_all)
        bound = self.model.bound(y, num_data=num_points, index=index).mean()
        metrics = {"bound": bound.detach()}
        for k, layer in enumerate(self.model.layers, 1):
            metrics[f"noise_var_{k}"] = layer.noise_var.detach()
        return LossOutput(-bound, metrics)  # per point: the full bound's gradient divided by N

    def validate(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Metric]:
        y, _ = batch
        if not self.model.amortised:
            return {}
        return {"bound": self.model.bound(y, num_data=self.config.num_points).mean()}

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

    def divergence_advice(self) -> str:
        config, rates = self.config, f"--lr, now {format_number(self.config.lr)}"
        if config.recognition:
            rates += f"; --recognition-lr, now {format_number(config.recognition_lr)}"
        advice = f"Try a lower learning rate ({rates})"
        if config.natural_step == 0:  # plain Adam on q(U): see the module docstring
            advice += ", or natural-gradient steps on q(U) (--natural-step 0.1)"
        return advice + "."

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "VAEDGPFamily":
        config = VAEDGPConfig.from_dict(spec["config"])
        if config.data_dim is None:  # exports written before the config held the data sizes
            config.data_dim, config.num_points = spec["data_dim"], spec["num_points"]
        return cls(config)

    def on_fit_end(self, run_dir: Path, data: L.LightningDataModule) -> dict[str, Any]:
        model = self.model.cpu().eval()
        rmse = imputation_rmse(model, *data.val_set.tensors, self.config.refine_steps)
        name = "VAE-DGP" if self.config.recognition else "Bayesian GP-LVM"
        title = f"{name} {self.config.latent_dims} on {self.config.data_name}: top latent means"
        save_latent_plot(
            model, data.train_y, data.train_labels, run_dir / "latents.png", title,
            getattr(data, "label_names", None),
        )  # fmt: skip
        return {"val_impute_rmse": rmse}
