"""Plain-data configuration of a training run: what a checkpoint stores to rebuild the run."""

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Adam settings. The IWAE paper (§5) reports β1 = 0.9, β2 = 0.999, ε = 1e-4; the official code
# (yburda/iwae) used β1 = 0.99 with ε = 1e-4. "torch" is PyTorch's default.
ADAM_PRESETS: dict[str, dict[str, Any]] = {
    "torch": {"betas": (0.9, 0.999), "eps": 1e-8},
    "iwae-paper": {"betas": (0.9, 0.999), "eps": 1e-4},
    "iwae-code": {"betas": (0.99, 0.999), "eps": 1e-4},
}
SCHEDULES = ("constant", "iwae")
OBJECTIVES = ("elbo", "iwae")


@dataclass
class TrainConfig:
    """Everything that defines a VAE/IWAE training run (all fields are JSON-serialisable).

    ``k`` is the number of samples per data point: IWAE's k, or the ELBO's sample count.
    ``schedule="iwae"`` is the IWAE paper's: 3^i epochs at lr·10^(-i/7), i = 0…7 (3280 epochs),
    cut at ``max_epochs``.
    """

    dataset: str = "mnist-dynamic"
    architecture: str = "iwae-1"
    likelihood: str = "bernoulli"
    latent_dims: list[int] | None = None
    hidden: list[list[int]] | None = None
    activation: str = "tanh"
    objective: str = "iwae"
    k: int = 50
    estimator: str = "standard"
    analytic_kl: bool = False
    batch_size: int = 20
    lr: float = 1e-3
    adam: str = "iwae-paper"
    schedule: str = "constant"
    max_epochs: int = 10
    max_steps: int = -1
    seed: int = 0
    val_k: int = 50
    val_size: int = 1000
    flush_denormal: bool = True
    event_shape: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        checks = [
            (self.objective in OBJECTIVES, f"objective must be one of {OBJECTIVES}"),
            (self.adam in ADAM_PRESETS, f"adam must be one of {sorted(ADAM_PRESETS)}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.k >= 1, "k must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.max_epochs >= 1, "max_epochs must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                field_name = message.split()[0]
                raise ValueError(f"{message}, got {getattr(self, field_name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict, rejecting unknown keys (so a typo is an error, not a no-op)."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known keys: {sorted(known)}")
        return cls(**values)


def iwae_lr_factor(epoch: int) -> float:
    """Learning-rate factor of the IWAE schedule at ``epoch`` (0-based): 10^(-i/7) during the
    3^i epochs of stage i (stage 0 = epoch 0, stage 1 = epochs 1–3, …, i = 0…7)."""
    stage, end = 0, 1
    while epoch >= end and stage < 7:
        stage += 1
        end += 3**stage
    return 10 ** (-stage / 7)
