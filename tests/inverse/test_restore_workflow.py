"""The restoration workflow: simulated measurements, one reconstructor contract for the
solvers, the pseudo-inverse and CVDM, batch-by-batch restoration with scores, and the report
files; clear errors on bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from diffvi.diffusion.conditional import CVDM
from diffvi.diffusion.schedules import CosineSchedule
from diffvi.evaluation.conditional import sample_images
from diffvi.inverse import (
    Denoising,
    Inpainting,
    PhaseRetrieval,
    RestoreResult,
    build_operator,
    measurement_image,
    random_mask,
    restore,
    simulate_measurement,
)
from diffvi.inverse.prepare import prepare_restoration
from diffvi.inverse.report import summary_line, write_restoration
from diffvi.inverse.solvers import (
    CVDMReconstructor,
    PseudoInverse,
    Reconstruction,
    Reconstructor,
    build_solver,
    solver_defaults,
)

SHAPE = (1, 8, 8)


def _images(n: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- measurement


def test_simulated_measurement_is_a_of_x_plus_seeded_noise():
    x = _images()
    operator = build_operator("sr4", (1, 8, 8))
    clean = simulate_measurement(x, operator, 0.0, _gen())
    assert torch.equal(clean, operator(x)) and clean.shape == (5, 1, 2, 2)
    noisy = simulate_measurement(x, operator, 0.1, _gen(3))
    assert torch.equal(noisy, simulate_measurement(x, operator, 0.1, _gen(3)))
    expected = operator(x) + 0.1 * torch.randn(clean.shape, generator=_gen(3))
    assert torch.equal(noisy, expected)
    assert not simulate_measurement(x.requires_grad_(), operator, 0.1, _gen()).requires_grad
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        simulate_measurement(x, operator, -1.0)


# ----------------------------------------------------------------------------- contract


def test_pseudo_inverse_restores_observed_pixels_and_needs_a_linear_operator():
    x = _images()
    operator = Inpainting(random_mask(SHAPE, 0.5, _gen(1)))
    method = PseudoInverse()
    assert isinstance(method, Reconstructor)
    result = method(operator(x), operator)
    assert isinstance(result, Reconstruction) and result.nfe == 0 and result.samples is None
    assert torch.allclose(result.x * operator.mask, x * operator.mask, atol=1e-6)
    assert torch.equal(method.baseline(operator(x), operator), operator(x).clamp(0, 1))
    with pytest.raises(ValueError, match="LinearOperator"):
        method(x, PhaseRetrieval(SHAPE))
    with pytest.raises(ValueError, match="damping must be >= 0"):
        PseudoInverse(-1.0)


def test_measurement_image_upsamples_small_measurements_and_skips_others():
    x = _images(2)
    sr = build_operator("sr4", SHAPE)
    shown = measurement_image(sr, sr(x))
    assert shown.shape == x.shape and torch.equal(
        shown[..., :4, :4], sr(x)[..., :1, :1].expand(-1, -1, 4, 4)
    )
    assert measurement_image(PhaseRetrieval(SHAPE), PhaseRetrieval(SHAPE)(x)) is None


def test_a_bound_solver_is_solve_with_its_prior_noise_and_generator():
    from diffvi import load

    try:
        prior = load("mnist").model
    except (FileNotFoundError, ValueError) as err:
        pytest.skip(f"no shipped MNIST prior: {err}")
    x = torch.rand(2, 1, 28, 28, generator=_gen(0))
    operator = build_operator("inpaint-box", (1, 28, 28))
    y = simulate_measurement(x, operator, 0.05, _gen(1))
    solver = build_solver("red-diff", steps=3)
    bound = solver.bind(prior, 0.05, _gen(2))(y, operator)
    direct = solver.solve(y, operator, prior, 0.05, _gen(2))
    assert torch.equal(bound.x, direct.x) and bound.nfe == direct.nfe == 3
    with pytest.raises(ValueError, match="needs the forward operator"):
        solver.bind(prior)(y, None)


def test_solver_defaults_are_the_constructor_keywords():
    assert solver_defaults("ddrm") == {
        "steps": 20,
        "eta": 0.85,
        "eta_b": 1.0,
        "clip_denoised": True,
    }
    with pytest.raises(ValueError, match="unknown solver"):
        solver_defaults("nope")


# ----------------------------------------------------------------------------- workflow


def test_restore_simulates_batch_by_batch_and_scores_against_the_reference():
    x = _images(5)
    operator = Denoising(SHAPE)
    # Batch by batch is what one call per batch gives, with one noise generator across them.
    result = restore(PseudoInverse(), operator, reference=x, noise_std=0.1, generator=_gen(7),
                     batch_size=2)  # fmt: skip
    g = _gen(7)
    y = torch.cat([simulate_measurement(x[i : i + 2], operator, 0.1, g) for i in (0, 2, 4)])
    assert isinstance(result, RestoreResult) and len(result) == 5
    assert torch.equal(result.measurement, y)
    assert torch.equal(result.restored, y.clamp(0, 1))
    assert torch.equal(result.baseline, y.clamp(0, 1))  # the measurement, shown as images
    assert set(result.scores) == {"psnr", "ssim", "psnr_baseline", "ssim_baseline"}
    assert result.scores["psnr"].shape == (5,)
    assert result.summary["images"] == 5 and result.summary["psnr"] == pytest.approx(
        result.scores["psnr"].mean().item()
    )
    assert result.baseline_summary["psnr"] == pytest.approx(result.summary["psnr"])
    assert result.samples is None and result.std is None and result.nfe == 0


def test_restore_of_given_measurements_scores_only_with_a_reference():
    x = _images(3)
    operator = Denoising(SHAPE)
    exact = restore(PseudoInverse(), operator, measurement=x, reference=x)
    assert torch.allclose(exact.scores["psnr"], torch.full((3,), 100.0))  # the PSNR cap
    unscored = restore(PseudoInverse(), operator, measurement=x)
    assert unscored.scores == {} and unscored.summary is None and unscored.reference is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "clean images"),
        ({"reference": _images(2)}, "needs an operator"),
        ({"reference": _images(2), "measurement": _images(3)}, "as many references"),
        ({"measurement": _images(2), "batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_restore_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        restore(PseudoInverse(), None, **kwargs)


# ----------------------------------------------------------------------------- CVDM


def _cvdm(samples: int = 4, seed: int = 1, **kwargs) -> CVDMReconstructor:
    torch.manual_seed(0)
    model = CVDM.build(
        1, 1, image_size=8, base_channels=8, channel_mults=(1, 2), num_groups=4,
        schedule=CosineSchedule(), timesteps=10, image=False,
    )  # fmt: skip
    spec = {"task": "mnist-sr4", "task_options": {}, "image_size": 8, "schedule": "cosine",
            "timesteps": 10}  # fmt: skip
    return CVDMReconstructor(model.eval(), spec, samples, 3, _gen(seed), **kwargs)


def test_cvdm_behind_the_contract_is_the_mean_of_its_samples():
    method = _cvdm()
    y = torch.rand(3, 1, 2, 2, generator=_gen(5))  # 2x2 low-resolution images of 8x8 ones
    result = method(y)
    assert result.x.shape == (3, 1, 8, 8) and result.samples.shape == (4, 3, 1, 8, 8)
    assert torch.equal(result.x, result.samples.mean(0)) and result.nfe == 4 * 3
    assert result.x.min() >= 0 and result.x.max() <= 1 and result.std.shape == (3, 1, 8, 8)
    # The same draws as the evaluation's sampler from the task's condition.
    condition = 2 * torch.nn.functional.interpolate(y, size=8, mode="bicubic") - 1
    assert torch.equal(method.condition(y), condition)
    expected = sample_images(method.model, condition, "mnist-sr4", 4, 3, _gen(1), 3)
    assert torch.equal(result.samples, expected)
    assert torch.equal(method.baseline(y), ((condition + 1) / 2).clamp(0, 1))
    assert method.measurement_shape == (1, 2, 2)
    # Chains sampled two at a time: the evaluation's order (draw by draw) and numbers.
    chunked = _cvdm(batch_size=2)(y)
    assert torch.equal(chunked.samples, sample_images(method.model, condition, "mnist-sr4", 4, 3,
                                                      _gen(1), 2))  # fmt: skip
    with pytest.raises(ValueError, match=r"takes measurements \[B, 1, 2, 2\]"):
        method(torch.rand(3, 1, 4, 4))


def test_restore_with_cvdm_scores_its_samples_and_writes_the_uncertainty(tmp_path):
    y = torch.rand(3, 1, 2, 2, generator=_gen(5))
    truth = torch.rand(3, 1, 8, 8, generator=_gen(6))
    result = restore(_cvdm(), measurement=y, reference=truth, batch_size=3)
    assert list(result.scores) == [
        "psnr", "ssim", "psnr_sample", "ssim_sample", "psnr_baseline", "ssim_baseline",
        "spearman", "coverage", "mean_std",
    ]  # fmt: skip
    assert torch.equal(result.std, result.samples.std(0, correction=0))
    settings = {"model": "m", "task": "mnist-sr4", "schedule": "cosine", "samples": 4,
                "steps": 3, "seed": 1, "device": "cpu"}  # fmt: skip
    metrics = write_restoration(tmp_path, ["a", "b", "c"], result, settings)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert list(metrics)[: len(settings)] == list(settings)
    assert metrics["per_image"][0]["uncertainty"] == "uncertainty/a.png"
    for folder, suffix in [("restored", "tif"), ("uncertainty", "tif"), ("input", "png")]:
        assert (tmp_path / folder / f"c.{suffix}").is_file()
    png = np.asarray(Image.open(tmp_path / "uncertainty" / "a.png"), dtype=float)
    scaled = result.std[0, 0].numpy() / metrics["uncertainty_png_scale"] * 255
    assert np.abs(png - np.round(scaled)).max() <= 1
    assert (
        "Spearman" in summary_line(metrics)
        and "CVDM restoration" in (tmp_path / "metrics.md").read_text()
    )


def test_report_of_a_solver_names_measured_files_and_scores(tmp_path):
    x = _images(3)
    result = restore(
        PseudoInverse(), Denoising(SHAPE), reference=x, noise_std=0.1, generator=_gen()
    )
    settings = {"task": "denoise", "solver": "pinv", "solver_options": {}, "prior": "-",
                "noise_std": 0.1, "seed": 0, "device": "cpu"}  # fmt: skip
    metrics = write_restoration(tmp_path, ["a", "b", "c"], result, settings)
    entry = metrics["per_image"][1]
    assert list(entry) == ["name", "restored", "psnr", "ssim", "measured", "measured_psnr",
                           "measured_ssim"]  # fmt: skip
    assert (tmp_path / "measured" / "b.png").is_file() and (tmp_path / "comparison.png").is_file()
    assert metrics["measurement_summary"] == result.baseline_summary
    assert summary_line(metrics).startswith("pinv on denoise, 3 images: PSNR")
    with pytest.raises(ValueError, match="expected 3 names"):
        write_restoration(tmp_path, ["a"], result, settings)


def test_one_item_is_reported_in_the_singular_and_the_comparison_rows_are_labelled(
    tmp_path, monkeypatch
):
    import diffvi.inverse.report as report

    drawn = {}
    monkeypatch.setattr(report, "save_image_grid", lambda *a, **kw: drawn.update(kw))
    x = _images(1)
    result = restore(
        PseudoInverse(), Denoising(SHAPE), reference=x, noise_std=0.1, generator=_gen()
    )
    settings = {"task": "denoise", "solver": "pinv", "solver_options": {}, "prior": "-",
                "noise_std": 0.1, "seed": 0, "device": "cpu"}  # fmt: skip
    metrics = write_restoration(tmp_path, ["a"], result, settings)
    assert summary_line(metrics).startswith("pinv on denoise, 1 image: PSNR")
    assert "`-`, 1 image, σ_y" in (tmp_path / "metrics.md").read_text()
    assert drawn["row_labels"] == ["truth", "measurement", "pinv"] and drawn["nrow"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one source"),
        ({"input_path": "x", "dataset": "mnist"}, "exactly one source"),
        ({"dataset": "mnist-sr4"}, "needs --model"),
    ],
)
def test_preparing_a_job_without_one_source_or_a_model_is_an_error(kwargs, message):
    method = "cvdm" if kwargs.get("dataset") == "mnist-sr4" else "red-diff"
    with pytest.raises(ValueError, match=message):
        prepare_restoration(method, **kwargs)
