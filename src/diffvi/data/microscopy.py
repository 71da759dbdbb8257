"""Simulated fluorescence-microscopy super-resolution pairs in the spirit of BioSR.

BioSR (Qiao et al., Nature Methods 2021) pairs widefield (WF) images with structured
illumination (SIM) images of four structures; CVDM (della Maggiora et al., ICLR 2024) uses it
for super-resolution. Nothing can be downloaded here, so this module *simulates* such pairs,
seeded and in pure torch. It makes no claim to reproduce BioSR's statistics beyond the
imaging model below.

Ground truth
------------
Each structure is a set of point fluorophores (sub-pixel positions ``(x, y)`` in target
pixels, weights = relative brightness) drawn over the field plus a margin of ``4 sigma_WF``, so
that structure just outside the field blurs into it as in a real camera crop:

- ``"ccps"`` clathrin-coated pits: 1-4 pits per um^2, each a ring (hollow coat, p = 1/2) or a
  Gaussian blob of diameter 60-150 nm with log-normal brightness.
- ``"er"`` endoplasmic reticulum: 3-8 nodes per um^2 joined by the relative-neighbourhood graph
  (connected, three-way-junction-like) plus about half the extra Gabriel-graph edges (both
  subgraphs of the Delaunay triangulation), each edge a slightly bent tubule (quadratic
  Bezier, 60-100 nm wide); with probability 1/4 one small ER sheet (filled ellipse).
- ``"f-actin"`` actin: 3-8 bundles of 1-6 near-straight parallel filaments (persistence length
  50 um, lengths 1-3 um) around one preferred orientation (+-15 deg), plus a sparser, dimmer
  meshwork of 3-10 randomly oriented filaments.
- ``"microtubules"``: 4-12 long (longer than the field) worm-like filaments with persistence
  length 3-10 um, i.e. smooth curves crossing the field.

Filaments and tubules are sampled every 0.5 target pixel (about 16 nm) with a transverse
Gaussian jitter of their width, so the density is a fine (sub-pixel) sampling of the
fluorophore distribution. ``MicroscopyPair.density`` is that density integrated over each
target pixel (fluorophore weight per pixel), scaled to max 1.

Imaging model
-------------
Default optics: emission wavelength ``lambda = 520 nm`` (GFP-like, within BioSR's 488-560 nm
lines), ``NA = 1.35``, target (SIM) pixel ``31.3 nm`` (BioSR's SIM pixel; WF pixel
``2 x 31.3 = 62.6 nm``).

1. **Widefield PSF.** The Airy PSF of a circular pupil is approximated by a Gaussian with
   ``sigma_WF = 0.21 lambda / NA`` (the standard least-squares fit to the Airy disc; Zhang,
   Zerubia & Olivo-Marin 2007): 80.9 nm, i.e. FWHM ``2 sqrt(2 ln 2) sigma = 190.5 nm`` (the
   Rayleigh/Airy scale ``0.51 lambda / NA = 196 nm``) = 2.58 target px sigma (6.09 px FWHM) =
   1.29 input px sigma (3.04 px FWHM).
2. **SIM PSF.** Linear SIM extends the passband about twofold, so the SIM PSF is the Gaussian
   with ``sigma_SIM = sigma_WF / sim_factor`` (``sim_factor = 2``): 40.4 nm, FWHM 95.2 nm
   (``~ lambda / (2 NA) / 2 = 96 nm``) = 1.29 target px sigma (3.04 px FWHM).
3. **Rendering.** Image = density convolved with the PSF and integrated over each pixel. For a
   point measure and a Gaussian PSF this is exact and separable: a point at ``(x, y)`` adds
   ``w [Phi((j+1-x)/sigma) - Phi((j-x)/sigma)] [Phi((i+1-y)/sigma) - Phi((i-y)/sigma)]`` to
   pixel ``(i, j)`` (``Phi`` the normal CDF), computed as one batched matrix product, with
   positions quantised to 1/16 target pixel (2 nm) so the 1-D profiles come from a table.
   There is no FFT, hence no wrap-around; fluorophores more than ``4 sigma_WF`` outside the
   field (contributing under ``Phi(-4) = 3e-5`` of their weight) are dropped.
4. **Target.** The SIM image on the target grid, noise-free (BioSR's SIM ground truth is of
   high SNR), divided by its per-image maximum: ``target`` in [0, 1], max exactly 1.
5. **Input.** The WF image on the target grid, binned ``binning x binning`` (sum of blocks;
   default 2x2, so the input is ``size / 2`` pixels of 62.6 nm), then scaled to photons: the
   clean expectation is ``E = s * binned + background``, where ``s`` is chosen per image so
   that the **photon level** is exactly the requested ``photons`` (see below).
6. **Noise.** ``input_photons = Poisson(E) + N(0, read_noise^2)`` (shot noise, then Gaussian
   camera read noise in photon units, default ``read_noise = 1.5``); so the residual
   ``input_photons - E`` has mean 0 and variance ``E + read_noise^2``. ``noise=False`` returns
   ``input_photons = E``.

**Photon level** (BioSR reports ~15-600 average photons per pixel of signal): the mean of the
*signal* (background excluded) expected photon count ``s * binned`` over the **signal pixels**
of the binned clean image, those where ``binned >= signal_threshold * max(binned)``
(``signal_threshold = 0.1`` by default; ``0`` makes it the mean over all input pixels). The
mask depends only on the shape of the clean image, not on ``s``, so the level holds exactly in
expectation: ``clean_photons[mask].mean() - background == photons`` up to float rounding.

**Normalisation for the model API.** ``input = clip(input_photons / max(E), 0, 1)`` per image,
``max(E)`` being the maximum of the clean expectation (background included), a robust,
noise-free maximum; shot noise above it is clipped (mostly at low photon levels, where the
brightest pixels fluctuate most). ``target`` is divided by its maximum (step 4).

>>> pair = simulate_microscopy("microtubules", 8, photons=100.0,
...                            generator=torch.Generator().manual_seed(0))
>>> pair.input.shape, pair.target.shape
(torch.Size([8, 1, 32, 32]), torch.Size([8, 1, 64, 64]))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "SPLIT_SEEDS",
    "STRUCTURES",
    "MicroscopyDataset",
    "MicroscopyPair",
    "Optics",
    "degrade_image",
    "make_microscopy_dataset",
    "simulate_microscopy",
]

STRUCTURES: tuple[str, ...] = ("ccps", "er", "f-actin", "microtubules")
"""The four BioSR structure classes; a pair's ``labels`` index into this tuple."""

