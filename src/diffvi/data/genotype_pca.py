"""Quality control and principal components of genotype matrices, in bounded memory.

:func:`quality_control` drops rare, badly called and monomorphic variants and thins the rest;
:func:`genotype_pcs` turns the calls into the principal-component scores that the DDVI genotype
experiments take as data. Both walk over blocks of variant columns, so neither ever holds a
float ``[N, M]`` matrix: a float64 copy of 2,504 samples × 1 million variants would take 20 GB,
its int8 calls 2.5 GB.

PCA goes through the ``N × N`` Gram matrix ``G = X Xᵀ`` of the centred calls rather than
scikit-learn's ``PCA``, which needs all of ``X`` in floating point: ``G`` is accumulated block
by block (a BLAS symmetric rank-k update per block) and its top eigenpairs give the scores,
``U·sqrt(λ) = X V`` — the same numbers as ``PCA().fit_transform(X)`` up to each component's
sign. Memory is ``O(N² + N · chunk_size)`` floats64, whatever ``M``; time is ``O(N² M)``.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from diffvi.data.genotypes import MISSING, Genotypes

__all__ = [
    "allele_frequencies",
    "allele_frequency",
    "centred_block",
    "column_counts",
    "genotype_pcs",
    "quality_control",
    "variant_filter",
]

log = logging.getLogger(__name__)


def column_counts(
    calls: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(observed, alt)``: non-missing calls and counted alleles per column of a block, int64
    (``mask``: an optional bool scratch buffer ``[N, >= b]`` of the block's layout)."""
    if mask is None:
        missing = calls == MISSING
    else:
        missing = np.equal(calls, MISSING, out=mask[:, : calls.shape[1]])
    observed = calls.shape[0] - missing.sum(axis=0, dtype=np.int64)
    alt = calls.sum(axis=0, dtype=np.int64) + missing.sum(axis=0, dtype=np.int64)  # -1 → 0
    return observed, alt


