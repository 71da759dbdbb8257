"""Plain-data configuration of training runs: what a checkpoint stores to rebuild the run.

One dataclass per model family, one module each (:class:`TrainConfig` for the VAE family in
:mod:`.vae`, :class:`DiffusionConfig`, :class:`CVDMConfig`, :class:`SBNConfig`,
:class:`VAEDGPConfig`), all deriving from :class:`RunConfig` (:mod:`.base`). They import no
Lightning, so the command line builds its options from them quickly: a field made with
:func:`option` is a ``diffvi train`` option, with its help, name, choices (the registry the config
validates against) and default taken from the field.
"""

from diffvi.training.config.base import (
    BUDGET,
    CLI_KEYS,
    DATA,
    ESTIMATOR,
    HARDWARE,
    MODEL,
    OPTIM,
    PRECISIONS,
    RESUMABLE_FIELDS,
    SEMI,
    JSONConfig,
    RunConfig,
    option,
)
from diffvi.training.config.cvdm import CVDM_SCHEDULES, CVDMConfig
from diffvi.training.config.diffusion import DiffusionConfig
from diffvi.training.config.sbn import SBN_ESTIMATORS, VIMCO_MEANS, SBNConfig
from diffvi.training.config.vae import (
    ADAM_PRESETS,
    PARTITIONED_PRIORS,
    PRIORS_2D,
    SCHEDULES,
    STAGE2_DEFAULTS,
    TrainConfig,
    iwae_lr_factor,
)
from diffvi.training.config.vaedgp import DEFAULT_LATENT_DIMS, KERNELS, VAEDGPConfig

__all__ = [
    "ADAM_PRESETS",
    "BUDGET",
    "CLI_KEYS",
    "CVDM_SCHEDULES",
    "DATA",
    "DEFAULT_LATENT_DIMS",
    "ESTIMATOR",
    "HARDWARE",
    "KERNELS",
    "MODEL",
    "OPTIM",
    "PARTITIONED_PRIORS",
    "PRECISIONS",
    "RESUMABLE_FIELDS",
    "PRIORS_2D",
    "SBN_ESTIMATORS",
    "SCHEDULES",
    "SEMI",
    "STAGE2_DEFAULTS",
    "VIMCO_MEANS",
    "CVDMConfig",
    "DiffusionConfig",
    "JSONConfig",
    "RunConfig",
    "SBNConfig",
    "TrainConfig",
    "VAEDGPConfig",
    "iwae_lr_factor",
    "option",
]
