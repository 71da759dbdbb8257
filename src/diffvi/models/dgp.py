"""Variational auto-encoded deep Gaussian processes (VAE-DGP; Dai, Damianou, González & Lawrence,
ICLR 2016) and deep GP regression, with the closed-form Ψ-statistics bound.

Model. ``Y = X_0 ← f_1 ← X_1 ← f_2 ← … ← f_L ← X_L ~ N(0, I)``: GP layer ``l`` maps
``X_l: [N, Q_l]`` to ``X_{l−1}: [N, Q_{l−1}]`` by a sparse GP ``f_l`` (ARD RBF or linear kernel,
``M`` inducing inputs ``Z_l``, inducing outputs ``U_l``) plus Gaussian noise of precision β_l.

Bound. The *uncollapsed* sparse bound (Hensman, Fusi & Lawrence 2013, their ℒ₃) with the
Ψ-statistics of Titsias & Lawrence (2010) for Gaussian inputs q(x_n) = N(μ_n, diag s_n), so it is
a sum over data points and minibatches give unbiased estimates of it:

    L = Σ_l Σ_n E_{q(x^l_n) q(f^l_n)}[log N(t^l_n | f^l_n, β_l⁻¹)] − Σ_l KL(q(U_l) ‖ p(U_l))
        + Σ_{l<L} Σ_n H[q(x^l_n)] − Σ_n KL(q(x^L_n) ‖ N(0, I)),

where the target ``t^l`` of layer ``l`` is ``y`` for the bottom layer (observed entries only) and
the Gaussian q(X_{l−1}) of the layer below otherwise (its variance enters as E[t²] = μ² + s). The
top layer's prior and entropy are the single KL term, so no entropy is counted twice.

Choices.
- q(U_l) is *whitened*: U_l = L_zz V_l with K_zz = L_zz L_zzᵀ and q(V_l) = ∏_d N(m_d, S), a mean per
  output dimension ``q_mean: [M, D]`` and ONE covariance S = L_S L_Sᵀ shared by the D outputs
  (the optimum has that form when every output is observed). All K_zz solves are Cholesky solves
  with jitter 1e-6 · mean diag K_zz (= 1e-6 σ_f² for the RBF), raised tenfold if needed.
- Recognition model (the paper's amortisation): ``(μ_1, s_1) = g_1([y_filled, mask])`` and
  ``(μ_l, s_l) = g_l(μ_{l−1})``; each g_l is one MLP whose output splits into the mean and,
  through softplus (+1e-6), the variances (initially ≈ 0.01), so the number of variational
  parameters does not grow with N. Missing entries of ``y`` are replaced by the observed column
  means (``fill_value``, set by :meth:`VAEDGP.initialise`; zeros before) and the 0/1 mask is fed
  to g_1 (as ``mask − 1``) beside them, so the values at masked entries never enter the
  bound; g_1 sees ``(y − fill_value) / input_scale`` (one scalar: the observed entries'
  spread), which keeps a freshly initialised MLP's outputs varied across similar images. The
  bottom GP (zero mean) models ``y − fill_value``: the column means are the model's mean
  function.
- Minibatches: :meth:`VAEDGP.bound` returns per-point terms ``[B]`` with each KL(q(U)) charged
  ``1/num_data`` per point, so ``bound(y_batch, num_data=N).mean() * N`` is an unbiased estimate
  of the full bound and ``bound(y).sum()`` is the full bound on the whole data set.
- Initialisation (:meth:`VAEDGP.initialise`): the recognition MLPs' output layers are rescaled
  so the initial latent means are standardised (free means: PCA scores); then per layer Z from
  a random subset of the initial latent means, RBF lengthscales from the median pairwise
  distance of those means, σ_f² from the target variance, noise variance 0.1 of the target
  variance, and q(U) at its optimum given these.

Why not gpytorch: its deep GPs use the doubly stochastic Monte Carlo bound of Salimbeni &
Deisenroth (2017) and have no Ψ-statistics for uncertain inputs, so the paper's closed-form bound
is written here in plain PyTorch (the tests use gpytorch's ExactGP as an independent reference).
Prefer float64 for small problems: the K_zz solves lose precision in float32.
"""

from collections.abc import Sequence
from math import expm1, log, pi

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffvi.models.psi_statistics import Kernel, LinearKernel, RBFKernel, build_kernel
from diffvi.nn.mlp import MLP

__all__ = ["DeepGPRegressor", "LinearKernel", "RBFKernel", "SparseGPLayer", "VAEDGP"]

JITTER = 1e-6
VAR_FLOOR = 1e-6
INIT_VAR = 0.01


def _check_2d(name: str, t: Tensor, cols: int, rows: int | None = None) -> None:
    if t.ndim != 2 or t.shape[1] != cols or (rows is not None and t.shape[0] != rows):
        want = f"[{rows if rows is not None else 'B'}, {cols}]"
        raise ValueError(f"{name} must have shape {want}, got {list(t.shape)}")


