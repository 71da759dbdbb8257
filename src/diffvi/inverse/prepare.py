"""A restoration job from names and files, as ``diffvi restore`` describes one: which method
(a solver with a diffusion prior, or a trained CVDM), which forward operator, and which items
(image files or a data-set split; for CVDM, measurement files or simulated pairs of its task).

>>> job = prepare_restoration("red-diff", task="sr4", prior="mnist", dataset="mnist", count=8)
>>> result = job.run()                                         # doctest: +SKIP
>>> write_restoration("out", job.names, result, job.settings)  # doctest: +SKIP

:func:`prepare_restoration` loads everything and checks it; :meth:`RestoreJob.run` is
:func:`~diffvi.inverse.restore.restore`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from diffvi.evaluation.sample_quality import FeatureClassifier
from diffvi.inverse.operators import Operator
from diffvi.inverse.restore import RestoreResult, noise_std_in_unit_range, restore
from diffvi.inverse.solvers.base import Reconstructor

__all__ = ["CVDM", "RestoreJob", "prepare_restoration"]

CVDM = "cvdm"
"""The method name of a trained conditional model (beside the names of ``SOLVERS``)."""


@dataclass
class RestoreJob:
    """Everything :func:`~diffvi.inverse.restore.restore` needs, and the settings that lead the
    report.

    Attributes:
        reconstructor: the method, ready to call.
        operator: the forward model (``None`` for CVDM, whose task fixes it).
        names: one name per item (file names, or zero-padded data-set indices).
        reference: the clean images ``[N, C, H, W]``, when known.
        measurement: the measurements, when not simulated from ``reference``.
        settings: method, task, source, seed, device, … (the head of ``metrics.json``).
        noise_std, seed: σ_y of the simulated measurements and the seed of their noise.
        device: where the items are restored.
        classifier: the feature classifier of perceptual scores, or ``None``.
        batch_size: items passed to the reconstructor at once (CVDM takes all and samples
            its chains ``batch_size`` at a time itself, draw by draw).
    """

    reconstructor: Reconstructor
    operator: Operator | None
    names: list[str]
    reference: Tensor | None = None
    measurement: Tensor | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    noise_std: float = 0.0
    seed: int = 0
    device: torch.device | str | None = None
    classifier: FeatureClassifier | None = None
    batch_size: int = 64

    def run(self) -> RestoreResult:
        """Restore the items, :attr:`batch_size` at a time, and score them."""
        return restore(
            self.reconstructor,
            self.operator,
            reference=self.reference,
            measurement=self.measurement,
            noise_std=self.noise_std,
            generator=torch.Generator().manual_seed(self.seed),
            batch_size=self.batch_size,
            device=self.device,
            classifier=self.classifier,
        )


def prepare_restoration(
    method: str,
    *,
    task: str = "inpaint-box",
    prior: str = "mnist",
    model: str | os.PathLike[str] | None = None,
    options: dict[str, Any] | None = None,
    input_path: str | os.PathLike[str] | None = None,
    dataset: str | None = None,
    split: str = "test",
    start: int = 0,
    count: int = 16,
    samples: int = 20,
    steps: int | None = None,
    noise_std: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    perceptual: bool = False,
    progress: bool = False,
    operator_options: dict[str, Any] | None = None,
    resize: tuple[int, int] | None = None,
    noise_units: str = "unit",
    tile: int | None = None,
    overlap: int | None = None,
) -> RestoreJob:
    """Load a method and the items it restores.

    Args:
        method: a solver name (``red-diff``, ``dps``, ``pigdm``, ``ddrm``) or ``"cvdm"``.
        task: the forward operator of a solver (a name of ``OPERATORS``), built for the
            prior's image shape (colour for a colour prior) with ``operator_options``.
        prior: a solver's diffusion prior: a name (``mnist``) or a model folder.
        model: CVDM's trained model (a ``train cvdm`` run folder or its export).
        options: a solver's constructor keywords besides ``steps``.
        input_path: clean images (a PNG/JPEG file or folder) for a solver; measurement files
            for CVDM.
        dataset, split, start, count: instead of ``input_path``, items ``start … start +
            count − 1`` of a data-set split (a solver) or of the simulated pairs of CVDM's own
            task (``dataset`` is then that task's name; scored against the truth).
        samples: CVDM's draws per item.
        steps: solver or sampler steps (default: the method's own).
        noise_std: σ_y of a solver's simulated measurement noise, in ``noise_units``.
        seed: of the mask, the noise and the method's random numbers.
        device: where to restore (``"auto"``: CUDA when available).
        batch_size: items restored at once (CVDM: chains sampled at once).
        perceptual: also score a perceptual distance and classifier-FID (solvers).
        progress: show progress bars.
        operator_options: the task's parameters (a subset of
            :func:`~diffvi.inverse.registry.operator_parameters`) in place of its preset's.
        resize: ``(H, W)``: bring every ``input_path`` image to this size first
            (:func:`~diffvi.data.files.resize_cover`); it must be the prior's.
        noise_units: the units of ``noise_std``, a key of
            :data:`~diffvi.inverse.restore.NOISE_UNITS` (``"symmetric"``: [−1, 1] images, as
            DPS states σ_y); the job and its settings hold σ_y in [0, 1] units.
        tile, overlap: CVDM restores images of any size tile by tile
            (:class:`~diffvi.inverse.solvers.cvdm.CVDMReconstructor`; a model of your own
            pairs always does, by default on tiles of its trained size).

    Raises:
        ValueError: not exactly one of ``input_path`` and ``dataset``, or a method, task,
            prior, model or source that does not fit.
    """
    from diffvi.utils.runtime import resolve_device

    if (input_path is None) == (dataset is None):
        raise ValueError(
            "give exactly one source: --input FILE_OR_FOLDER or --dataset NAME (clean images; "
            "with --solver cvdm, measurements or the model's own task, scored against the truth)"
        )
    where = resolve_device(device)
    noise_std = noise_std_in_unit_range(noise_std, noise_units)
    if method == CVDM and (operator_options or resize is not None):
        raise ValueError("operator options and --resize do not apply to --solver cvdm")
    if resize is not None and input_path is None:
        raise ValueError("--resize applies to --input images, not to --dataset")
    if method == CVDM:
        if model is None:
            raise ValueError("--solver cvdm needs --model (a `diffvi train cvdm` run folder)")
        job = _cvdm_job(model, input_path, dataset, split, start, count, samples, steps, seed,
                        where, batch_size, progress, tile, overlap)  # fmt: skip
    else:
        if tile is not None or overlap is not None:
            raise ValueError("--tile and --overlap apply to --solver cvdm")
        options = {**({} if steps is None else {"steps": steps}), **(options or {})}
        job = _solver_job(method, task, prior, options, input_path, dataset, split, start, count,
                          noise_std, seed, where, perceptual, progress,
                          dict(operator_options or {}), resize)  # fmt: skip
    job.settings.update({"seed": seed, "device": str(where)})
    if method != CVDM:
        job.settings["source"] = (
            {"input": str(input_path)}
            if input_path is not None
            else {"dataset": dataset, "split": split, "start": start, "count": len(job.names)}
        )
    job.noise_std, job.seed, job.device = noise_std, seed, where
    if method != CVDM:
        job.batch_size = batch_size
    return job


def _solver_job(
    name: str,
    task: str,
    prior: str,
    options: dict[str, Any],
    input_path: str | os.PathLike[str] | None,
    dataset: str | None,
    split: str,
    start: int,
    count: int,
    noise_std: float,
    seed: int,
    device: torch.device,
    perceptual: bool,
    progress: bool,
    operator_options: dict[str, Any] | None = None,
    resize: tuple[int, int] | None = None,
) -> RestoreJob:
    from diffvi.data.files import read_image_files
    from diffvi.data.image_files import load_images
    from diffvi.inverse.registry import build_operator, operator_parameters
    from diffvi.inverse.solvers import REDDiff, build_solver, solver_defaults
    from diffvi.training import load, read_spec
    from diffvi.utils.paths import find_model

    family = load(prior, device)
    if family.kind != "diffusion":
        raise ValueError(f"prior {prior!r} is a {family.kind!r} model, not a diffusion model")
    model, spec = family.model, read_spec(prior)
    shape = tuple(int(s) for s in spec.get("event_shape", ()))
    if len(shape) != 3 or not spec.get("image", True):
        raise ValueError(f"prior {prior!r} is not a model of images (event shape {list(shape)})")
    operator_options = operator_options or {}
    if resize is not None and tuple(resize) != shape[1:]:
        raise ValueError(
            f"prior {prior!r} takes {shape[1]}x{shape[2]} images (HxW), not {resize[0]}x"
            f"{resize[1]}: pass --resize {shape[1]},{shape[2]}"
        )
    if input_path is not None:
        reference, names = read_image_files(input_path, shape, resize=resize is not None)
    else:
        reference, _ = load_images(dataset, split, shape, start + count, seed, start)
        names = [f"{start + i:04d}" for i in range(len(reference))]
    masks = torch.Generator().manual_seed(seed)
    operator = build_operator(task, shape, masks, **operator_options).to(device)
    solver = build_solver(name, **options)
    if not isinstance(operator, solver.requires):
        raise ValueError(
            f"solver {name} needs a {solver.requires.__name__} (an operator with a known SVD); "
            f"task {task} is not one"
        )
    classifier = None
    if perceptual:
        from diffvi.evaluation.sample_quality import load_or_train_feature_classifier

        data_name = dataset or spec.get("metadata", {}).get("dataset")
        if data_name is None:
            raise ValueError(f"prior {prior!r} does not name its data set; pass --dataset")
        classifier = load_or_train_feature_classifier(data_name, progress=progress)
    generator = torch.Generator(device=device).manual_seed(seed)
    solver_options = {**solver_defaults(name), **options}
    if isinstance(solver, REDDiff):  # lr and λ as it resolves them from σ_y and the operator
        solver_options.update(solver.settings(operator, noise_std))
    settings = {
        "task": task,
        "solver": name,
        "solver_options": solver_options,
        "prior": prior,
        "prior_folder": spec.get("folder") or str(find_model(prior)),  # diffusers: its folder
        "noise_std": noise_std,
        "noise_std_symmetric": 2 * noise_std,
        "operator": {**operator_parameters(task), **operator_options},
        "image_shape": list(shape),
    }
    reconstructor = solver.bind(model, noise_std, generator, progress)
    return RestoreJob(
        reconstructor, operator, names, reference, None, settings, classifier=classifier
    )


def _cvdm_job(
    model: str | os.PathLike[str],
    input_path: str | os.PathLike[str] | None,
    dataset: str | None,
    split: str,
    start: int,
    count: int,
    samples: int,
    steps: int | None,
    seed: int,
    device: torch.device,
    batch_size: int,
    progress: bool,
    tile: int | None = None,
    overlap: int | None = None,
) -> RestoreJob:
    from diffvi.data.paired import PAIRS_TASK
    from diffvi.inverse.solvers.cvdm import load_cvdm_reconstructor

    reconstructor = load_cvdm_reconstructor(
        model, device, samples, steps, seed, progress, batch_size, tile, overlap
    )
    spec, task = reconstructor.spec, reconstructor.task_name
    reference = None
    if input_path is not None:
        measurement, names = reconstructor.read_measurements(input_path)
    else:
        if task == PAIRS_TASK:
            raise ValueError(
                "this model was trained on your own pairs: restore image files with --input"
            )
        if dataset != task:
            raise ValueError(
                f"this model was trained on task {task!r}; pass --dataset {task} (got {dataset!r})"
            )
        pairs = reconstructor.pairs(split, start, count)
        measurement, reference = pairs.measurements(), pairs.images()
        names = [f"{start + i:04d}" for i in range(len(pairs))]
    settings = {
        "model": str(model),
        "task": task,
        "schedule": spec["schedule"],
        "samples": samples,
        "steps": steps if steps is not None else spec.get("timesteps"),
    }
    if reconstructor.tiled:
        settings.update(tile=reconstructor.tile, overlap=reconstructor.overlap)
    job = RestoreJob(reconstructor, None, names, reference, measurement, settings)
    # One call for all items: the reconstructor samples batch_size chains at a time, draw by
    # draw, in the order of the evaluation's sample_images.
    job.batch_size = max(len(names), 1)
    return job
