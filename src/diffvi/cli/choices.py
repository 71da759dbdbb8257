"""The fixed choices of CLI options, as enums (typer lists them in ``--help``).

They mirror registries in the library (``diffvi.models.vae.ARCHITECTURES``,
``diffvi.training.config.ADAM_PRESETS`` …); they are spelled out here so that ``diffvi --help``
does not import Lightning. ``tests/cli`` checks that both stay the same.
"""

from enum import Enum


class Objective(str, Enum):
    elbo = "elbo"
    iwae = "iwae"


class Estimator(str, Enum):
    standard = "standard"
    stl = "stl"
    dreg = "dreg"


class Architecture(str, Enum):
    iwae_1 = "iwae-1"
    iwae_2 = "iwae-2"
    aevb = "aevb"


class Likelihood(str, Enum):
    bernoulli = "bernoulli"
    gaussian = "gaussian"


class Activation(str, Enum):
    tanh = "tanh"
    relu = "relu"
    softplus = "softplus"
    gelu = "gelu"
    silu = "silu"


class Adam(str, Enum):
    iwae_paper = "iwae-paper"
    iwae_code = "iwae-code"
    torch = "torch"


class Schedule(str, Enum):
    constant = "constant"
    iwae = "iwae"