def _allele_counts(calls: np.ndarray, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(observed, alt)`` int64 ``[M]`` over the whole matrix, a block of columns at a time."""
    m = calls.shape[1]
    observed = np.empty(m, dtype=np.int64)
    alt = np.empty(m, dtype=np.int64)
    for start in range(0, m, chunk_size):
        stop = min(start + chunk_size, m)
        observed[start:stop], alt[start:stop] = column_counts(calls[:, start:stop])
    return observed, alt


def allele_frequencies(
    genotypes: Genotypes, chunk_size: int = 5000
) -> tuple[np.ndarray, np.ndarray]:
    """Per-variant frequency of the counted allele and missing rate, over non-missing calls.

    Returns:
        ``(p, missing_rate)``, float64 ``[M]`` each; ``p`` is NaN where every call is missing.
    """
    n = genotypes.num_samples
    observed, alt = _allele_counts(genotypes.calls, chunk_size)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = alt / (2.0 * observed)
    return p, 1.0 - observed / max(n, 1)


def quality_control(
    genotypes: Genotypes,
    maf: float = 0.01,
    thin: int = 1,
    max_missing: float = 1.0,
    chunk_size: int = 5000,
) -> Genotypes:
    """Keep the variants that pass allele-frequency and missingness filters, then thin them.

    A variant is dropped when it is monomorphic (or has no observed call), when its
    minor-allele frequency ``min(p, 1 - p)`` over the non-missing calls is below ``maf``, or
    when its fraction of missing calls exceeds ``max_missing``. Of the variants left, every
    ``thin``-th is kept (the 1st, the ``thin + 1``-th, ...), a crude stand-in for LD pruning.

    Args:
        genotypes: calls ``[N, M]``.
        maf: minimum minor-allele frequency, in ``[0, 0.5]``.
        thin: keep one variant in ``thin`` (≥ 1).
        max_missing: maximum fraction of missing calls, in ``[0, 1]``.
        chunk_size: variant columns per block.

    Returns:
        Genotypes ``[N, M']`` with the kept variants in their original order.
    """
    if not 0.0 <= maf <= 0.5:
        raise ValueError(f"maf must be in [0, 0.5], got {maf}")
    if isinstance(thin, bool) or not isinstance(thin, int | np.integer) or thin < 1:
        raise ValueError(f"thin must be an integer >= 1, got {thin!r}")
    if not 0.0 <= max_missing <= 1.0:
        raise ValueError(f"max_missing must be in [0, 1], got {max_missing}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    observed, alt = _allele_counts(genotypes.calls, chunk_size)
    index = variant_filter(observed, alt, genotypes.num_samples, maf, thin, max_missing)
    return genotypes.select_variants(index)


def variant_filter(
    observed: np.ndarray,
    alt: np.ndarray,
    num_samples: int,
    maf: float = 0.01,
    thin: int = 1,
    max_missing: float = 1.0,
) -> np.ndarray:
    """The columns :func:`quality_control` keeps, from per-variant counts.

    Args:
        observed: int64 ``[M]`` non-missing calls per variant.
        alt: int64 ``[M]`` counted alleles per variant (over the non-missing calls).
        num_samples: ``N``, for the missing rate.
        maf, thin, max_missing: as :func:`quality_control` (not validated here).

    Returns:
        int64 ``[M']`` indices of the kept variants, increasing.
    """
    minor_count = np.minimum(alt, 2 * observed - alt)  # exact, so maf=0.1 keeps 2 of 20
    with np.errstate(invalid="ignore", divide="ignore"):
        minor = minor_count / (2.0 * observed)  # NaN where nothing was observed
    missing_rate = 1.0 - observed / max(num_samples, 1)
    keep = (minor_count > 0) & (minor >= maf) & (missing_rate <= max_missing)
    index = np.flatnonzero(keep)[::thin]
    log.info(
        "quality control kept %d of %d variants (%d pass maf >= %g and missing <= %g, thin %d)",
        len(index),
        len(observed),
        int(keep.sum()),
        maf,
        max_missing,
        thin,
    )
    return index


def allele_frequency(observed: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """float64 ``[M]`` frequency of the counted allele over the non-missing calls, 0 where
    every call is missing (such a column centres to all zeros)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(observed > 0, alt / (2.0 * np.maximum(observed, 1)), 0.0)


def centred_block(
    calls: np.ndarray,
    frequency: np.ndarray,
    standardize: bool = False,
    dtype: type = np.float64,
    out: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """The analysed matrix of a block of columns: ``g - 2p``, missing calls 0 (mean-imputed),
    divided by ``sqrt(2p(1 - p))`` when ``standardize`` (1 where that is 0).

    Args:
        calls: int8 ``[N, b]`` (``MISSING`` for a missing call).
        frequency: float64 ``[b]`` counted-allele frequencies (:func:`allele_frequency`).
        standardize: divide by the binomial standard deviation.
        dtype: float type of the result.
        out: a Fortran-ordered ``[N, >= b]`` buffer of ``dtype`` to write into (its first
            ``b`` columns are returned), or ``None`` for a new array.
        mask: a Fortran-ordered bool ``[N, >= b]`` scratch buffer for the missing calls, or
            ``None``. The numbers are the same with or without the buffers.

    Returns:
        Fortran-ordered ``[N, b]`` array of ``dtype``.
    """
    if out is None:
        x = np.asfortranarray(calls, dtype=dtype)
    else:
        x = out[:, : calls.shape[1]]
        np.copyto(x, calls)
    x -= (2.0 * frequency).astype(dtype)
    if mask is None:
        x[calls == MISSING] = 0.0
    else:
        missing = np.equal(calls, MISSING, out=mask[:, : calls.shape[1]])
        x[missing] = 0.0
    if standardize:
        sd = np.sqrt(2.0 * frequency * (1.0 - frequency))
        x /= np.where(sd > 0, sd, 1.0).astype(dtype)
    return x


def genotype_pcs(
    genotypes: Genotypes,
    n_components: int = 1000,
    scale: float = 30.0,
    standardize: bool = False,
    chunk_size: int = 5000,
) -> tuple[np.ndarray, np.ndarray]:
    """Principal-component scores of the samples, in memory independent of ``M``.

    The matrix analysed is ``X[i, j] = g[i, j] - 2 p_j`` with missing calls set to 0 (i.e.
    imputed with the variant mean ``2 p_j`` before centring), divided by
    ``sqrt(2 p_j (1 - p_j))`` when ``standardize`` (Patterson et al. 2006); ``p_j`` is the
    frequency over non-missing calls. Scores equal ``sklearn.decomposition.PCA`` on that
    matrix up to the sign of each component, which is fixed here so that the entry of largest
    magnitude is positive.

    The official DDVI code (topwasu/DDVI, ``data/onekgenome.py``) divides the 1000 principal
    components of the 1000 Genomes samples by 30 before training; the default ``scale=30``
    reproduces that (``scale=1`` gives the raw scores).

    Memory: the ``N × N`` Gram matrix and one ``N × chunk_size`` block, float64 —
    ``O(N² + N · chunk_size)``; never a float ``[N, M]`` matrix.

    Args:
        genotypes: calls ``[N, M]`` (run :func:`quality_control` first: monomorphic variants
            add nothing).
        n_components: wanted number of components; ``k = min(n_components, N - 1, M)`` are
            returned, with a warning when that is fewer.
        scale: the scores are divided by it (> 0).
        standardize: divide each centred variant by ``sqrt(2p(1-p))``.
        chunk_size: variant columns per block.

    Returns:
        ``(scores, explained_variance)``: float32 ``[N, k]`` scores / ``scale`` and float64
        ``[k]`` variances of the unscaled scores (eigenvalues / (N - 1), as scikit-learn),
        in decreasing order.
    """
    from scipy.linalg import eigh
    from scipy.linalg.blas import dsyrk

    calls = genotypes.calls
    n, m = calls.shape
    if n < 2 or m < 1:
        raise ValueError(f"PCA needs at least 2 samples and 1 variant, got [N, M] = [{n}, {m}]")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    k = min(n_components, n - 1, m)
    if k < n_components:
        warnings.warn(
            f"asked for {n_components} components but [N, M] = [{n}, {m}] has at most "
            f"min(N - 1, M) = {k}; returning {k}",
            stacklevel=2,
        )

    gram = np.zeros((n, n), order="F")  # upper triangle filled by dsyrk
    for start in range(0, m, chunk_size):
        block = calls[:, start : start + chunk_size]
        x = centred_block(block, allele_frequency(*column_counts(block)), standardize)
        gram = dsyrk(1.0, x, beta=1.0, c=gram, trans=0, lower=0, overwrite_c=1)

    eigenvalues, eigenvectors = eigh(gram, lower=False, subset_by_index=[n - k, n - 1])
    eigenvalues = np.clip(eigenvalues[::-1], 0.0, None)
    eigenvectors = eigenvectors[:, ::-1]
    scores = eigenvectors * np.sqrt(eigenvalues)
    largest = np.abs(scores).argmax(axis=0)
    signs = np.sign(scores[largest, np.arange(k)])
    scores *= np.where(signs == 0, 1.0, signs)
    return (scores / scale).astype(np.float32), eigenvalues / (n - 1)
