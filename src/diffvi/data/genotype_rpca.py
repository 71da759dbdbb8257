"""Streaming randomised PCA of genotype matrices: memory ``O(N·(k + p))``, whatever ``M``.

The exact PCA of :func:`diffvi.data.genotype_pca.genotype_pcs` builds the ``N × N`` Gram matrix:
40 GB at 70,000 samples, 1 TB at 360,000. :func:`randomized_pcs` never forms it, nor the
``[N, M]`` calls: it reads the variants in windows of columns through a block reader
(:class:`VariantBlocks`: :class:`~diffvi.data.genotypes.Genotypes` in memory, or
:class:`~diffvi.data.genotype_io.PlinkBlocks` over a ``.bed``) and keeps only ``N × l``
matrices, ``l = k + p`` (``k`` components, ``p`` oversampling columns).

Passes over the data (each one read of every window):

0. **Counts** (:func:`select_variants`): per variant the non-missing calls and counted
   alleles, hence the allele frequency ``p_j``, the minor-allele-frequency / missingness /
   thinning filter (:func:`~diffvi.data.genotype_pca.variant_filter`, the rule of
   ``quality_control``) and the centring (and standardising) constants. The analysed matrix
   is ``X = (g - 2p) / s`` with missing calls 0 (``s = 1``, or ``sqrt(2p(1-p))`` when
   ``standardize``): :func:`~diffvi.data.genotype_pca.centred_block` applies it to each window
   as it is read, the same function the exact path uses.
1. … q. **Subspace iteration** on the Gram operator ``A = X Xᵀ`` (Halko, Martinsson & Tropp
   2011, Algorithm 4.4, i.e. randomised block power iteration): ``Q₀ = qr(G)`` with ``G``
   standard normal ``[N, l]`` from ``seed``; pass ``i`` computes
   ``Z_i = A Q_{i-1} = Σ_b X_b (X_bᵀ Q_{i-1})`` over the windows ``X_b`` and re-orthonormalises,
   ``Q_i = qr(Z_i)``. The range of ``Z_q = A^q G`` aligns with the top eigenvectors at rate
   ``(λ_{l+1} / λ_j)^q`` for eigenvalue ``j ≤ k``.

The last pass's product feeds a **Nyström** approximation instead of a further pass (Tropp,
Yurtsever, Udell & Cevher 2017, "Fixed-rank approximation of a positive-semidefinite matrix
from streaming data", Algorithm 3): ``A ≈ Y (Qᵀ Y)⁻¹ Yᵀ`` with ``Q = Q_{q-1}``,
``Y = Z_q + νQ`` (a shift ``ν`` of the order of rounding, for stability, removed
afterwards); the SVD of ``F = Y (QᵀY)^{-1/2}`` gives eigenvectors ``U`` and eigenvalues
``λ = σ² - ν``. The approximation is dominated by ``A`` (``A - Â`` is PSD), so each ``λ_j`` is
at most the exact one. Scores are ``U_{:k} λ_{:k}^{1/2}``, the exact path's up to rounding and
the approximation error, with the same sign convention (each column's entry of largest
magnitude positive) and the same ``scale``.

Cost: ``q + 1`` passes; each subspace pass does ``4 N M' l`` flops (two GEMMs per window).
Memory: ``Q`` in the working ``dtype`` (float32 by default: the GEMMs; float64 for exact
tests) and ``Z`` in float64 (sums over windows, QR, Nyström), about ``(8 + 8 + 4) N l`` bytes
with the QR's workspace, plus one window (``N × b`` int8 and ``dtype``), ``b`` chosen so a
window takes about 256 MiB unless ``chunk_size`` is given. The result does not depend on the
window size beyond rounding: ``G`` is drawn over samples, not variants. The window's buffers
(int8 calls, missing mask, float window, ``[N, l]`` product) are allocated once per pass (per
task on Dask) and reused for every window: fresh ones each time cost as much system time (the
kernel mapping and zeroing pages) as a third of the GEMMs' user time.

**Dask.** With a ``distributed.Client`` (:func:`dask_client`: a ``LocalCluster`` or
``dask://HOST:PORT``) every pass runs as tasks, each over a contiguous range of windows through
the same block reader, pickled to the workers (a :class:`~diffvi.data.genotype_io.PlinkBlocks`
reopens its file there, so the path must be visible to every worker). ``Q`` is sent once per
pass; each task returns its ``[N, l]`` partial product (or its counts), summed as they arrive.
The numbers equal the local path's up to the order of the sums.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from diffvi.data.genotype_pca import (
    allele_frequency,
    centred_block,
    column_counts,
    variant_filter,
)

__all__ = [
    "AUTO_SAMPLES",
    "PCA_METHODS",
    "VariantBlocks",
    "VariantSelection",
    "choose_pca",
    "dask_client",
    "default_chunk_size",
    "randomized_pcs",
    "select_variants",
]

log = logging.getLogger(__name__)

# `auto` takes the randomised PCA above this many samples: the exact path's Gram matrix is
# 8 N² bytes (3.2 GB at 20,000) and its time O(N² M).
AUTO_SAMPLES = 20_000
BLOCK_BYTES = 256 * 2**20  # the default window: about this many bytes of int8 + float
PCA_METHODS = ("exact", "randomized", "auto")
_CLUSTER_HINT = "pip install 'diffvi[cluster]'"
_ADDRESSES = ("dask://", "tcp://", "tls://", "inproc://")  # a scheduler's address


class VariantBlocks(Protocol):
    """Windows of variant columns: what the streaming PCA reads."""

    @property
    def num_samples(self) -> int: ...

    @property
    def num_variants(self) -> int: ...

    def read(self, start: int, stop: int) -> np.ndarray:
        """int8 ``[N, stop - start]`` calls (``MISSING`` = -1) of variants ``start:stop``.

        A reader whose class sets ``reads_into = True`` (``PlinkBlocks``) also takes
        ``out=``, a Fortran-ordered int8 ``[N, >= stop - start]`` buffer to decode into, and
        returns a view of it: the passes then reuse one buffer for every window."""
        ...


@dataclass
class VariantSelection:
    """The outcome of the counting pass.

    Attributes:
        index: int64 ``[M']`` kept columns of the reader, increasing.
        frequency: float64 ``[M']`` their counted-allele frequencies.
        num_variants_read: ``M``, the reader's columns.
    """

    index: np.ndarray
    frequency: np.ndarray
    num_variants_read: int

    @property
    def num_variants(self) -> int:
        return len(self.index)


def default_chunk_size(num_samples: int, itemsize: int = 4) -> int:
    """Variant columns per window so that its int8 calls and float copy take about
    :data:`BLOCK_BYTES` (256 MiB), within [64, 16384]."""
    return int(min(16384, max(64, BLOCK_BYTES // (max(num_samples, 1) * (1 + itemsize)))))


def choose_pca(
    method: str, num_samples: int, num_variants: int, memory_bytes: int | None = None
) -> Literal["exact", "randomized"]:
    """The PCA that ``method`` (``exact``, ``randomized`` or ``auto``) means for ``[N, M]``.

    ``auto`` is ``randomized`` when ``N > AUTO_SAMPLES`` (20,000) or when the exact path's
    Gram matrix and int8 calls (``8 N² + N M`` bytes) would take more than half of
    ``memory_bytes`` (default: this machine's physical memory); else ``exact``.
    """
    if method not in PCA_METHODS:
        raise ValueError(f"pca must be one of {PCA_METHODS}, got {method!r}")
    if method != "auto":
        return method  # type: ignore[return-value]
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    need = 8 * num_samples**2 + num_samples * num_variants
    return "randomized" if num_samples > AUTO_SAMPLES or need > memory_bytes / 2 else "exact"


# --------------------------------------------------------------------------------------------
# passes: the work of one task (a range of windows), module-level so that Dask can pickle it


@dataclass
class _Window:
    """Variants ``start:stop`` of the reader, of which the columns ``columns`` (relative to
    ``start``; ``None``: all) are analysed with frequencies ``frequency``."""

    start: int
    stop: int
    columns: np.ndarray | None = None
    frequency: np.ndarray | None = None


class _Buffers:
    """Window buffers reused across the windows of a pass (and across passes): the int8 calls
    as read, their kept columns, the missing-call mask, the float window and the ``[N, l]``
    product. A window of 100,000 samples is ~50 MB of int8 and ~200 MB of float32; allocating
    those afresh for each window maps and zero-fills new pages every time (system time)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, rows: int, columns: int, dtype: Any, order: str = "F") -> np.ndarray:
        """A ``[rows, >= columns]`` array of ``dtype`` (grown, never shrunk)."""
        a = self._arrays.get(name)
        if a is None or a.shape[0] != rows or a.shape[1] < columns or a.dtype != dtype:
            a = self._arrays[name] = np.empty((rows, columns), dtype=dtype, order=order)
        return a

    def calls(self, blocks: VariantBlocks, w: _Window) -> np.ndarray:
        """int8 calls of the window's analysed columns, in the buffers."""
        n = blocks.num_samples
        if getattr(blocks, "reads_into", False):
            out = self.get("read", n, w.stop - w.start, np.int8)
            calls = blocks.read(w.start, w.stop, out=out)  # type: ignore[call-arg]
        else:
            calls = blocks.read(w.start, w.stop)
        if w.columns is not None:
            kept = self.get("kept", n, w.stop - w.start, np.int8)[:, : len(w.columns)]
            calls = np.take(calls, w.columns, axis=1, out=kept, mode="clip")  # unbuffered
        return calls


def _count(
    blocks: VariantBlocks, windows: Sequence[_Window], buffers: _Buffers | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(observed, alt)`` int64 over the windows' variants, in order."""
    buffers = _Buffers() if buffers is None else buffers
    parts = []
    for w in windows:
        calls = buffers.calls(blocks, w)
        mask = buffers.get("mask", calls.shape[0], w.stop - w.start, np.bool_)
        parts.append(column_counts(calls, mask))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _gram_product(
    blocks: VariantBlocks,
    windows: Iterable[_Window],
    q: np.ndarray,
    standardize: bool,
    buffers: _Buffers | None = None,
) -> np.ndarray:
    """float64 ``[N, l]``: ``Σ_b X_b (X_bᵀ q)`` over the windows (``q`` in the GEMM dtype),
    through ``buffers`` (new ones when ``None``)."""
    buffers = _Buffers() if buffers is None else buffers
    n = q.shape[0]
    z = np.zeros(q.shape, dtype=np.float64)
    product = buffers.get("product", n, q.shape[1], q.dtype, order="C")[:, : q.shape[1]]
    for w in windows:
        calls = buffers.calls(blocks, w)
        b = w.stop - w.start  # the window's width, whatever it keeps: one size for all
        x = centred_block(
            calls, w.frequency, standardize, q.dtype.type,  # type: ignore[arg-type]
            out=buffers.get("window", n, b, q.dtype), mask=buffers.get("mask", n, b, np.bool_),
        )  # fmt: skip
        z += np.matmul(x, x.T @ q, out=product)
    return z


def _groups(windows: list[_Window], count: int) -> list[list[_Window]]:
    """``windows`` in ``count`` contiguous groups of near-equal size."""
    count = max(1, min(count, len(windows)))
    bounds = np.linspace(0, len(windows), count + 1).round().astype(int)
    return [windows[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _run_pass(
    work: Callable[..., Any],
    blocks: VariantBlocks,
    windows: list[_Window],
    extra: tuple,
    combine: Callable[[list[Any]], Any],
    client: Any,
    desc: str,
    progress: bool,
) -> Any:
    """``combine`` of ``work(blocks, group, *extra)`` over groups of windows: one window at a
    time here, or Dask tasks of contiguous window ranges (2 per worker) on ``client``."""
    from diffvi.utils.progress import progress as bar

    if client is None:
        buffers = _Buffers()  # one set for the whole pass
        if work is _gram_product:  # sums as it goes: one [N, l] accumulator
            return work(blocks, bar(windows, desc=desc, enable=progress), *extra, buffers)
        return combine([work(blocks, [w], *extra, buffers) for w in bar(windows, desc, progress)])
    from distributed import as_completed

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    groups = _groups(windows, 2 * workers)
    # Unique keys (hash=False): a pass must not share a key with the previous pass's release.
    shared = [
        client.scatter(e, broadcast=True, hash=False) if isinstance(e, np.ndarray) else e
        for e in extra
    ]
    blocks_future = client.scatter(blocks, broadcast=True, hash=False)
    futures = [client.submit(work, blocks_future, group, *shared, pure=False) for group in groups]
    order = {f.key: i for i, f in enumerate(futures)}
    if work is _gram_product:
        total = None
        for future in bar(as_completed(futures), desc, progress, total=len(futures)):
            part = future.result()
            total = part if total is None else total.__iadd__(part)
            future.release()
        return total
    results: list[Any] = [None] * len(futures)
    for future in bar(as_completed(futures), desc, progress, total=len(futures)):
        results[order[future.key]] = future.result()
    return combine(results)


def _windows(num_variants: int, chunk_size: int) -> list[_Window]:
    return [
        _Window(start, min(start + chunk_size, num_variants))
        for start in range(0, num_variants, chunk_size)
    ]


def _check_blocks(blocks: VariantBlocks, chunk_size: int | None) -> int:
    n, m = blocks.num_samples, blocks.num_variants
    if n < 2 or m < 1:
        raise ValueError(f"PCA needs at least 2 samples and 1 variant, got [N, M] = [{n}, {m}]")
    if chunk_size is None:
        return default_chunk_size(n)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return chunk_size


def select_variants(
    blocks: VariantBlocks,
    maf: float = 0.01,
    thin: int = 1,
    max_missing: float = 1.0,
    chunk_size: int | None = None,
    client: Any = None,
    progress: bool = False,
) -> VariantSelection:
    """Pass 0: allele counts of every variant, the quality-control filter and frequencies.

    The filter is :func:`~diffvi.data.genotype_pca.quality_control`'s (monomorphic, MAF below
    ``maf``, missing rate above ``max_missing`` dropped; every ``thin``-th kept), from counts
    taken a window at a time.

    Args:
        blocks: the reader, ``N`` samples × ``M`` variants.
        maf, thin, max_missing: as ``quality_control``.
        chunk_size: variants per window (default: :func:`default_chunk_size`).
        client: a ``distributed.Client`` to run the pass on, or ``None`` (this process).
        progress: a progress bar over the windows.

    Returns:
        The kept columns and their frequencies.
    """
    if not 0.0 <= maf <= 0.5:
        raise ValueError(f"maf must be in [0, 0.5], got {maf}")
    if isinstance(thin, bool) or not isinstance(thin, int | np.integer) or thin < 1:
        raise ValueError(f"thin must be an integer >= 1, got {thin!r}")
    if not 0.0 <= max_missing <= 1.0:
        raise ValueError(f"max_missing must be in [0, 1], got {max_missing}")
    chunk_size = _check_blocks(blocks, chunk_size)

    def combine(parts: list) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    observed, alt = _run_pass(
        _count, blocks, _windows(blocks.num_variants, chunk_size), (), combine, client,
        "PCA pass 0: allele counts", progress,
    )  # fmt: skip
    index = variant_filter(observed, alt, blocks.num_samples, maf, thin, max_missing)
    return VariantSelection(index, allele_frequency(observed[index], alt[index]), len(observed))


def _selected_windows(selection: VariantSelection, chunk_size: int) -> list[_Window]:
    """The windows holding kept variants, each with its kept columns and frequencies."""
    windows = []
    for w in _windows(selection.num_variants_read, chunk_size):
        lo, hi = np.searchsorted(selection.index, [w.start, w.stop])
        if hi > lo:
            columns = selection.index[lo:hi] - w.start
            everything = hi - lo == w.stop - w.start
            windows.append(
                _Window(w.start, w.stop, None if everything else columns,
                        selection.frequency[lo:hi])
            )  # fmt: skip
    return windows


def randomized_pcs(
    blocks: VariantBlocks,
    n_components: int = 1000,
    scale: float = 30.0,
    standardize: bool = False,
    selection: VariantSelection | None = None,
    oversampling: int | None = None,
    n_iter: int = 8,
    seed: int = 0,
    chunk_size: int | None = None,
    dtype: Literal["float32", "float64"] = "float32",
    client: Any = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Principal-component scores by streaming randomised subspace iteration (module doc).

    The matrix analysed and the returned numbers are those of
    :func:`~diffvi.data.genotype_pca.genotype_pcs` (centred calls, missing = mean, optionally
    standardised; scores / ``scale``; variances = eigenvalues / (N - 1)), approximated.

    Args:
        blocks: the reader, ``N`` samples × ``M`` variants.
        n_components: wanted components; ``k = min(n_components, N - 1, M')`` are returned, with
            a warning when that is fewer.
        scale: the scores are divided by it (> 0).
        standardize: divide each centred variant by ``sqrt(2p(1-p))``.
        selection: the kept variants and their frequencies from :func:`select_variants`
            (default: every polymorphic variant, from an extra counting pass).
        oversampling: ``p``, extra columns of the sketch (default ``max(10, k // 2)``,
            ``l = k + p``); more is more accurate and costs ``N`` floats per column.
        n_iter: ``q >= 1``, passes of subspace iteration (the last one feeds the Nyström step).
        seed: seed of the Gaussian start ``G [N, l]``.
        chunk_size: variants per window (default: :func:`default_chunk_size`).
        dtype: float type of the windows and their GEMMs; sums, QR and the Nyström step are
            float64.
        client: a ``distributed.Client`` to run the passes on, or ``None`` (this process).
        progress: progress bars over the windows of each pass.

    Returns:
        ``(scores, explained_variance)``: float32 ``[N, k]`` and float64 ``[k]``, decreasing.

    Raises:
        ValueError: fewer than 2 samples or 1 variant, ``k + p > min(N, M')`` (use the exact
            PCA, or fewer components), ``n_iter < 1`` or an unknown ``dtype``.
    """
    chunk_size = _check_blocks(blocks, chunk_size)
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if oversampling is not None and oversampling < 0:
        raise ValueError(f"oversampling must be >= 0, got {oversampling}")
    if selection is None:
        selection = select_variants(
            blocks, maf=0.0, chunk_size=chunk_size, client=client, progress=progress
        )
    n, m = blocks.num_samples, selection.num_variants
    if m < 1:
        raise ValueError(f"PCA needs at least 1 variant, got [N, M] = [{n}, {m}]")
    k = min(n_components, n - 1, m)
    if k < n_components:
        warnings.warn(
            f"asked for {n_components} components but [N, M] = [{n}, {m}] has at most "
            f"min(N - 1, M) = {k}; returning {k}",
            stacklevel=2,
        )
    p = max(10, k // 2) if oversampling is None else oversampling
    width = k + p
    if width > min(n, m):
        raise ValueError(
            f"randomized PCA needs n_components + oversampling = {k} + {p} = {width} <= "
            f"min(N, M) = min({n}, {m}); ask for fewer components or less oversampling, or use "
            "the exact PCA (small data: it is cheap)"
        )
    windows = _selected_windows(selection, chunk_size)
    work = np.dtype(dtype)
    log.info(
        "randomized PCA: N %d, M %d, k %d, l %d, %d passes of %d windows, %s",
        n, m, k, width, n_iter, len(windows), dtype,
    )  # fmt: skip

    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((n, width)))[0]
    z = q
    for i in range(n_iter):
        if i > 0:
            q = np.linalg.qr(z)[0]
        z = _run_pass(
            _gram_product, blocks, windows, (q.astype(work), standardize), sum, client,
            f"PCA pass {i + 1}/{n_iter}: X Xᵀ Q", progress,
        )  # fmt: skip
    eigenvalues, eigenvectors = _nystrom(q, z, np.finfo(work).eps)
    eigenvalues, eigenvectors = eigenvalues[:k], eigenvectors[:, :k]
    scores = eigenvectors * np.sqrt(eigenvalues)
    largest = np.abs(scores).argmax(axis=0)
    signs = np.sign(scores[largest, np.arange(k)])
    scores *= np.where(signs == 0, 1.0, signs)
    return (scores / scale).astype(np.float32), eigenvalues / (n - 1)


def _nystrom(q: np.ndarray, z: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (decreasing, ``[l]``) and eigenvectors ``[N, l]`` of the Nyström
    approximation ``Z (QᵀZ)⁺ Zᵀ`` of ``A`` from ``Z = A Q`` (Tropp et al. 2017, Alg. 3), with
    the shift ``ν = sqrt(N) · eps · ‖Z‖_F`` for stability."""
    nu = math.sqrt(q.shape[0]) * eps * float(np.linalg.norm(z))
    y = z + nu * q
    core = q.T @ y
    core = (core + core.T) / 2
    d, v = np.linalg.eigh(core)  # core = QᵀAQ + ν I: positive definite up to rounding
    keep = d > d.max() * core.shape[0] * np.finfo(np.float64).eps
    f = y @ (v[:, keep] / np.sqrt(d[keep]))  # Y core^{-1/2}: F Fᵀ = Y core⁻¹ Yᵀ
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    return np.clip(s**2 - nu, 0.0, None), u


def dask_client(scheduler: str) -> Any:
    """A ``distributed.Client`` for ``scheduler``, or ``None`` for ``local`` (this process).

    ``dask://HOST:PORT`` (or a scheduler address as Dask writes it, ``tcp://HOST:PORT``,
    ``tls://...``, ``inproc://...``) connects to a running scheduler;
    ``dask-local`` starts a ``LocalCluster`` on this machine (one single-threaded worker
    process per core). Needs the ``cluster`` extra (``pip install 'diffvi[cluster]'``).
    """
    if scheduler == "local":
        return None
    if not (scheduler == "dask-local" or scheduler.startswith(_ADDRESSES)):
        raise ValueError(
            f"scheduler must be 'local', 'dask-local' or 'dask://HOST:PORT', got {scheduler!r}"
        )
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise ImportError(f"--scheduler {scheduler} needs dask.distributed: {_CLUSTER_HINT}") from (
            error
        )
    if scheduler == "dask-local":
        return Client(LocalCluster(threads_per_worker=1, processes=True))
    return Client(scheduler.replace("dask://", "tcp://", 1))
