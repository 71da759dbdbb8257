"""The SBN family: sigmoid belief networks trained with score-function estimators
(REINFORCE, NVIL, VIMCO, reweighted wake-sleep; :data:`diffvi.objectives.
SCORE_FUNCTION_ESTIMATORS`).

The visible biases start at the logits of the training set's pixel means (clipped to
[1e-3, 1 − 1e-3]), as in the NVIL, VIMCO and RWS experiments. Validation logs the ELBO and the
``val_k``-sample importance-weighted bound (a lower bound on log p(x) that tightens with K) of
the held-out images.

The user's own images (``data``: a folder or an array file) are binarised as ``mnist-dynamic``
is: their grey levels are Bernoulli probabilities, drawn afresh for every training image in
every epoch and once for the held-out ones (:class:`~diffvi.data.image_folders.
BinarizedImages`). Their pixel means, the expected means of the binary images, come from the
grey levels of at most :data:`PIXEL_MEAN_ITEMS` training images spread over the set, so a large
folder is not decoded whole.
"""

from typing import Any

import lightning as L
import torch
from torch import Tensor

from diffvi.evaluation.likelihood import estimate_log_likelihood
from diffvi.models.sbn import SigmoidBeliefNet
from diffvi.objectives import NVIL
from diffvi.posteriors.bernoulli import BernoulliPosterior
from diffvi.training.config import SBNConfig
from diffvi.training.family import Family, LossOutput, Metric

PIXEL_MEAN_ITEMS = 2000
"""Training images of one's own whose grey levels set the initial visible biases."""


def pixel_mean_logits(images: Tensor) -> Tensor:
    """Logits of the per-pixel means of binary ``images [N, …]``, clipped to [1e-3, 1 − 1e-3]:
    ``[prod(…)]``."""
    mean = images.flatten(1).float().mean(0).clamp(1e-3, 1 - 1e-3)
    return torch.logit(mean)


class SBNFamily(Family):
    """A sigmoid belief net ``model``, its recognition network ``posterior`` and the
    configured ``estimator`` (NVIL's baselines are training-only: not exported)."""

    kind = "sbn"
    config_class = SBNConfig
    progress_metrics = ("bound",)
    training_only = ("estimator.",)

    def __init__(self, config: SBNConfig) -> None:
        super().__init__(config)
        if config.event_shape is None:
            raise ValueError("config.event_shape must be set (the shape of one observation)")
        self.model = SigmoidBeliefNet(config.event_shape, config.layers)
        self.posterior = BernoulliPosterior(config.event_shape, config.layers)
        self.estimator = config.build_estimator()
        if isinstance(self.estimator, NVIL):
            self.estimator.ensure_baselines(self.model)  # registered as a submodule

    @classmethod
    def build_data(cls, config: SBNConfig) -> L.LightningDataModule:
        from diffvi.data.modules import ImageDataModule

        if config.data is None:
            return ImageDataModule(config.dataset, config.batch_size, config.seed, config.val_size)
        from diffvi.data.image_folders import BinarizedImages
        from diffvi.training.families.images import own_image_splits

        train, held_out = own_image_splits(config)
        binary = (
            BinarizedImages(train, dynamic=True, seed=config.seed),
            BinarizedImages(held_out, dynamic=False),
        )
        return ImageDataModule(binary, config.batch_size, config.seed, config.val_size)

    @classmethod
    def fit_config_to_data(cls, config: SBNConfig, data: L.LightningDataModule) -> None:
        config.event_shape = list(data.event_shape)

    def attach_data(self, data: L.LightningDataModule, resumed: bool) -> None:
        if resumed:
            return
        grey = getattr(data.train_set, "grey_levels", None)
        if grey is not None:  # one's own images: the grey levels of up to PIXEL_MEAN_ITEMS
            count = min(len(grey), PIXEL_MEAN_ITEMS)
            positions = torch.linspace(0, len(grey) - 1, count).round().long()
            images = grey[positions][0]
        else:
            images = data.train_set[torch.arange(len(data.train_set))][0]
        with torch.no_grad():
            self.model.decoders[0].bias.copy_(pixel_mean_logits(images))

    def importance_bound(self, x: Tensor, k: int) -> Tensor:
        """log (1/K) Σ_k p(x, h_k) / q(h_k | x), h_k ~ q: ``[B]`` (a lower bound on log p(x)
        that converges to it as K grows; :func:`~diffvi.evaluation.estimate_log_likelihood`)."""
        estimate = estimate_log_likelihood(self.model, self.posterior, x, k, batch_size=len(x))
        return estimate.log_px.to(x.device)

    def loss(self, batch: tuple[Tensor, ...]) -> LossOutput:
        x = batch[0].float()
        out = self.estimator(self.model, self.posterior, x)
        return LossOutput(out.loss, {"bound": out.bound.mean(), **out.metrics})

    def validate(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Metric]:
        x = batch[0].float()
        s = self.posterior.sample(x, 1)
        elbo = (self.model.log_joint(x, s.z) - s.log_q).mean()
        bound = self.importance_bound(x, self.config.val_k).mean()
        return {"elbo": elbo, f"bound_k{self.config.val_k}": bound}

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.config.lr)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "SBNFamily":
        """Built from the training config where the export has it, else from the fields that
        exports written before configs were saved with them have."""
        if "config" in spec:
            return cls(SBNConfig.from_dict(spec["config"]))
        names = ("dataset", "layers", "estimator", "k", "event_shape")
        return cls(SBNConfig(**{name: spec[name] for name in names}))
