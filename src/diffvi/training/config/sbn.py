"""The sigmoid-belief-net family's config: :class:`SBNConfig`."""

import math
from dataclasses import dataclass

from diffvi.data.registry import available_datasets
from diffvi.objectives import NVIL, RWS, SCORE_FUNCTION_ESTIMATORS, VIMCO
from diffvi.posteriors.bernoulli import check_layers
from diffvi.training.config.base import (
    ESTIMATOR,
    MODEL,
    ImageDataConfig,
    RunConfig,
    batch_size_option,
    dataset_option,
    lr_option,
    option,
)

SBN_ESTIMATORS = tuple(SCORE_FUNCTION_ESTIMATORS)
VIMCO_MEANS = ("geometric", "arithmetic")


@dataclass
class SBNConfig(RunConfig, ImageDataConfig):
    """Everything that defines an SBN training run (JSON-serialisable).

    ``layers`` are the SBN's binary layers bottom first (``[200]``, ``[200, 200]``,
    ``[200, 200, 200]``); ``estimator`` one of :data:`SBN_ESTIMATORS` with ``k`` samples per
    data point (VIMCO needs k ≥ 2). NVIL's pieces switch with ``nvil_baseline``,
    ``nvil_centering``, ``nvil_normalise`` and ``nvil_local_signals``; VIMCO's leave-one-out
    stand-in is ``vimco_mean``; RWS adds the sleep phase with ``rws_sleep``. Adam with ``lr``
    on mini-batches of ``batch_size``; validation every ``val_every_n_steps`` steps on the
    first ``val_size`` held-out images with a ``val_k``-sample bound. ``event_shape`` is set
    from the data set.

    The data is a registered ``dataset`` or the user's own images, ``data`` (a folder or an
    array file; with ``labels``, ``size``, ``crop``, ``val_fraction``: :class:`ImageDataConfig`).
    Their grey levels are Bernoulli probabilities: training images are binarised afresh in
    every epoch, held-out ones once (:class:`~diffvi.data.image_folders.BinarizedImages`);
    binary images stay as they are. Colour images keep their channels (``[3, H, W]``, 3·H·W
    visible units).
    """

    dataset: str | None = dataset_option("binarized-mnist")
    layers: list[int] = option([200], "Binary layers bottom first, e.g. 200,200,200.", panel=MODEL)
    estimator: str = option(
        "nvil", "Score-function estimator.", panel=ESTIMATOR, choices=SBN_ESTIMATORS
    )
    k: int = option(
        1,
        "Samples per data point (VIMCO: >= 2; the papers: NVIL 1, VIMCO 5 or 50, RWS 5).",
        flag=("--k", "-k"),
        panel=ESTIMATOR,
        min=1,
    )
    nvil_baseline: bool = option(True, "NVIL: input-dependent baselines.", panel=ESTIMATOR)
    nvil_centering: bool = option(True, "NVIL: moving-average centring.", panel=ESTIMATOR)
    nvil_normalise: bool = option(True, "NVIL: variance normalisation.", panel=ESTIMATOR)
    nvil_local_signals: bool = option(True, "NVIL: per-layer learning signals.", panel=ESTIMATOR)
    vimco_mean: str = option(
        "geometric",
        "VIMCO: geometric (paper) or arithmetic leave-one-out mean.",
        panel=ESTIMATOR,
        choices=VIMCO_MEANS,
    )
    rws_sleep: bool = option(False, "RWS: add the sleep-phase q update.", panel=ESTIMATOR)
    batch_size: int = batch_size_option(24)
    lr: float = lr_option(3e-4)
    max_steps: int = 10000
    val_every_n_steps: int | None = 1000
    val_size: int = 1000
    val_k: int = option(100, "Samples of the validation bound.", min=1)
    event_shape: list[int] | None = None

    def __post_init__(self) -> None:
        self.check_run()
        self.check_data()
        if self.dataset is not None and self.dataset not in available_datasets():
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