SPLIT_SEEDS: dict[str, int] = {"train": 0, "valid": 1, "test": 2}
"""Default generator seeds of the splits of :func:`make_microscopy_dataset`."""

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_SAMPLE_STEP = 0.5  # target pixels between samples along filaments and tubules
_CHUNK = 16  # images rendered per batched matrix product (bounds memory)
_OVERSAMPLE = 16  # point positions are quantised to 1/16 target pixel (about 2 nm) to render


@dataclass(frozen=True)
class Optics:
    """Imaging parameters (the ``**optics`` of :func:`simulate_microscopy`).

    Attributes:
        wavelength_nm: emission wavelength in nm.
        na: numerical aperture of the objective.
        pixel_nm: target (SIM) pixel size in nm; the input pixel is ``binning * pixel_nm``.
        binning: input binning factor (sum of ``binning x binning`` blocks).
        sim_factor: resolution gain of SIM, ``sigma_WF / sigma_SIM``.
        read_noise: standard deviation of the Gaussian read noise, in photons.
        background: uniform background added to the clean input, in photons per input pixel.
        signal_threshold: signal pixels are those of the binned clean image at or above this
            fraction of its maximum (the photon level is the mean over them); 0 = all pixels.
    """

    wavelength_nm: float = 520.0
    na: float = 1.35
    pixel_nm: float = 31.3
    binning: int = 2
    sim_factor: float = 2.0
    read_noise: float = 1.5
    background: float = 0.0
    signal_threshold: float = 0.1

    def __post_init__(self) -> None:
        for name in ("wavelength_nm", "na", "pixel_nm", "sim_factor"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("read_noise", "background"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if not (isinstance(self.binning, int) and self.binning >= 1):
            raise ValueError(f"binning must be a positive int, got {self.binning!r}")
        if not (0.0 <= self.signal_threshold < 1.0):
            raise ValueError(f"signal_threshold must lie in [0, 1), got {self.signal_threshold!r}")

    @property
    def sigma_wf_nm(self) -> float:
        """Widefield Gaussian PSF standard deviation, ``0.21 lambda / NA`` (nm)."""
        return 0.21 * self.wavelength_nm / self.na

    @property
    def sigma_sim_nm(self) -> float:
        """SIM Gaussian PSF standard deviation, ``sigma_WF / sim_factor`` (nm)."""
        return self.sigma_wf_nm / self.sim_factor

    @property
    def fwhm_wf_nm(self) -> float:
        """Widefield PSF FWHM (nm)."""
        return _FWHM_PER_SIGMA * self.sigma_wf_nm

    @property
    def fwhm_sim_nm(self) -> float:
        """SIM PSF FWHM (nm)."""
        return _FWHM_PER_SIGMA * self.sigma_sim_nm

    @property
    def input_pixel_nm(self) -> float:
        """Input (widefield) pixel size, ``binning * pixel_nm`` (nm)."""
        return self.binning * self.pixel_nm

    @property
    def sigma_wf_px(self) -> float:
        """Widefield PSF standard deviation in target pixels."""
        return self.sigma_wf_nm / self.pixel_nm

    @property
    def sigma_sim_px(self) -> float:
        """SIM PSF standard deviation in target pixels."""
        return self.sigma_sim_nm / self.pixel_nm


@dataclass(eq=False)
class MicroscopyPair:
    """A batch of ``B`` simulated (widefield input, SIM target) pairs.

    Attributes:
        input: float32 ``[B, 1, h, w]`` in [0, 1], ``h = H / binning``: the noisy widefield
            image divided by the maximum of its clean expectation, clipped.
        target: float32 ``[B, 1, H, W]`` in [0, 1]: the noise-free SIM image over its maximum.
        input_photons: float32 ``[B, 1, h, w]``: noisy photon counts (Poisson + Gaussian read
            noise, so they can be negative); equal to ``clean_photons`` when noise is off.
        clean_photons: float32 ``[B, 1, h, w]``: the expectation of ``input_photons`` (signal
            plus background).
        signal_mask: bool ``[B, 1, h, w]``: the signal pixels over which the photon level is
            the mean of ``clean_photons - background``.
        density: float32 ``[B, 1, H, W]`` in [0, 1]: ground-truth fluorophore weight per
            target pixel over its maximum.
        photon_level: float32 ``[B]``: the photon level of each image.
        labels: int64 ``[B]``: structure class, an index into :data:`STRUCTURES`.
        optics: the imaging parameters.
    """

    input: Tensor
    target: Tensor
    input_photons: Tensor
    clean_photons: Tensor
    signal_mask: Tensor
    density: Tensor
    photon_level: Tensor
    labels: Tensor
    optics: Optics

    def __len__(self) -> int:
        return self.input.shape[0]

    @property
    def structures(self) -> list[str]:
        """Structure name of each image, ``[STRUCTURES[label] for label in labels]``
        (``"image"`` for label -1, a given image: :func:`degrade_image`)."""
        return [STRUCTURES[i] if i >= 0 else "image" for i in self.labels.tolist()]

    def _map(self, fn: Any) -> MicroscopyPair:
        fields = {
            f.name: fn(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "optics"
        }
        return MicroscopyPair(**fields, optics=self.optics)

    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> MicroscopyPair:
        """The sub-batch at ``index`` (an int keeps the batch dimension, ``B = 1``)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        return self._map(lambda t: t[index])

    def to(self, device: torch.device | str) -> MicroscopyPair:
        """A copy whose tensors live on ``device``."""
        return self._map(lambda t: t.to(device))

    @staticmethod
    def cat(pairs: Sequence[MicroscopyPair]) -> MicroscopyPair:
        """Concatenate batches along the batch dimension (the optics of the first are kept)."""
        if not pairs:
            raise ValueError("need at least one MicroscopyPair to concatenate")
        names = [f.name for f in dataclasses.fields(MicroscopyPair) if f.name != "optics"]
        fields = {n: torch.cat([getattr(p, n) for p in pairs]) for n in names}
        return MicroscopyPair(**fields, optics=pairs[0].optics)


# --------------------------------------------------------------------------------------------
# Structures: point fluorophores (x, y, weight) in target-pixel coordinates
# --------------------------------------------------------------------------------------------


def _uniform(n: int | Sequence[int], lo: float, hi: float, g: torch.Generator | None) -> Tensor:
    shape = (n,) if isinstance(n, int) else tuple(n)
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)


def _randint(lo: int, hi: int, g: torch.Generator | None) -> int:
    """A uniform integer in ``[lo, hi]``."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def _poisson_count(mean: float, g: torch.Generator | None, minimum: int = 1) -> int:
    count = int(torch.poisson(torch.tensor([mean], dtype=torch.float64), generator=g))
    return max(count, minimum)


def _tube(points: Tensor, normals: Tensor, width_px: float, g: torch.Generator | None) -> Tensor:
    """Jitter centre-line samples ``[n, 2]`` across a tube of FWHM-like width ``width_px``."""
    offset = torch.randn(points.shape[0], 1, generator=g, dtype=torch.float64) * (width_px / 4)
    return points + offset * normals


def _worm(
    centre: Tensor,
    heading: float,
    length: float,
    persistence: float,
    g: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """A worm-like chain centred on ``centre [2]``: samples ``[n, 2]`` and unit normals.

    The heading performs a Gaussian random walk with variance ``step / persistence`` per step
    (the discrete worm-like chain of persistence length ``persistence``, in pixels).
    """
    n = max(int(length / _SAMPLE_STEP), 2)
    turns = torch.randn(n, generator=g, dtype=torch.float64) * math.sqrt(_SAMPLE_STEP / persistence)
    angle = heading + torch.cumsum(turns, 0)
    angle = angle - angle[n // 2] + heading
    direction = torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    path = torch.cumsum(direction * _SAMPLE_STEP, 0)
    path = path - path[n // 2] + centre
    normals = torch.stack([-direction[:, 1], direction[:, 0]], 1)
    return path, normals


def _ccps(extent: float, px_nm: float, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
    area_um2 = (extent * px_nm / 1000.0) ** 2
    n = _poisson_count(float(_uniform(1, 1.0, 4.0, g)) * area_um2, g)
    centres = _uniform((n, 2), 0.0, extent, g)
    radius = _uniform(n, 30.0, 75.0, g) / px_nm  # diameter 60-150 nm, in pixels
    brightness = torch.exp(0.4 * torch.randn(n, generator=g, dtype=torch.float64))
    ring = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
    m = 16  # fluorophore samples per pit
    phase = _uniform((n, 1), 0.0, 2 * math.pi, g)
    angle = phase + torch.arange(m, dtype=torch.float64) * (2 * math.pi / m)
    on_ring = torch.stack([torch.cos(angle), torch.sin(angle)], -1)  # [n, m, 2]
    # Blob: Gaussian of sigma = radius / 2 (so its FWHM ~ the diameter).
    blob = torch.randn(n, m, 2, generator=g, dtype=torch.float64) * 0.5
    offsets = torch.where(ring[:, None, None], on_ring, blob) * radius[:, None, None]
    points = (centres[:, None, :] + offsets).reshape(-1, 2)
    weights = (brightness[:, None] / m).expand(n, m).reshape(-1)
    return points, weights


def _er(extent: float, px_nm: float, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
    area_um2 = (extent * px_nm / 1000.0) ** 2
    n = _poisson_count(float(_uniform(1, 3.0, 8.0, g)) * area_um2, g, minimum=4)
    nodes = _uniform((n, 2), 0.0, extent, g)
    d2 = torch.cdist(nodes, nodes).square()  # [n, n]
    # Relative-neighbourhood graph: no k closer to both i and j than they are to each other.
    rng = ~(torch.maximum(d2[:, None, :], d2[None, :, :]) < d2[:, :, None]).any(-1)
    # Gabriel graph: no k inside the circle whose diameter is ij.
    mid = (nodes[:, None, :] + nodes[None, :, :]) / 2  # [n, n, 2]
    to_k = ((mid[:, :, None, :] - nodes[None, None, :, :]) ** 2).sum(-1)  # [n, n, n]
    eye = torch.eye(n, dtype=torch.bool)
    inside = (to_k < d2[:, :, None] / 4 - 1e-9) & ~eye[:, None, :] & ~eye[None, :, :]
    gabriel = ~inside.any(-1)
    keep_extra = torch.rand(n, n, generator=g, dtype=torch.float64) < 0.5
    adjacency = (rng | (gabriel & keep_extra)) & ~eye
    i, j = torch.triu(adjacency, diagonal=1).nonzero(as_tuple=True)
    width = float(_uniform(1, 60.0, 100.0, g)) / px_nm
    # Every edge a quadratic Bezier p0 -> p2 bent by p1, all edges at once.
    p0, p2 = nodes[i], nodes[j]  # [E, 2]
    chord = p2 - p0
    length = chord.norm(dim=1).clamp_min(1e-9)
    normal = torch.stack([-chord[:, 1], chord[:, 0]], 1) / length[:, None]
    bend = torch.randn(i.shape[0], generator=g, dtype=torch.float64) * 0.12 * length
    p1 = (p0 + p2) / 2 + bend[:, None] * normal
    counts = (length / _SAMPLE_STEP).long().clamp_min(2)
    edge = torch.repeat_interleave(torch.arange(i.shape[0]), counts)
    first = torch.cumsum(counts, 0) - counts
    t = ((torch.arange(edge.shape[0]) - first[edge]) / (counts[edge] - 1))[:, None]
    q0, q1, q2 = p0[edge], p1[edge], p2[edge]
    curve = (1 - t) ** 2 * q0 + 2 * (1 - t) * t * q1 + t**2 * q2
    velocity = 2 * (1 - t) * (q1 - q0) + 2 * t * (q2 - q1)  # d curve / d t
    speed = velocity.norm(dim=1).clamp_min(1e-9)
    tangent = velocity / speed[:, None]
    normals = torch.stack([-tangent[:, 1], tangent[:, 0]], 1)
    points = [_tube(curve, normals, width, g)]
    # Weight = arc length per sample, so brightness per unit length is uniform.
    weights = [speed / (counts[edge] - 1)]
    if torch.rand(1, generator=g).item() < 0.25:  # one small peripheral sheet
        centre = _uniform(2, 0.0, extent, g)
        axes = _uniform(2, 150.0, 400.0, g) / px_nm
        tilt = float(_uniform(1, 0.0, math.pi, g))
        m = int(math.pi * float(axes[0] * axes[1]) / _SAMPLE_STEP**2)
        r = torch.sqrt(torch.rand(m, generator=g, dtype=torch.float64))
        phi = _uniform(m, 0.0, 2 * math.pi, g)
        local = torch.stack([r * torch.cos(phi) * axes[0], r * torch.sin(phi) * axes[1]], 1)
        rot = torch.tensor(
            [[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]],
            dtype=torch.float64,
        )
        points.append(centre + local @ rot.T)
        # A sheet is ~2x brighter per area than a tubule spread over its width.
        weights.append(torch.full((m,), 2.0 * _SAMPLE_STEP**2 / width, dtype=torch.float64))
    return torch.cat(points), torch.cat(weights)


def _actin(extent: float, px_nm: float, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
    orientation = float(_uniform(1, 0.0, math.pi, g))
    persistence = 50_000.0 / px_nm
    width = 30.0 / px_nm
    points, weights = [], []

    def add(centre: Tensor, heading: float, length: float, brightness: float) -> None:
        path, normals = _worm(centre, heading, length, persistence, g)
        points.append(_tube(path, normals, width, g))
        weights.append(torch.full((path.shape[0],), brightness * _SAMPLE_STEP, dtype=torch.float64))

    for _ in range(_randint(3, 8, g)):
        centre = _uniform(2, 0.0, extent, g)
        heading = orientation + math.radians(15.0) * float(torch.randn(1, generator=g))
        across = torch.tensor([-math.sin(heading), math.cos(heading)], dtype=torch.float64)
        along = torch.tensor([math.cos(heading), math.sin(heading)], dtype=torch.float64)
        for _ in range(_randint(1, 6, g)):
            shift = (
                float(torch.randn(1, generator=g)) * (60.0 / px_nm) * across
                + float(_uniform(1, -0.5, 0.5, g)) * (1000.0 / px_nm) * along
            )
            length = float(_uniform(1, 1000.0, 3000.0, g)) / px_nm
            tilt = math.radians(2.0) * float(torch.randn(1, generator=g))
            add(centre + shift, heading + tilt, length, 1.0)
    for _ in range(_randint(3, 10, g)):  # dimmer, randomly oriented meshwork
        centre = _uniform(2, 0.0, extent, g)
        length = float(_uniform(1, 500.0, 2000.0, g)) / px_nm
        add(centre, float(_uniform(1, 0.0, math.pi, g)), length, 0.5)
    return torch.cat(points), torch.cat(weights)


def _microtubules(extent: float, px_nm: float, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
    points, weights = [], []
    width = 50.0 / px_nm  # 25 nm tube plus antibody labelling
    for _ in range(_randint(4, 12, g)):
        centre = _uniform(2, 0.0, extent, g)
        heading = float(_uniform(1, 0.0, 2 * math.pi, g))
        persistence = float(_uniform(1, 3000.0, 10000.0, g)) / px_nm
        path, normals = _worm(centre, heading, 1.5 * extent, persistence, g)
        brightness = float(torch.exp(0.2 * torch.randn(1, generator=g, dtype=torch.float64)))
        points.append(_tube(path, normals, width, g))
        weights.append(torch.full((path.shape[0],), brightness * _SAMPLE_STEP, dtype=torch.float64))
    return torch.cat(points), torch.cat(weights)


_GENERATORS = {"ccps": _ccps, "er": _er, "f-actin": _actin, "microtubules": _microtubules}


# --------------------------------------------------------------------------------------------
# Imaging
# --------------------------------------------------------------------------------------------


def _profile_table(sigma: float, size: int, lo: int, hi: int) -> Tensor:
    """Pixel-integrated 1-D Gaussian profiles for positions quantised to ``1 / _OVERSAMPLE``.

    Row ``u`` is the profile ``Phi((j + 1 - x) / sigma) - Phi((j - x) / sigma)``, ``j < size``,
    of a point at ``x = lo + (u + 1/2) / _OVERSAMPLE``: float32 ``[(hi - lo) * _OVERSAMPLE,
    size]``.
    """
    x = lo + (torch.arange((hi - lo) * _OVERSAMPLE, dtype=torch.float64) + 0.5) / _OVERSAMPLE
    edges = torch.arange(size + 1, dtype=torch.float64)
    cdf = torch.special.ndtr((edges - x[:, None]) / sigma)
    return (cdf[:, 1:] - cdf[:, :-1]).to(torch.float32)


def _render(bins: Tensor, weights: Tensor, table: Tensor) -> Tensor:
    """``sum_k w_k (PSF * delta_{p_k})`` integrated over pixels (a batched matrix product).

    Args:
        bins: int64 ``[B, K, 2]``: rows of ``table`` of each point's ``(x, y)``.
        weights: float32 ``[B, K]``: brightness of each point (0 for padding).
        table: float32 ``[U, S]`` from :func:`_profile_table`.

    Returns:
        float32 ``[B, S, S]`` (rows ``y``, columns ``x``).
    """
    gx = table[bins[..., 0]]  # [B, K, W]
    gy = table[bins[..., 1]] * weights[..., None]  # [B, K, H]
    return torch.bmm(gy.transpose(1, 2), gx)


def _density(points: Tensor, weights: Tensor, size: int) -> Tensor:
    """Fluorophore weight per pixel: ``[B, K, 2], [B, K]`` -> ``[B, size, size]``."""
    b = points.shape[0]
    col = points[..., 0].floor().long()
    row = points[..., 1].floor().long()
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    batch = torch.arange(b)[:, None].expand_as(col)
    flat = (batch * size + row) * size + col
    out = torch.zeros(b * size * size, dtype=weights.dtype)
    out.index_add_(0, flat[inside], weights[inside])
    return out.view(b, size, size)


def _check_structure(structure: str) -> str:
    key = structure.strip().lower().replace("_", "-") if isinstance(structure, str) else structure
    if key not in STRUCTURES:
        raise ValueError(f"unknown structure {structure!r}; valid structures: {list(STRUCTURES)}")
    return key


def _make_optics(optics: dict[str, Any]) -> Optics:
    valid = [f.name for f in dataclasses.fields(Optics)]
    unknown = sorted(set(optics) - set(valid))
    if unknown:
        raise ValueError(f"unknown optics parameters {unknown}; valid ones: {valid}")
    return Optics(**optics)


def _check_size(size: int, optics: Optics) -> None:
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if size % optics.binning:
        raise ValueError(
            f"size must be divisible by the binning factor {optics.binning}, got {size}"
        )


def _simulate(
    labels: Tensor,
    photons: Tensor,
    size: int,
    optics: Optics,
    generator: torch.Generator | None,
    noise: bool,
) -> MicroscopyPair:
    """Pairs for per-image ``labels [B]`` (into STRUCTURES) and photon levels ``[B]``."""
    margin = math.ceil(4 * optics.sigma_wf_px)
    extent = size + 2 * margin
    lo, hi = -margin, size + margin
    tables = [_profile_table(s, size, lo, hi) for s in (optics.sigma_sim_px, optics.sigma_wf_px)]
    structures = []
    for label in labels.tolist():
        points, weights = _GENERATORS[STRUCTURES[label]](extent, optics.pixel_nm, generator)
        points = points - margin
        # Points beyond 4 sigma_WF of the field add less than Phi(-4) = 3e-5 of their weight.
        keep = ((points >= lo) & (points < hi)).all(1)
        structures.append((points[keep], weights[keep]))
    sim_parts, wf_parts, density_parts = [], [], []
    for start in range(0, len(structures), _CHUNK):
        chunk = structures[start : start + _CHUNK]
        k = max(max(p.shape[0] for p, _ in chunk), 1)
        points = torch.zeros(len(chunk), k, 2, dtype=torch.float64)
        weights = torch.zeros(len(chunk), k, dtype=torch.float64)
        for i, (p, w) in enumerate(chunk):
            points[i, : p.shape[0]] = p
            weights[i, : w.shape[0]] = w
        bins = ((points - lo) * _OVERSAMPLE).floor().long().clamp(0, tables[0].shape[0] - 1)
        w32 = weights.to(torch.float32)
        sim_parts.append(_render(bins, w32, tables[0]))
        wf_parts.append(_render(bins, w32, tables[1]).to(torch.float64))
        density_parts.append(_density(points, weights, size))
    sim = torch.cat(sim_parts)  # [B, H, W]
    wf = torch.cat(wf_parts)
    density = torch.cat(density_parts)
    return _camera(sim, wf, density, labels, photons, optics, generator, noise)


def _camera(
    sim: Tensor,
    wf: Tensor,
    density: Tensor,
    labels: Tensor,
    photons: Tensor,
    optics: Optics,
    generator: torch.Generator | None,
    noise: bool,
) -> MicroscopyPair:
    """Steps 4-6 of the imaging model: the pair of SIM images ``sim [B, H, W]`` (float32) and
    widefield images ``wf [B, H, W]`` (float64) on the target grid, ``H``, ``W`` divisible by
    the binning factor."""
    b, f = wf.shape[0], optics.binning
    binned = wf.view(b, wf.shape[1] // f, f, wf.shape[2] // f, f).sum((2, 4))  # [B, h, w]
    peak = binned.amax((1, 2), keepdim=True)
    mask = binned >= optics.signal_threshold * peak
    mean_signal = (binned * mask).sum((1, 2), keepdim=True) / mask.sum((1, 2), keepdim=True)
    clean = binned * (photons.to(torch.float64)[:, None, None] / mean_signal) + optics.background
    if noise:
        observed = torch.poisson(clean, generator=generator)
        if optics.read_noise > 0:
            read = torch.randn(clean.shape, generator=generator, dtype=torch.float64)
            observed = observed + optics.read_noise * read
    else:
        observed = clean.clone()
    normalised = (observed / clean.amax((1, 2), keepdim=True)).clamp(0.0, 1.0)
    target = sim / sim.amax((1, 2), keepdim=True)
    density = density / density.amax((1, 2), keepdim=True).clamp_min(1e-30)

    def img(t: Tensor) -> Tensor:
        return t[:, None].to(torch.float32)

    return MicroscopyPair(
        input=img(normalised),
        target=img(target).clamp(0.0, 1.0),
        input_photons=img(observed),
        clean_photons=img(clean),
        signal_mask=mask[:, None],
        density=img(density),
        photon_level=photons.to(torch.float32),
        labels=labels.to(torch.int64),
        optics=optics,
    )


def simulate_microscopy(
    structure: str,
    count: int,
    photons: float,
    size: int = 64,
    generator: torch.Generator | None = None,
    *,
    noise: bool = True,
    **optics: Any,
) -> MicroscopyPair:
    """Simulate ``count`` (widefield, SIM) pairs of one structure class.

    Args:
        structure: one of :data:`STRUCTURES` (case-insensitive, ``_`` read as ``-``).
        count: number of pairs ``B``.
        photons: photon level: the mean expected signal photon count per input pixel over the
            signal pixels (see the module docstring); BioSR spans about 15-600.
        size: target side ``H = W`` in pixels; the input side is ``size / binning``.
        generator: CPU random generator (the global torch RNG when ``None``); the same seed
            gives the same pairs.
        noise: draw Poisson shot noise and Gaussian read noise; ``False`` gives
            ``input_photons = clean_photons``.
        **optics: fields of :class:`Optics` (``wavelength_nm``, ``na``, ``pixel_nm``,
            ``binning``, ``sim_factor``, ``read_noise``, ``background``, ``signal_threshold``).

    Returns:
        A :class:`MicroscopyPair`: ``input [B, 1, h, w]``, ``target [B, 1, H, W]`` in [0, 1],
        ``input_photons`` and ``clean_photons [B, 1, h, w]``, ``photon_level [B]``,
        ``labels [B]``, ...

    Raises:
        ValueError: unknown structure (the message lists the valid ones), ``photons <= 0``,
            ``count < 1``, ``size`` not divisible by the binning factor, or bad optics.
    """
    key = _check_structure(structure)
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1, got {count!r}")
    if not (isinstance(photons, int | float) and math.isfinite(photons) and photons > 0):
        raise ValueError(f"photons must be a positive finite number, got {photons!r}")
    opt = _make_optics(optics)
    _check_size(size, opt)
    labels = torch.full((count,), STRUCTURES.index(key), dtype=torch.int64)
    levels = torch.full((count,), float(photons), dtype=torch.float64)
    return _simulate(labels, levels, size, opt, generator, noise)


def _blur(images: Tensor, sigma: float) -> Tensor:
    """``images [B, H, W]`` (float64) convolved with a pixel-integrated Gaussian of ``sigma``
    pixels, ``Phi((k + 1/2) / sigma) - Phi((k - 1/2) / sigma)``, |k| <= 4 sigma; borders
    reflected (replicated where the image is too small to reflect)."""
    radius = max(1, math.ceil(4 * sigma))
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.special.ndtr((k + 0.5) / sigma) - torch.special.ndtr((k - 0.5) / sigma)
    kernel = kernel / kernel.sum()
    mode = "reflect" if radius < min(images.shape[-2:]) else "replicate"
    out = torch.nn.functional.pad(images[:, None], (radius,) * 4, mode=mode)
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(out, kernel.view(1, 1, -1, 1))[:, 0]


def degrade_image(
    images: Tensor,
    photons: float,
    generator: torch.Generator | None = None,
    *,
    noise: bool = True,
    **optics: Any,
) -> MicroscopyPair:
    """The imaging model applied to given images instead of simulated structures: each image
    ``[B, 1, H, W]`` (or ``[H, W]``) in [0, 1] is the fluorophore density per target pixel,
    blurred by the SIM and the widefield PSFs (pixel-integrated Gaussians, reflected borders)
    and passed through steps 4-6 (binning, photon level ``photons``, shot and read noise,
    normalisation), e.g. to degrade a real micrograph into a (widefield, SIM) pair.

    Returns:
        A :class:`MicroscopyPair` with ``input [B, 1, H / binning, W / binning]``, ``target [B,
        1, H, W]`` (SIM image over its maximum), ``density`` (the image over its maximum) and
        ``labels`` -1 (no structure class).

    Raises:
        ValueError: a shape that is not ``[B, 1, H, W]``, ``H`` or ``W`` not divisible by the
            binning factor, values outside [0, 1], an all-zero image, ``photons <= 0`` or bad
            optics.
    """
    if images.ndim == 2:
        images = images[None, None]
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape [B, 1, H, W] or [H, W], got {list(images.shape)}")
    if not (isinstance(photons, int | float) and math.isfinite(photons) and photons > 0):
        raise ValueError(f"photons must be a positive finite number, got {photons!r}")
    opt = _make_optics(optics)
    height, width = images.shape[-2:]
    if height % opt.binning or width % opt.binning:
        raise ValueError(
            f"image size {height}x{width} must be divisible by the binning factor {opt.binning}"
        )
    density = images[:, 0].to(torch.float64)
    if not bool(torch.isfinite(density).all()) or density.min() < 0 or density.max() > 1:
        raise ValueError("images must hold finite values in [0, 1]")
    peak = density.amax((1, 2), keepdim=True)
    if bool((peak == 0).any()):
        raise ValueError("an all-zero image has no fluorophores to image")
    sim = _blur(density, opt.sigma_sim_px).clamp_min(0).to(torch.float32)
    wf = _blur(density, opt.sigma_wf_px).clamp_min(0)
    labels = torch.full((len(density),), -1, dtype=torch.int64)
    levels = torch.full((len(density),), float(photons), dtype=torch.float64)
    return _camera(sim, wf, density / peak, labels, levels, opt, generator, noise)


# --------------------------------------------------------------------------------------------
# Fixed data sets
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class MicroscopyDataset(Dataset[tuple[Tensor, Tensor]]):
    """A fixed, in-memory set of simulated pairs that indexes whole batches at once.

    ``dataset[i]`` gives ``(input [1, h, w], target [1, H, W])``; a list / 1-D tensor of
    ``B`` indices (or a slice) gives ``(input [B, 1, h, w], target [B, 1, H, W])``, so it works
    with :func:`diffvi.data.images.batch_loader`.

    Attributes:
        pairs: the simulated pairs (labels, photon counts and levels included).
        split: split name, e.g. ``"train"``.
        seed: the generator seed it was built with.
    """

    pairs: MicroscopyPair
    split: str = ""
    seed: int = 0

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def labels(self) -> Tensor:
        """Structure class of each pair, int64 ``[N]`` (an index into :data:`STRUCTURES`)."""
        return self.pairs.labels

    def __getitem__(self, index: int | slice | Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(index, int | np.integer):
            idx: int | slice | Tensor = int(index)
        elif isinstance(index, slice):
            idx = index
        else:
            idx = torch.as_tensor(index, dtype=torch.long)
        return self.pairs.input[idx], self.pairs.target[idx]

    def __repr__(self) -> str:
        return (
            f"MicroscopyDataset(split={self.split!r}, seed={self.seed}, size={len(self)}, "
            f"input_shape={tuple(self.pairs.input.shape[1:])}, "
            f"target_shape={tuple(self.pairs.target.shape[1:])})"
        )


def make_microscopy_dataset(
    n: int,
    split: str = "train",
    *,
    seed: int | None = None,
    structures: Sequence[str] = STRUCTURES,
    photon_range: tuple[float, float] = (15.0, 600.0),
    size: int = 64,
    noise: bool = True,
    **optics: Any,
) -> MicroscopyDataset:
    """A fixed, seeded data set of ``n`` pairs mixing structure classes and photon levels.

    Classes are balanced (``i % len(structures)``, then shuffled); each pair's photon level is
    drawn log-uniformly from ``photon_range`` (equal ends give one fixed level). Everything is
    drawn from one generator seeded with ``seed``, by default :data:`SPLIT_SEEDS` ``[split]``,
    so splits differ and rebuilding a split gives the same data.

    Args:
        n: number of pairs ``N``.
        split: ``"train"``, ``"valid"`` or ``"test"`` (any name when ``seed`` is given).
        seed: generator seed overriding the split's.
        structures: the classes to mix (names from :data:`STRUCTURES`).
        photon_range: ``(low, high)`` photon levels, both > 0.
        size: target side ``H = W``; the input side is ``size / binning``.
        noise: as in :func:`simulate_microscopy`.
        **optics: fields of :class:`Optics`.

    Returns:
        A :class:`MicroscopyDataset` of ``N`` pairs.

    Raises:
        ValueError: ``n < 1``, unknown split or structure, bad photon range, size or optics.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if seed is None:
        if split not in SPLIT_SEEDS:
            raise ValueError(f"unknown split {split!r}; valid splits: {list(SPLIT_SEEDS)}")
        seed = SPLIT_SEEDS[split]
    keys = [_check_structure(s) for s in structures]
    if not keys:
        raise ValueError("structures must name at least one class")
    low, high = (float(v) for v in photon_range)
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError(f"photon_range must satisfy 0 < low <= high, got {photon_range!r}")
    opt = _make_optics(optics)
    _check_size(size, opt)
    g = torch.Generator().manual_seed(seed)
    classes = torch.tensor([STRUCTURES.index(k) for k in keys], dtype=torch.int64)
    labels = classes[torch.arange(n) % len(keys)][torch.randperm(n, generator=g)]
    u = torch.rand(n, generator=g, dtype=torch.float64)
    levels = torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    pairs = _simulate(labels, levels, size, opt, g, noise)
    return MicroscopyDataset(pairs, split=split, seed=seed)
