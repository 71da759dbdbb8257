"""Genotype matrices: the in-memory type every reader returns and every step after it takes.

Readers (PLINK, VCF, tskit), labels, quality control and PCA live in
:mod:`diffvi.data.genotype_io` and :mod:`diffvi.data.genotype_pca`; simulation in
:mod:`diffvi.data.genotype_simulation`.
"""

from dataclasses import dataclass

import numpy as np

MISSING = -1  # the code of a missing call in ``Genotypes.calls``


@dataclass
class Genotypes:
    """Diploid genotypes of ``N`` samples at ``M`` biallelic variants.

    Attributes:
        calls: int8 ``[N, M]``: the number of alternate alleles (0, 1, 2), ``MISSING`` (-1)
            for a missing call. int8 keeps 10,000 samples × 100,000 variants at 1 GB.
        samples: the ``N`` sample identifiers, in row order (unique).
        variants: the ``M`` variant identifiers, in column order.
        populations: optional ``N`` population labels (e.g. ``"YRI"``), from a simulation or
            a tree sequence; a label file can supply them instead.
        super_populations: optional ``N`` super-population labels (e.g. ``"AFR"``).
    """

    calls: np.ndarray
    samples: list[str]
    variants: list[str]
    populations: list[str] | None = None
    super_populations: list[str] | None = None

    def __post_init__(self) -> None:
        calls = self.calls
        if not isinstance(calls, np.ndarray) or calls.ndim != 2 or calls.dtype != np.int8:
            got = (
                f"{calls.dtype} array of shape {calls.shape}"
                if isinstance(calls, np.ndarray)
                else type(calls).__name__
            )
            raise ValueError(f"calls must be an int8 array [N, M], got a {got}")
        n, m = calls.shape
        if len(self.samples) != n:
            raise ValueError(f"{n} rows of calls but {len(self.samples)} sample identifiers")
        if len(self.variants) != m:
            raise ValueError(f"{m} columns of calls but {len(self.variants)} variant identifiers")
        if len(set(self.samples)) != n:
            raise ValueError("sample identifiers must be unique")
        for name in ("populations", "super_populations"):
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise ValueError(f"{n} samples but {len(values)} {name}")

    @property
    def num_samples(self) -> int:
        return self.calls.shape[0]

    @property
    def num_variants(self) -> int:
        return self.calls.shape[1]

    def read(self, start: int, stop: int) -> np.ndarray:
        """int8 ``[N, stop - start]`` calls of variants ``start:stop`` (a view): genotypes in
        memory are a ``VariantBlocks`` for the streaming PCA (:mod:`diffvi.data.genotype_rpca`)."""
        return self.calls[:, start:stop]

    def select_variants(self, keep: np.ndarray) -> "Genotypes":
        """The variants where the boolean mask or index array ``keep`` selects them."""
        index = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
        return Genotypes(
            np.ascontiguousarray(self.calls[:, index]),
            list(self.samples),
            [self.variants[i] for i in index],
            self.populations,
            self.super_populations,
        )
