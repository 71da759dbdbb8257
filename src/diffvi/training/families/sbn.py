"""The SBN family: sigmoid belief networks trained with score-function estimators
(REINFORCE, NVIL, VIMCO, reweighted wake-sleep; :data:`diffvi.objectives.
SCORE_FUNCTION_ESTIMATORS`).

The visible biases start at the logits of the training set's pixel means (clipped to
[1e-3, 1 − 1e-3]), as in the NVIL, VIMCO and RWS experiments. Validation logs the ELBO and the
``val_k``-sample importance-weighted bound (a lower bound on log p(x) that tightens with K) of
the held-out images.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from torch import Tensor

from diffvi.data.registry import available_datasets
from diffvi.evaluation.likelihood import estimate_log_likelihood
from diffvi.models.sbn import SigmoidBeliefNet
from diffvi.objectives import NVIL, RWS, SCORE_FUNCTION_ESTIMATORS, VIMCO
from diffvi.posteriors.bernoulli import BernoulliPosterior, check_layers
from diffvi.training.config import RunConfig
from diffvi.training.family import Family, LossOutput, Metric

SBN_ESTIMATORS = tuple(SCORE_FUNCTION_ESTIMATORS)
VIMCO_MEANS = ("geometric", "arithmetic")


@dataclass
class SBNConfig(RunConfig):
    """Everything that defines an SBN training run (JSON-serialisable).

    ``layers`` are the SBN's binary layers bottom first (``[200]``, ``[200, 200]``,
    ``[200, 200, 200]``); ``estimator`` one of :data:`SBN_ESTIMATORS` with ``k`` samples per
    data point (VIMCO needs k ≥ 2). NVIL's pieces switch with ``nvil_baseline``,
    ``nvil_centering``, ``nvil_normalise`` and ``nvil_local_signals``; VIMCO's leave-one-out
    stand-in is ``vimco_mean``; RWS adds the sleep phase with ``rws_sleep``. Adam with ``lr``
    on mini-batches of ``batch_size``; validation every ``val_every_n_steps`` steps on the
    first ``val_size`` held-out images with a ``val_k``-sample bound. ``event_shape`` is set
    from the data set.
    """

    dataset: str = "binarized-mnist"
    layers: list[int] = field(default_factory=lambda: [200])
    estimator: str = "nvil"
    k: int = 1
    nvil_baseline: bool = True
    nvil_centering: bool = True
    nvil_normalise: bool = True
    nvil_local_signals: bool = True
    vimco_mean: str = "geometric"
    rws_sleep: bool = False
    batch_size: int = 24
    lr: float = 3e-4
    max_steps: int = 10000
    val_every_n_steps: int | None = 1000
    val_size: int = 1000
    val_k: int = 100
    event_shape: list[int] | None = None

    def __post_init__(self) -> None:
        self.check_run()
        if self.dataset not in available_datasets():
            raise ValueError(
                f"unknown dataset {self.dataset!r}; valid: {sorted(available_datasets())}"
            )
        self.layers = list(check_layers(self.layers))
        if self.estimator not in SBN_ESTIMATORS:
            raise ValueError(
                f"estimator must be one of {list(SBN_ESTIMATORS)}, got {self.estimator!r}"
            )
        if self.k < 1 or (self.estimator == "vimco" and self.k < 2):
            raise ValueError(f"k must be >= 1 (>= 2 for vimco), got {self.k}")
        if self.vimco_mean not in VIMCO_MEANS:
            raise ValueError(
                f"vimco_mean must be one of {list(VIMCO_MEANS)}, got {self.vimco_mean!r}"
            )
        for name in ("batch_size", "val_size", "val_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def build_estimator(self):
        """The configured estimator (NVIL is a module with baselines and moving averages)."""
        if self.estimator == "nvil":
            return NVIL(
                self.k, self.nvil_baseline, self.nvil_centering, self.nvil_normalise,
                self.nvil_local_signals,
            )  # fmt: skip
        if self.estimator == "vimco":
            return VIMCO(self.k, self.vimco_mean)
        if self.estimator == "rws":
            return RWS(self.k, sleep=self.rws_sleep)
        return SCORE_FUNCTION_ESTIMATORS[self.estimator](self.k)


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

        return ImageDataModule(config.dataset, config.batch_size, config.seed, config.val_size)

    @classmethod
    def fit_config_to_data(cls, config: SBNConfig, data: L.LightningDataModule) -> None:
        config.event_shape = list(data.event_shape)

    def attach_data(self, data: L.LightningDataModule, resumed: bool) -> None:
        if resumed:
            return
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
