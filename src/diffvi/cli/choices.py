"""The fixed choices of CLI options, as enums (typer lists them in ``--help``).

They mirror registries in the library (``diffvi.models.vae.ARCHITECTURES``,
``diffvi.training.config.ADAM_PRESETS`` …); they are spelled out here so that ``diffvi --help``
does not import Lightning. ``tests/cli`` checks that both stay the same.
"""

from enum import StrEnum


class Objective(StrEnum):
    elbo = "elbo"
    iwae = "iwae"


class Estimator(StrEnum):
    standard = "standard"
    stl = "stl"
    dreg = "dreg"


class Architecture(StrEnum):
    iwae_1 = "iwae-1"
    iwae_2 = "iwae-2"
    aevb = "aevb"


class Likelihood(StrEnum):
    bernoulli = "bernoulli"
    gaussian = "gaussian"


class Activation(StrEnum):
    tanh = "tanh"
    relu = "relu"
    softplus = "softplus"
    gelu = "gelu"
    silu = "silu"


class Adam(StrEnum):
    iwae_paper = "iwae-paper"
    iwae_code = "iwae-code"
    torch = "torch"


class Schedule(StrEnum):
    constant = "constant"
    iwae = "iwae"
