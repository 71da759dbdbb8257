"""A trained conditional model (CVDM, ``diffvi train cvdm``) behind the reconstructor contract.

CVDM (della Maggiora et al. 2024) learns ``p(x | y)`` for one paired task
(:mod:`diffvi.data.paired`: ``mnist-sr4``, ``microscopy-sr``, ``phase``, …), so the forward
model is the task's and :meth:`CVDMReconstructor.forward` takes ``operator=None``. A
measurement ``y`` is what the instrument records (the low-resolution image; the two defocused
intensities); the task turns it into the model's condition. The restoration is the mean of
``samples`` draws and their pixel-wise standard deviation the uncertainty map (the paper's §4);
a regression model (``schedule="regression"``) is evaluated once.

Images of any size (always for a model of your own pairs, task ``"pairs"``; for the others
with ``tile``) are restored tile by tile: the networks see ``tile × tile`` crops (default the
size the model was trained on), neighbours overlapping by ``overlap`` pixels (default
``tile // 4``) and blended at every sampling step, while each draw stays one whole-image chain
(``CVDM.sample(tile=…)``, :class:`~diffvi.nn.tiling.Tiling`), so the mean and the uncertainty
map are those of whole-image draws, the same noise as untiled. A draw equals the untiled one
where the networks' receptive radius is at most ``overlap // 4``; a UNet's GroupNorm and
attention see one tile at a time, so its draws differ from untiled ones the more the smaller
the tile is. Memory is ``O(chains · H · W)`` for the chains and
``O(batch_size · tile²)`` for the networks; ``batch_size`` tiles are evaluated at once and
``batch_size // tiles`` chains (at least one) run together.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffvi.data.paired import PAIRS_TASK, PairedData, load_paired, paired_task
from diffvi.evaluation.conditional import sample_images
from diffvi.inverse.operators import Operator
from diffvi.inverse.solvers.base import Reconstruction, Reconstructor
from diffvi.nn.tiling import Tiling
from diffvi.utils.memory import PeakMemory

# Tiles evaluated at once where the caller sets no batch size.
DEFAULT_TILE_BATCH = 64


def size_divisor(model: nn.Module) -> int:
    """What the model's input sides must be multiples of: ``2 ** (levels − 1)`` of its UNet
    (the CVDM's denoiser or the regression UNet), else 1."""
    net = getattr(model, "denoiser", None) or getattr(model, "unet", None)
    return 2 ** (int(getattr(net, "num_levels", 1)) - 1)


__all__ = ["CVDMReconstructor", "load_cvdm_reconstructor"]


class CVDMReconstructor(Reconstructor):
    """Restore measurements of a CVDM's own task: ``forward(y, None) -> Reconstruction`` with
    ``x`` the mean of ``samples`` draws and ``samples [S, B, C, H, W]``.

    Args:
        model: the trained conditional model (``sample(condition, steps, generator, clip)``).
        spec: its export spec: ``task``, ``task_options``, ``image_size``, ``schedule`` and,
            for diffusion models, ``timesteps``.
        samples: draws per item (the paper's 20).
        steps: sampler steps (default: the model's ``timesteps``).
        generator: random numbers on the model's device, drawn from across calls.
        progress: show a progress bar over the draws.
        batch_size: chains sampled at once (default: all items of a call); tiled, the tiles
            evaluated at once (default 64). As
            :func:`~diffvi.evaluation.conditional.sample_images`, a call draws sample 1 of
            every item, then sample 2, …
        tile, overlap: restore images of any size tile by tile (see the module docstring);
            ``tile`` defaults to the trained size for a model of your own pairs (``None``
            otherwise: measurements of the trained size, untiled).
    """

    def __init__(
        self,
        model: nn.Module,
        spec: dict[str, Any],
        samples: int = 20,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        batch_size: int | None = None,
        tile: int | None = None,
        overlap: int | None = None,
    ) -> None:
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.spec = model, spec
        self.task_name: str = spec["task"]
        self.task = paired_task(self.task_name)
        self.options: dict[str, Any] = {**self.task.options, **spec["task_options"]}
        self.samples, self.steps = samples, steps
        self.generator, self.progress, self.batch_size = generator, progress, batch_size
        if tile is None and self.task_name == PAIRS_TASK:
            tile = int(spec["image_size"])
        self.tile, self.overlap = tile, overlap
        if tile is None:
            if overlap is not None:
                raise ValueError("--overlap applies to tiled restoration: give --tile too")
            return
        divisor = size_divisor(model)
        if tile < divisor or tile % divisor:
            raise ValueError(
                f"--tile must be a multiple of {divisor} (this model's UNet halves the image "
                f"{divisor.bit_length() - 1} times), got {tile}"
            )
        self.overlap = tile // 4 if overlap is None else overlap
        if not 0 <= self.overlap <= tile // 2:
            raise ValueError(
                f"--overlap must be in [0, tile // 2 = {tile // 2}], got {self.overlap}"
            )

    @property
    def stochastic(self) -> bool:
        """Whether the draws differ (a diffusion model, not the regression baseline)."""
        return self.spec["schedule"] != "regression"

    @property
    def tiled(self) -> bool:
        """Whether images of any size are restored tile by tile."""
        return self.tile is not None

    @property
    def channels(self) -> int:
        """Channels of a measurement."""
        return self.task.measurement_channels or int(self.spec["x_channels"])

    @property
    def factor(self) -> int:
        """How many times smaller a measurement is than the restoration."""
        return self.task.factor or int(self.options["factor"])

    @property
    def measurement_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one measurement of the trained size (any size when tiled)."""
        side = int(self.spec["image_size"]) // self.factor
        return (self.channels, side, side)

    def condition(self, y: Tensor) -> Tensor:
        """The model's condition ``[B, C_x, H, W]`` of measurements ``y [B, C, h, w]``."""
        if self.tiled:
            if y.dim() != 4 or y.shape[1] != self.channels or min(y.shape[-2:]) < 1:
                raise ValueError(
                    f"a {self.task_name} model takes measurements [B, {self.channels}, h, w], "
                    f"got {list(y.shape)}"
                )
            return self.task.from_measurement(y, self.options)
        if y.dim() != 4 or tuple(y.shape[1:]) != self.measurement_shape:
            want = ", ".join(map(str, ("B", *self.measurement_shape)))
            raise ValueError(
                f"a {self.task_name} model takes measurements [{want}], got {list(y.shape)}"
            )
        return self.task.from_measurement(y, self.options)

    def forward(self, y: Tensor, operator: Operator | None = None) -> Reconstruction:
        condition = self.condition(y)
        device = next(self.model.parameters()).device
        with PeakMemory(device) as peak:
            start = time.perf_counter()
            if self.tiled:
                draws = self._tiled_draws(condition.to(device))
            else:
                draws = sample_images(
                    self.model,
                    condition.to(device),
                    self.task_name,
                    self.samples,
                    self.steps,
                    self.generator,
                    self.batch_size or max(len(y), 1),
                    self.progress,
                )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
        steps = self.steps if self.steps is not None else self.spec.get("timesteps", 1)
        nfe = self.samples * steps if self.stochastic else 1
        return Reconstruction(
            draws.mean(0), nfe, seconds, peak.bytes, samples=draws, stochastic=self.stochastic
        )

    def _tiled_draws(self, condition: Tensor) -> Tensor:
        """``[S, B, C, H, W]`` draws of a condition of any size, tile by tile. A side smaller
        than the tile and not a multiple of the UNet's divisor is padded (replicating the
        border) for the sampling and cropped after."""
        assert self.tile is not None and self.overlap is not None
        height, width = condition.shape[-2:]
        divisor = size_divisor(self.model)

        def pad(side: int) -> int:
            return 0 if side >= self.tile else -side % divisor

        pad_h, pad_w = pad(height), pad(width)
        if pad_h or pad_w:
            condition = F.pad(condition, (0, pad_w, 0, pad_h), mode="replicate")
        tiles = len(Tiling(height + pad_h, width + pad_w, self.tile, self.overlap))
        budget = self.batch_size or DEFAULT_TILE_BATCH
        draws = sample_images(
            self.model,
            condition,
            self.task_name,
            self.samples,
            self.steps,
            self.generator,
            max(1, budget // tiles),
            self.progress,
            tile=self.tile,
            overlap=self.overlap,
            tile_batch=budget,
        )
        return draws[..., :height, :width]

    def baseline(self, y: Tensor, operator: Operator | None = None) -> Tensor:
        """The task's classical estimate ``[B, C, H, W]`` (upsampled input; TIE for phase)."""
        return self.task.baseline(self.condition(y), self.options)

    def pairs(self, split: str = "test", start: int = 0, count: int = 16) -> PairedData:
        """Simulated pairs ``start … start + count − 1`` of the model's task and options
        (:meth:`PairedData.measurements` and :meth:`PairedData.images` are ``y`` and the
        truth)."""
        if self.task_name == PAIRS_TASK:
            raise ValueError(
                "this model was trained on your own pairs: restore image files with --input"
            )
        if split not in self.task.splits:
            raise ValueError(f"split must be one of {list(self.task.splits)} for {self.task_name}")
        data = load_paired(self.task_name, split, start + count, 0, **self.spec["task_options"])
        if start >= len(data):
            raise ValueError(f"start {start} is past the end of the {split} pairs")
        return data[start:]

    def read_measurements(self, path: str | os.PathLike[str]) -> tuple[Tensor, list[str]]:
        """``(y [N, C, h, w], names)``: measurement files (a file or a folder; PNG/TIFF, a
        multi-frame TIFF for several channels) of this model's size; tiled, of any size (the
        same for every file of one call; TIFFs through ``tifffile``,
        :func:`~diffvi.data.paired_files.read_image_set`), a model of your own pairs checking
        them as its training files were."""
        if self.tiled:
            from diffvi.data.paired_files import read_image_set

            pairs = self.task_name == PAIRS_TASK
            return read_image_set(path, self.channels, self.options["normalize"] if pairs else None)
        from diffvi.data.files import read_measurement_files

        return read_measurement_files(path, *self.measurement_shape)


def load_cvdm_reconstructor(
    name_or_path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    samples: int = 20,
    steps: int | None = None,
    seed: int | None = None,
    progress: bool = False,
    batch_size: int | None = None,
    tile: int | None = None,
    overlap: int | None = None,
) -> CVDMReconstructor:
    """Load a trained CVDM (a ``train cvdm`` run folder, its export or a named model) as a
    :class:`CVDMReconstructor` on ``device``; ``seed`` seeds its generator (on that device);
    ``tile`` and ``overlap`` as the reconstructor's."""
    from diffvi.training import load, read_spec  # the one place a CVDM is loaded

    family = load(name_or_path, device)
    if family.kind != "cvdm":
        raise ValueError(f"{name_or_path} holds a {family.kind!r} model, not a CVDM")
    model, spec = family.model, read_spec(name_or_path)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=torch.device(device)).manual_seed(seed)
    return CVDMReconstructor(
        model, spec, samples, steps, generator, progress, batch_size, tile, overlap
    )