def _check_dims(name: str, dims: Sequence[int], allow_empty: bool = False) -> list[int]:
    dims = list(dims)
    bad = any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims)
    if bad or (not dims and not allow_empty):
        need = "zero or more" if allow_empty else "one or more"
        raise ValueError(f"{name} must be {need} ints >= 1, got {dims}")
    return dims


def _cholesky(k: Tensor, jitter: Tensor) -> Tensor:
    """Lower Cholesky factor of ``k + jitter·I`` ``[M, M]``, raising the jitter tenfold up to
    three times if the factorisation fails (then ``torch.linalg.LinAlgError``, a
    ``RuntimeError``: training turns it into a divergence message)."""
    eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
    for attempt in range(4):
        chol, info = torch.linalg.cholesky_ex(k + jitter * 10**attempt * eye)
        if int(info) == 0:
            return chol
    raise torch.linalg.LinAlgError(
        "K_zz is not positive definite even with jitter; check the inducing inputs"
    )


def _gaussian_entropy(var: Tensor) -> Tensor:
    """H[N(μ, diag s)] = ½ Σ_q log(2πe s_q): ``[B, Q] -> [B]``."""
    return 0.5 * (log(2 * pi) + 1 + var.log()).sum(-1)


def _kl_standard_normal(mean: Tensor, var: Tensor) -> Tensor:
    """KL(N(μ, diag s) ‖ N(0, I)) = ½ Σ_q (s + μ² − 1 − log s): ``[B, Q] -> [B]``."""
    return 0.5 * (var + mean.pow(2) - 1 - var.log()).sum(-1)


