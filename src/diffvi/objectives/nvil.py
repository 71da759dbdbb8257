"""NVIL, neural variational inference and learning (Mnih & Gregor 2014, §3 and Algorithm 1):
REINFORCE with the learning signal centred by a moving average c and an input-dependent
baseline C_ψ, divided by max(1, √v) (v a moving average of its variance), α = 0.8. With local
signals each layer i of q gets only the terms its draw influences (§3.3): l_i = Σ_{j≥i−1}
log p(h_j | h_{j+1}) − Σ_{j≥i} log q(h_j | h_{j−1}) (h_0 = x; the top term is log p(h_L)).
C_ψ for layer i sees that layer's input h_{i−1} and is trained by ψ ← ψ + l̃ ∇ψ C_ψ, as in
Algorithm 1.
"""

import torch
from torch import Tensor, nn

from diffvi.nn.mlp import MLP
from diffvi.objectives.base import Objective, ObjectiveOutput
from diffvi.objectives.score_function import check_k, sample_terms


def local_learning_signals(log_p_terms: Tensor, log_q_terms: Tensor) -> Tensor:
    """NVIL's per-layer signals ``[L, K, B]`` from the factors of log p ``[L + 1, K, B]`` (row 0
    log p(x | h_1), …, row L log p(h_L)) and of log q ``[L, K, B]`` (row l − 1 is
    log q(h_l | h_{l−1})): signal_l = Σ_{j ≥ l−1} p-row j − Σ_{j ≥ l} q-row j (1-based l), the
    terms that layer l's draw can change. Row 0 is the full log p(x, h) − log q(h | x)."""
    layers = log_q_terms.shape[0]
    if log_p_terms.shape[0] != layers + 1:
        raise ValueError(
            f"need L + 1 rows of log p for L = {layers} rows of log q, got {log_p_terms.shape[0]}"
        )
    p_tail = log_p_terms.flip(0).cumsum(0).flip(0)[:layers]
    q_tail = log_q_terms.flip(0).cumsum(0).flip(0)
    return p_tail - q_tail


class NVIL(nn.Module, Objective):
    """Neural variational inference and learning (Mnih & Gregor 2014).

    Args:
        k: draws per data point (each a single-sample estimator; the paper uses 1).
        baseline: learn an input-dependent baseline C_ψ per layer of q (an MLP of its input
            with ``baseline_hidden`` tanh units and one output; the paper's MNIST baseline has
            one hidden layer of 100 units).
        centering: subtract the moving average c of the (baseline-corrected) signal.
        normalise: divide by max(1, √v), v the moving average of its variance.
        local_signals: per-layer learning signals (:func:`local_learning_signals`) instead of
            the full l for every layer.
        alpha: the moving averages' decay (c ← α c + (1 − α) mean).

    The moving averages live in buffers (``c``, ``v``, one per layer, and ``steps``); they are
    updated, after use, whenever gradients are enabled. Algorithm 1 updates them before use;
    using the values from earlier batches keeps the centred estimator exactly unbiased (the
    current draws do not enter their own baseline). The baselines are built for the model's
    layer sizes on the first call, or by :meth:`ensure_baselines` (call it before making an
    optimiser, which must include ``nvil.parameters()``).
    """

    name = "nvil"

    def __init__(
        self,
        k: int = 1,
        baseline: bool = True,
        centering: bool = True,
        normalise: bool = True,
        local_signals: bool = True,
        alpha: float = 0.8,
        baseline_hidden: int = 100,
    ) -> None:
        nn.Module.__init__(self)
        self.k = check_k(k)
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if baseline_hidden < 1:
            raise ValueError(f"baseline_hidden must be >= 1, got {baseline_hidden}")
        self.use_baseline, self.centering, self.normalise = baseline, centering, normalise
        self.local_signals, self.alpha, self.baseline_hidden = local_signals, alpha, baseline_hidden
        self.baselines: nn.ModuleList | None = None
        self.register_buffer("c", torch.zeros(0))
        self.register_buffer("v", torch.zeros(0))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def ensure_baselines(self, model) -> None:
        """Build the per-layer baselines (and size the moving averages) for ``model``'s layers:
        layer l's baseline maps h_{l−1} ``[..., D_{l−1}]`` (h_0 = x) to ``[..., 1]``."""
        inputs = [model.data_dim, *model.latent_dims[:-1]]
        like = next(model.parameters())  # device and dtype of the model
        if self.c.numel() != len(inputs):
            self.c = like.new_zeros(len(inputs))
            self.v = like.new_zeros(len(inputs))
        if self.use_baseline and self.baselines is None:
            self.baselines = nn.ModuleList(
                MLP(size, [self.baseline_hidden], 1, "tanh") for size in inputs
            ).to(like)

    def baseline_values(self, x: Tensor, z: Tensor, latent_dims: list[int]) -> Tensor:
        """C_ψ of every layer at its input, ``[L, K, B]`` (x for layer 1, h_{l−1} above)."""
        hs = z.split(latent_dims, dim=-1)
        inputs = [x.flatten(1).expand(z.shape[0], -1, -1), *hs[:-1]]
        return torch.stack(
            [net(h).squeeze(-1) for net, h in zip(self.baselines, inputs, strict=True)]
        )

    def __call__(self, model, posterior, x: Tensor) -> ObjectiveOutput:
        self.ensure_baselines(model)
        z, log_p, log_q = sample_terms(model, posterior, x, self.k)
        log_w = log_p.sum(0) - log_q.sum(0)
        if self.local_signals:
            signal = local_learning_signals(log_p, log_q).detach()
        else:
            signal = log_w.detach().expand(log_q.shape)
        baseline = (
            self.baseline_values(x, z, model.latent_dims)
            if self.baselines is not None
            else torch.zeros_like(signal)
        )
        residual = signal - baseline.detach()
        centred = residual - self.c.view(-1, 1, 1) if self.centering else residual
        scale = self.v.sqrt().clamp_min(1.0) if self.normalise else torch.ones_like(self.v)
        advantage = centred / scale.view(-1, 1, 1)  # [L, K, B]
        if torch.is_grad_enabled():
            self._update_averages(residual)
        # Surrogate: ∇θ log p + Σ_l A_l ∇φ log q_l + Σ_l A_l ∇ψ C_ψ,l (Algorithm 1).
        surrogate = log_p.sum(0) + (advantage * log_q).sum(0) + (advantage * baseline).sum(0)
        metrics = {
            "signal_mean": signal[0].mean(),
            "baseline_mean": baseline[0].detach().mean(),
            "signal_scale": scale[0].detach(),
        }
        return ObjectiveOutput(
            loss=-surrogate.mean(), bound=log_w.mean(0).detach(), metrics=metrics, z=z
        )

    @torch.no_grad()
    def _update_averages(self, residual: Tensor) -> None:
        flat = residual.flatten(1)
        mean = flat.mean(1)
        var = flat.var(1, correction=0)
        self.c.lerp_(mean, 1 - self.alpha)  # c ← α c + (1 − α) mean, from c = 0
        self.v.lerp_(var, 1 - self.alpha)
        self.steps += 1