def _gaussian_head(net: nn.Module, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """Split an MLP output ``[B, 2Q]`` into a mean and softplus variances ``[B, Q]`` each."""
    mean, raw = net(inputs).chunk(2, dim=-1)
    return mean, F.softplus(raw) + VAR_FLOOR


def _recognition_mlp(in_dim: int, hidden: Sequence[int], out_dim: int, act: str) -> MLP:
    net = MLP(in_dim, hidden, 2 * out_dim, act)
    with torch.no_grad():
        net[-1].bias[out_dim:].fill_(log(expm1(INIT_VAR)))  # initial variances ≈ INIT_VAR
    return net


@torch.no_grad()
def _standardise_head(net: MLP, inputs: Tensor) -> None:
    """Data-dependent init: rescale the output layer of ``net`` so the means it gives on
    ``inputs`` have zero mean and unit variance per dimension."""
    if inputs.shape[0] < 2:
        return
    mean, _ = net(inputs).chunk(2, dim=-1)
    q, shift, sd = mean.shape[1], mean.mean(0), mean.std(0).clamp_min(1e-6)
    last = net[-1]
    last.weight[:q] /= sd[:, None]
    last.bias[:q] = (last.bias[:q] - shift) / sd


class SparseGPLayer(nn.Module):
    """One sparse GP layer ``f: R^Q -> R^D`` with inducing inputs ``Z: [M, Q]``, whitened
    q(U) (see the module docstring) and Gaussian noise variance β⁻¹.

    Args:
        input_dim: Q.
        output_dim: D.
        num_inducing: M.
        kernel: ``"rbf"``, ``"linear"`` or a :class:`~diffvi.models.psi_statistics.Kernel`.
        noise_var: initial β⁻¹.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        num_inducing: int,
        kernel: str | Kernel = "rbf",
        noise_var: float = 0.1,
    ) -> None:
        super().__init__()
        _check_dims("input_dim, output_dim and num_inducing", [input_dim, output_dim, num_inducing])
        if noise_var <= 0:
            raise ValueError(f"noise_var must be > 0, got {noise_var}")
        self.input_dim, self.output_dim, self.num_inducing = input_dim, output_dim, num_inducing
        self.kernel = build_kernel(kernel, input_dim)
        self.inducing = nn.Parameter(torch.randn(num_inducing, input_dim))
        self.q_mean = nn.Parameter(torch.zeros(num_inducing, output_dim))
        self.q_tril = nn.Parameter(torch.zeros(num_inducing, num_inducing))  # strict lower part
        self.q_log_diag = nn.Parameter(torch.zeros(num_inducing))
        self.log_noise_var = nn.Parameter(torch.tensor(log(noise_var)))

    @property
    def noise_var(self) -> Tensor:
        return self.log_noise_var.exp()

    @property
    def q_scale_tril(self) -> Tensor:
        """L_S ``[M, M]``, the Cholesky factor of the whitened q(V) covariance."""
        return self.q_tril.tril(-1) + torch.diag(self.q_log_diag.exp())

    def chol_kzz(self) -> Tensor:
        """Cholesky factor of K_zz + jitter ``[M, M]``."""
        kzz = self.kernel.K(self.inducing, self.inducing)
        return _cholesky(kzz, JITTER * kzz.diagonal().mean().detach())

    def _check_inputs(self, in_mean: Tensor, in_var: Tensor | None) -> Tensor:
        _check_2d("in_mean", in_mean, self.input_dim)
        if in_var is None:
            return torch.zeros_like(in_mean)
        _check_2d("in_var", in_var, self.input_dim, in_mean.shape[0])
        return in_var

    def _statistics(
        self, in_mean: Tensor, in_var: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """ψ0 ``[B]``, ψ1 ``[B, M]``, ψ2 ``[B, M, M]``, A m ``[M, D]`` and A − A S_u A ``[M, M]``
        (A = K_zz⁻¹; whitened: A m_u = L⁻ᵀ m, A − A S_u A = L⁻ᵀ (I − S) L⁻¹, Cholesky solves)."""
        in_var = self._check_inputs(in_mean, in_var)
        psi0 = self.kernel.psi0(in_mean, in_var, self.inducing)
        psi1 = self.kernel.psi1(in_mean, in_var, self.inducing)
        psi2 = self.kernel.psi2(in_mean, in_var, self.inducing)
        chol = self.chol_kzz()
        proj = torch.linalg.solve_triangular(chol.T, self.q_mean, upper=True)
        scale = self.q_scale_tril
        eye = torch.eye(self.num_inducing, dtype=chol.dtype, device=chol.device)
        left = torch.linalg.solve_triangular(chol.T, eye - scale @ scale.T, upper=True)
        resid = torch.linalg.solve_triangular(chol.T, left.T, upper=True).T
        return psi0, psi1, psi2, proj, resid

    def moments(self, in_mean: Tensor, in_var: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """E[f] and Var[f] = E[f²] − E[f]² under q(x) q(U) p(f | U, x), noise-free:
        ``[B, Q], [B, Q] -> [B, D], [B, D]`` (``in_var=None``: deterministic inputs)."""
        psi0, psi1, psi2, proj, resid = self._statistics(in_mean, in_var)
        mean = psi1 @ proj  # E[f_nd] = ψ1_n A m_d
        # E[f²_nd] = ψ0_n − tr(A ψ2_n) + tr(A (m_d m_dᵀ + S) A ψ2_n)  (HFL 2013 / T&L 2010).
        second = (psi0 - (resid * psi2).sum((-2, -1)))[:, None] + ((psi2 @ proj) * proj).sum(-2)
        return mean, second - mean.pow(2)

    def expected_log_lik(
        self,
        in_mean: Tensor,
        in_var: Tensor | None,
        target_mean: Tensor,
        target_var: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Σ_d E_{q(x_n) q(f_n) q(t_n)}[log N(t_nd | f_nd, β⁻¹)] over observed d: ``[B]``.

        Without a mask the sum over d is taken inside the traces (Σ_d m_dᵀ A ψ2 A m_d =
        tr(ψ2 · Σ_d A m_d m_dᵀ A)), which costs B·M² instead of B·M²·D.

        Args:
            in_mean, in_var: q(x_n) ``[B, Q]`` each (``in_var=None``: deterministic).
            target_mean, target_var: the targets ``[B, D]`` (variance 0 when ``None``).
            mask: bool ``[B, D]``, True where the target is observed; masked entries are ignored.
        """
        _check_2d("target_mean", target_mean, self.output_dim, in_mean.shape[0])
        if target_var is not None:
            _check_2d("target_var", target_var, self.output_dim, in_mean.shape[0])
        if mask is None:
            psi0, psi1, psi2, proj, resid = self._statistics(in_mean, in_var)
            mean = psi1 @ proj
            # Σ_d E[(t − f)²] = Σ_d (E t − E f)² + Σ_d Var f + Σ_d Var t.
            var_f = (
                self.output_dim * (psi0 - (resid * psi2).sum((-2, -1)))
                + (psi2 * (proj @ proj.T)).sum((-2, -1))
                - mean.pow(2).sum(-1)
            )
            sq = (target_mean - mean).pow(2).sum(-1) + var_f
            if target_var is not None:
                sq = sq + target_var.sum(-1)
            log_norm = log(2 * pi) + self.log_noise_var
            return -0.5 * self.output_dim * log_norm - 0.5 * sq / self.noise_var
        if mask.shape != target_mean.shape:
            raise ValueError(
                f"mask must have shape {list(target_mean.shape)}, got {list(mask.shape)}"
            )
        mean, var_f = self.moments(in_mean, in_var)
        target_mean = torch.where(mask, target_mean, torch.zeros_like(target_mean))
        sq = (target_mean - mean).pow(2) + var_f
        if target_var is not None:
            sq = sq + target_var
        ll = -0.5 * (log(2 * pi) + self.log_noise_var) - 0.5 * sq / self.noise_var
        return torch.where(mask, ll, torch.zeros_like(ll)).sum(-1)

    def kl_u(self) -> Tensor:
        """KL(q(U) ‖ p(U)) = Σ_d KL(N(m_d, S) ‖ N(0, I)) in whitened coordinates (scalar)."""
        scale = self.q_scale_tril
        d, m = self.output_dim, self.num_inducing
        log_det = 2 * self.q_log_diag.sum()
        return 0.5 * (d * scale.pow(2).sum() + self.q_mean.pow(2).sum() - d * m - d * log_det)

    def predict(self, in_mean: Tensor, in_var: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Moment-matched predictive of the layer output with noise: mean ψ1 A m and variance
        E[f²] − mean² + β⁻¹, ``[B, Q], [B, Q] -> [B, D], [B, D]``."""
        mean, var_f = self.moments(in_mean, in_var)
        return mean, var_f.clamp_min(0) + self.noise_var

    @torch.no_grad()
    def set_optimal_q_u(
        self, in_mean: Tensor, in_var: Tensor | None, target: Tensor, scale: float = 1.0
    ) -> None:
        """Set q(U) to the maximiser of the bound for these inputs and fully observed targets
        ``[B, D]`` (``scale``: weight of each point, N/B for a minibatch). Whitened, with
        Φ = L⁻¹ (Σ_n ψ2_n) L⁻ᵀ: S = (I + βΦ)⁻¹ and m = β S L⁻¹ Σ_n ψ1_nᵀ t_n (Titsias 2009)."""
        self.natural_gradient_step(in_mean, in_var, target, scale, step=1.0)

    @torch.no_grad()
    def natural_gradient_step(
        self,
        in_mean: Tensor,
        in_var: Tensor | None,
        target: Tensor,
        scale: float = 1.0,
        step: float = 0.1,
    ) -> None:
        """One natural-gradient step of size ``step`` ∈ (0, 1] on q(U) (Hensman, Fusi &
        Lawrence 2013, eq. 8-9): the natural parameters (Λ = S⁻¹, Λm) move to
        ``(1 − step)·current + step·optimum`` for this (minibatch of) inputs and targets
        ``[B, D]`` weighted by ``scale`` (N/B); ``step = 1`` jumps to the optimum. With a
        Gaussian likelihood this is exact SVI; the other parameters keep their gradients."""
        if not 0 < step <= 1:
            raise ValueError(f"step must be in (0, 1], got {step}")
        in_var = self._check_inputs(in_mean, in_var)
        _check_2d("target", target, self.output_dim, in_mean.shape[0])
        chol = self.chol_kzz()
        psi1 = self.kernel.psi1(in_mean, in_var, self.inducing)
        psi2 = scale * self.kernel.psi2(in_mean, in_var, self.inducing).sum(0)
        half = torch.linalg.solve_triangular(chol, psi2, upper=False)
        phi = torch.linalg.solve_triangular(chol, half.T, upper=False)  # L⁻¹ ψ2 L⁻ᵀ
        beta = 1 / self.noise_var
        eye = torch.eye(self.num_inducing, dtype=chol.dtype, device=chol.device)
        precision = eye + beta * (phi + phi.T) / 2
        shifted = beta * scale * torch.linalg.solve_triangular(chol, psi1.T @ target, upper=False)
        if step < 1:
            current = torch.cholesky_inverse(self.q_scale_tril)  # Λ = S⁻¹
            precision = (1 - step) * (current + current.T) / 2 + step * precision
            shifted = (1 - step) * current @ self.q_mean + step * shifted
        prec_chol = torch.linalg.cholesky(precision)
        cov = torch.cholesky_solve(eye, prec_chol)
        self.q_mean.copy_(torch.cholesky_solve(shifted, prec_chol))
        cov_chol = torch.linalg.cholesky((cov + cov.T) / 2)
        self.q_tril.copy_(cov_chol.tril(-1))
        self.q_log_diag.copy_(cov_chol.diagonal().log())

    def q_u_parameters(self) -> list[nn.Parameter]:
        """q(U)'s parameters (``q_mean``, ``q_tril``, ``q_log_diag``), for optimisers that
        leave them to :meth:`natural_gradient_step`."""
        return [self.q_mean, self.q_tril, self.q_log_diag]

    @torch.no_grad()
    def initialise(
        self,
        in_mean: Tensor,
        in_var: Tensor,
        target: Tensor,
        target_var: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """Z from a random subset of ``in_mean`` (repeated with small noise when M > B), RBF
        lengthscales from the median pairwise distance of ``in_mean``, σ_f² (RBF) or α (linear)
        from the target variance (spread of ``target`` plus mean ``target_var``), noise
        variance 0.1 of it, and q(U) at its optimum given the target means."""
        n, m = in_mean.shape[0], self.num_inducing
        idx = torch.randperm(n, generator=generator)[:m].to(in_mean.device)
        z = in_mean[idx]
        if m > n:
            extra = in_mean[torch.randint(n, (m - n,), generator=generator).to(in_mean.device)]
            noise = torch.randn(extra.shape, generator=generator, dtype=extra.dtype)
            z = torch.cat([z, extra + 0.1 * in_mean.std(0) * noise.to(extra.device)])
        self.inducing.copy_(z)
        spread = target.var(0).mean() if n > 1 else target.new_tensor(1.0)
        if target_var is not None:
            spread = spread + target_var.mean()
        target_var = spread.clamp_min(1e-8)
        if isinstance(self.kernel, RBFKernel):
            dist = torch.pdist(in_mean) if n > 1 else in_mean.new_ones(1)
            self.kernel.log_lengthscale.fill_(dist.median().clamp_min(1e-3).log().item())
            self.kernel.log_variance.fill_(target_var.log().item())
        elif isinstance(self.kernel, LinearKernel):
            power = (in_mean.pow(2) + in_var).mean(0).clamp_min(1e-8)  # [Q]
            self.kernel.log_variances.copy_((target_var / (power * self.input_dim)).log())
        self.log_noise_var.fill_((0.1 * target_var).log().item())
        self.set_optimal_q_u(in_mean, in_var, target)


def _layer_list(
    dims: list[int], num_inducing: int | Sequence[int], kernel: str
) -> list[SparseGPLayer]:
    """GP layers ``dims[k+1] -> dims[k]`` for k = 0 … len(dims) − 2."""
    count = len(dims) - 1
    ms = [num_inducing] * count if isinstance(num_inducing, int) else list(num_inducing)
    if len(ms) != count:
        raise ValueError(f"num_inducing must be an int or {count} ints, got {ms}")
    _check_dims("num_inducing", ms)
    return [SparseGPLayer(dims[k + 1], dims[k], ms[k], kernel) for k in range(count)]


class VAEDGP(nn.Module):
    """VAE-DGP: a deep GP latent variable model with an MLP recognition model.

    Args:
        data_dim: D, the width of ``y``.
        latent_dims: ``Q_1, …, Q_L`` bottom (next to ``y``) to top, e.g. ``[5, 2]``.
        num_inducing: M, for every layer or one per layer (bottom first).
        recognition_hidden: hidden widths of each recognition MLP g_l.
        recognition: amortise q(X) with MLPs (VAE-DGP); ``False`` gives free per-point
            parameters for ``num_points`` points (Bayesian GP-LVM when ``L = 1``).
        num_points: N, needed when ``recognition=False``.
        kernel: ``"rbf"`` or ``"linear"`` for every layer.
        activation: of the recognition MLPs.
    """

    def __init__(
        self,
        data_dim: int,
        latent_dims: Sequence[int],
        num_inducing: int | Sequence[int],
        recognition_hidden: Sequence[int] = (50,),
        recognition: bool = True,
        num_points: int | None = None,
        kernel: str = "rbf",
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        _check_dims("data_dim", [data_dim])
        self.latent_dims = _check_dims("latent_dims", latent_dims)
        _check_dims("recognition_hidden", recognition_hidden, allow_empty=True)
        self.data_dim = data_dim
        dims = [data_dim, *self.latent_dims]
        self.layers = nn.ModuleList(_layer_list(dims, num_inducing, kernel))
        self.amortised = recognition
        if recognition:
            ins = [2 * data_dim, *self.latent_dims[:-1]]
            self.encoders = nn.ModuleList(
                _recognition_mlp(i, recognition_hidden, q, activation)
                for i, q in zip(ins, self.latent_dims, strict=True)
            )
            self.num_points = num_points
        else:
            if num_points is None or num_points < 1:
                raise ValueError(f"recognition=False needs num_points >= 1, got {num_points}")
            self.num_points = num_points
            self.free_means = nn.ParameterList(
                nn.Parameter(torch.randn(num_points, q)) for q in self.latent_dims
            )
            self.free_log_vars = nn.ParameterList(
                nn.Parameter(torch.full((num_points, q), log(0.1))) for q in self.latent_dims
            )
        self.register_buffer("fill_value", torch.zeros(data_dim))
        self.register_buffer("input_scale", torch.ones(()))

    def _fill(self, y: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Validate; return y with masked entries set to ``fill_value`` and the bool mask."""
        _check_2d("y", y, self.data_dim)
        y = y.to(self.fill_value)
        if mask is not None:
            if mask.shape != y.shape:
                raise ValueError(f"mask must have shape {list(y.shape)}, got {list(mask.shape)}")
            mask = mask.to(device=y.device, dtype=torch.bool)
            y = torch.where(mask, y, self.fill_value.expand_as(y))
        return y, mask

    def _prepare(
        self, y: Tensor, mask: Tensor | None, index: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Validate; return y with masked entries set to ``fill_value``, the mask and index."""
        y, mask = self._fill(y, mask)
        if not self.amortised:
            if index is None:
                if y.shape[0] != self.num_points:
                    raise ValueError(
                        f"without index, y must hold all {self.num_points} points, got {y.shape[0]}"
                    )
                index = torch.arange(self.num_points, device=y.device)
            elif index.shape != (y.shape[0],):
                raise ValueError(f"index must have shape [{y.shape[0]}], got {list(index.shape)}")
        return y, mask, index

    def _posteriors(
        self, y: Tensor, mask: Tensor | None, index: Tensor | None
    ) -> list[tuple[Tensor, Tensor]]:
        if not self.amortised:
            return [
                (mu[index], logvar[index].exp())
                for mu, logvar in zip(self.free_means, self.free_log_vars, strict=True)
            ]
        observed = torch.ones_like(y) if mask is None else mask.to(y.dtype)
        out = [_gaussian_head(self.encoders[0], self._encoder_input(y, observed))]
        for net in self.encoders[1:]:
            out.append(_gaussian_head(net, out[-1][0]))  # μ_l = g_l(μ_{l−1})
        return out

    def _encoder_input(self, y: Tensor, observed: Tensor) -> Tensor:
        """g_1's input ``[B, 2D]``: standardised ``(y − fill_value) / input_scale`` (0 where
        missing) beside ``mask − 1`` (0 where observed, −1 where missing: no constant inputs
        on complete data, whose weights would all move together under Adam)."""
        return torch.cat([(y - self.fill_value) / self.input_scale, observed - 1], -1)

    def recognition(
        self, y: Tensor, mask: Tensor | None = None, index: Tensor | None = None
    ) -> list[tuple[Tensor, Tensor]]:
        """q(X_l) = N(mean, diag var) for l = 1 … L (bottom first): ``[B, Q_l]`` each.

        Args:
            y: data ``[B, D]``.
            mask: bool ``[B, D]``, True where observed (missing entries may hold anything).
            index: ``[B]`` row numbers into the free parameters (``recognition=False`` only;
                default all ``num_points`` rows).
        """
        return self._posteriors(*self._prepare(y, mask, index))

    def bound(
        self,
        y: Tensor,
        mask: Tensor | None = None,
        num_data: int | None = None,
        index: Tensor | None = None,
    ) -> Tensor:
        """Per-point share of the bound ``[B]``: ``bound(y_batch, num_data=N).mean() * N``
        estimates the full bound without bias (``num_data`` defaults to B)."""
        y, mask, index = self._prepare(y, mask, index)
        return self.posterior_bound(self._posteriors(y, mask, index), y, mask, num_data)

    def posterior_bound(
        self,
        posteriors: Sequence[tuple[Tensor, Tensor]],
        y: Tensor,
        mask: Tensor | None = None,
        num_data: int | None = None,
    ) -> Tensor:
        """The per-point bound ``[B]`` of :meth:`bound` for given q(X_l) = N(mean, diag var)
        (``[B, Q_l]`` each, bottom first) instead of the model's own; ``y`` must already have
        its missing entries filled (as :meth:`refine_posteriors` passes it)."""
        num_data = y.shape[0] if num_data is None else num_data
        if num_data < 1:
            raise ValueError(f"num_data must be >= 1, got {num_data}")
        qs = list(posteriors)
        if len(qs) != len(self.layers):
            raise ValueError(f"need {len(self.layers)} posteriors (one per layer), got {len(qs)}")
        centred = y - self.fill_value  # the bottom GP models y − fill_value (zero-mean GP)
        total = self.layers[0].expected_log_lik(*qs[0], centred, mask=mask)
        for layer, (mean, var), below in zip(self.layers[1:], qs[1:], qs[:-1], strict=True):
            total = total + layer.expected_log_lik(mean, var, *below)
            total = total + _gaussian_entropy(below[1])  # H[q(X_l)], hidden layers l < L
        total = total - _kl_standard_normal(*qs[-1])  # E[log p(X_L)] + H[q(X_L)]
        kl_u = sum(layer.kl_u() for layer in self.layers)
        return total - kl_u / num_data

    @torch.enable_grad()
    def refine_posteriors(
        self,
        y: Tensor,
        mask: Tensor | None = None,
        steps: int = 200,
        lr: float = 0.05,
        index: Tensor | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """Test-time inference: q(X_l) of new points fitted by Adam on their bound with the model
        held fixed, starting from the recognition model's output (or the free parameters at
        ``index``). Each point's bound depends on its own q only, so the points are fitted
        independently. Returns detached ``(mean, var)`` ``[B, Q_l]`` per layer, bottom first.

        Use it where the recognition model has not seen the pattern of missing entries (e.g.
        it was trained on complete data), or for points outside a GP-LVM's training set
        (``recognition=False``; starts at N(0, 0.1·I) when ``index`` is None).
        """
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if not self.amortised and index is None:
            y, mask = self._fill(y, mask)
            start = [
                (y.new_zeros(y.shape[0], q), y.new_full((y.shape[0], q), 0.1))
                for q in self.latent_dims
            ]
        else:
            y, mask, index = self._prepare(y, mask, index)
            with torch.no_grad():
                start = self._posteriors(y, mask, index)
        means = [m.detach().clone().requires_grad_() for m, _ in start]
        log_vars = [v.detach().log().requires_grad_() for _, v in start]
        optimiser = torch.optim.Adam([*means, *log_vars], lr=lr)
        frozen = [p.requires_grad for p in self.parameters()]
        self.requires_grad_(False)
        try:
            for _ in range(steps):
                optimiser.zero_grad()
                qs = [(m, lv.exp()) for m, lv in zip(means, log_vars, strict=True)]
                (-self.posterior_bound(qs, y, mask).sum()).backward()
                optimiser.step()
        finally:
            for p, flag in zip(self.parameters(), frozen, strict=True):
                p.requires_grad_(flag)
        return [(m.detach(), lv.detach().exp()) for m, lv in zip(means, log_vars, strict=True)]

    def decode(self, mean: Tensor, var: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Moment-matched predictive of ``y`` from a top-layer Gaussian ``[B, Q_L]``, propagated
        down the layers: ``-> (mean [B, D], var [B, D])``."""
        for layer in reversed(self.layers):
            mean, var = layer.predict(mean, var)
        return mean + self.fill_value, var

    def impute(
        self, y: Tensor, mask: Tensor, index: Tensor | None = None, steps: int = 0, lr: float = 0.05
    ) -> Tensor:
        """``y`` with its missing entries (``mask`` False) replaced by the predictive mean of
        the bottom layer at q(X_1): ``[B, D]``; observed entries are returned unchanged.
        ``steps > 0`` first refines q by :meth:`refine_posteriors` on the observed entries."""
        if steps > 0:
            (mean, var), *_ = self.refine_posteriors(y, mask, steps, lr, index)
            y, mask = self._fill(y, mask)
        else:
            y, mask, index = self._prepare(y, mask, index)
            (mean, var), *_ = self._posteriors(y, mask, index)
        with torch.no_grad():
            pred, _ = self.layers[0].predict(mean, var)
        return torch.where(mask, y, pred + self.fill_value)

    @torch.no_grad()
    def natural_gradient_step(
        self, y: Tensor, num_data: int, step: float = 0.1, index: Tensor | None = None
    ) -> None:
        """One natural-gradient step on every layer's q(U) from the complete minibatch
        ``y [B, D]`` of a data set of ``num_data`` points, at the current q(X) (SVI, Hensman et
        al. 2013; see :meth:`SparseGPLayer.natural_gradient_step`). Layer l's targets are y −
        ``fill_value`` (l = 1) or the means of q(X_{l−1}); their variances do not move q(U)."""
        y, _, index = self._prepare(y, None, index)
        qs = self._posteriors(y, None, index)
        targets = [y - self.fill_value, *(mean for mean, _ in qs[:-1])]
        scale = num_data / y.shape[0]
        for layer, (mean, var), target in zip(self.layers, qs, targets, strict=True):
            layer.natural_gradient_step(mean, var, target, scale, step)

    def encode(self, y: Tensor, mask: Tensor | None = None, index: Tensor | None = None) -> Tensor:
        """Mean of the top latent q(X_L): ``[B, Q_L]``."""
        return self.recognition(y, mask, index)[-1][0]

    @torch.no_grad()
    def initialise(
        self,
        y: Tensor,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        latent_init: str = "pca",
    ) -> "VAEDGP":
        """Data-driven initialisation (returns ``self``): ``fill_value`` = observed column means;
        with ``recognition=True`` each MLP's output layer is rescaled (bottom up) so the initial
        latent means have zero mean and unit variance per dimension on ``y``; with
        ``recognition=False`` the free means start at the PCA scores of the layer below
        (``latent_init="pca"``, unit variance) or stay N(0, 1) draws (``"random"``); then every
        layer, bottom up, is set by :meth:`SparseGPLayer.initialise` from its current inputs
        q(X_l) and targets (filled ``y``, or q(X_{l−1}))."""
        if latent_init not in ("pca", "random"):
            raise ValueError(f"latent_init must be 'pca' or 'random', got {latent_init!r}")
        _check_2d("y", y, self.data_dim)
        y = y.to(self.fill_value)
        observed = torch.ones_like(y) if mask is None else mask.to(y)
        counts = observed.sum(0).clamp_min(1)
        self.fill_value.copy_((torch.where(observed > 0, y, 0).sum(0)) / counts)
        centred = torch.where(observed > 0, y - self.fill_value, 0)
        spread = centred.pow(2).sum() / observed.sum().clamp_min(1)
        self.input_scale.copy_(spread.sqrt().clamp_min(1e-6))
        y, mask, index = self._prepare(y, mask, None)
        if not self.amortised and latent_init == "pca":
            below = y
            for mu in self.free_means:
                mu.copy_(_pca_scores(below, mu.shape[1], generator))
                below = mu
        if self.amortised:
            observed = torch.ones_like(y) if mask is None else mask.to(y.dtype)
            below = self._encoder_input(y, observed)
            for net in self.encoders:
                _standardise_head(net, below)
                below = _gaussian_head(net, below)[0]
        qs = self._posteriors(y, mask, index)
        targets = [(y - self.fill_value, None), *qs[:-1]]
        for layer, (mean, var), target in zip(self.layers, qs, targets, strict=True):
            layer.initialise(mean, var, *target, generator=generator)
        return self


def _pca_scores(x: Tensor, q: int, generator: torch.Generator | None) -> Tensor:
    """Top-q principal component scores of ``x: [N, D]``, each scaled to unit variance (padded
    with standard normal columns when q > rank): ``[N, q]``."""
    centred = x - x.mean(0)
    u, _, _ = torch.linalg.svd(centred, full_matrices=False)
    scores = u[:, :q] * x.shape[0] ** 0.5
    if scores.shape[1] < q:
        pad = torch.randn(x.shape[0], q - scores.shape[1], generator=generator, dtype=x.dtype)
        scores = torch.cat([scores, pad.to(x.device)], 1)
    return scores


class DeepGPRegressor(nn.Module):
    """Deep GP regression ``X → H_1 → … → H_K → Y`` with the same Ψ-statistics bound.

    The observed inputs X feed the first GP layer deterministically (``in_var = 0``). Each
    hidden layer has q(H_k) = N(μ_k, diag s_k) from a recognition MLP of the layer before it:
    ``(μ_1, s_1) = r_1(x)``, ``(μ_k, s_k) = r_k(μ_{k−1})`` (amortised on x, so usable at test
    time, but predictions propagate moments through the GP layers instead, as the model does).
    With ``hidden_dims=[]`` this is sparse variational GP regression (SVGP, Hensman et al. 2013).

    Args:
        input_dim: width of x.
        output_dim: width of y.
        hidden_dims: widths of H_1 … H_K from the input side to the output side.
        num_inducing: M, for every layer or one per layer (input side first).
        recognition_hidden: hidden widths of each recognition MLP.
        kernel: ``"rbf"`` or ``"linear"`` for every layer.
        activation: of the recognition MLPs.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        hidden_dims: Sequence[int] = (),
        num_inducing: int | Sequence[int] = 50,
        recognition_hidden: Sequence[int] = (50,),
        kernel: str = "rbf",
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        _check_dims("input_dim and output_dim", [input_dim, output_dim])
        self.hidden_dims = _check_dims("hidden_dims", hidden_dims, allow_empty=True)
        _check_dims("recognition_hidden", recognition_hidden, allow_empty=True)
        self.input_dim, self.output_dim = input_dim, output_dim
        dims = [input_dim, *self.hidden_dims, output_dim]
        # _layer_list builds dims[k+1] -> dims[k]; reverse so layer k maps dims[k] -> dims[k+1].
        ms = num_inducing if isinstance(num_inducing, int) else list(num_inducing)[::-1]
        self.layers = nn.ModuleList(_layer_list(dims[::-1], ms, kernel)[::-1])
        self.encoders = nn.ModuleList(
            _recognition_mlp(dims[k], recognition_hidden, dims[k + 1], activation)
            for k in range(len(self.hidden_dims))
        )

    def _check(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        ref = self.layers[0].inducing
        _check_2d("x", x, self.input_dim)
        if y is not None:
            _check_2d("y", y, self.output_dim, x.shape[0])
            y = y.to(ref)
        return x.to(ref), y

    def hidden_posteriors(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """q(H_k) = N(mean, diag var), ``[B, dim H_k]`` each, input side first."""
        x, _ = self._check(x)
        out: list[tuple[Tensor, Tensor]] = []
        for net in self.encoders:
            out.append(_gaussian_head(net, out[-1][0] if out else x))
        return out

    def bound(self, x: Tensor, y: Tensor, num_data: int | None = None) -> Tensor:
        """Per-point share of the bound ``[B]`` (KL(q(U)) / num_data each; default B), so
        ``bound(x, y).sum()`` is the full-data bound and minibatch means scale by N."""
        x, y = self._check(x, y)
        num_data = x.shape[0] if num_data is None else num_data
        if num_data < 1:
            raise ValueError(f"num_data must be >= 1, got {num_data}")
        qs = self.hidden_posteriors(x)
        inputs = [(x, None), *qs]
        targets = [*qs, (y, None)]
        total = x.new_zeros(x.shape[0])
        for layer, inp, target in zip(self.layers, inputs, targets, strict=True):
            total = total + layer.expected_log_lik(*inp, *target)
        for _, var in qs:
            total = total + _gaussian_entropy(var)
        return total - sum(layer.kl_u() for layer in self.layers) / num_data

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Moment-matched predictive of y (noise included): ``[B, Q] -> ([B, D], [B, D])``."""
        mean, _ = self._check(x)
        var = None
        for layer in self.layers:
            mean, var = layer.predict(mean, var)
        return mean, var

    def log_predictive(self, x: Tensor, y: Tensor) -> Tensor:
        """log N(y | predictive mean, diag predictive var) summed over outputs: ``[B]``."""
        x, y = self._check(x, y)
        mean, var = self.predict(x)
        return -0.5 * (log(2 * pi) + var.log() + (y - mean).pow(2) / var).sum(-1)

    @torch.no_grad()
    def initialise(
        self, x: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> "DeepGPRegressor":
        """Data-driven initialisation (returns ``self``): the recognition MLPs' output layers
        are rescaled so the initial hidden means have zero mean and unit variance per dimension
        on ``x``; then each layer is set by :meth:`SparseGPLayer.initialise` from its inputs
        (x, then q(H_k)) and targets (q(H_{k+1}), then y)."""
        x, y = self._check(x, y)
        below = x
        for net in self.encoders:
            _standardise_head(net, below)
            below = _gaussian_head(net, below)[0]
        qs = self.hidden_posteriors(x)
        inputs = [(x, torch.zeros_like(x)), *qs]
        targets = [*qs, (y, None)]
        for layer, (mean, var), target in zip(self.layers, inputs, targets, strict=True):
            layer.initialise(mean, var, *target, generator=generator)
        return self
