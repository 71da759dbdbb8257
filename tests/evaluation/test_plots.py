"""Plots: grid geometry, grey and RGB images, PCA for wide latents, shape validation."""

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from diffvi.evaluation.plots import (
    grid_size,
    save_image_grid,
    save_latent_comparison,
    save_latent_scatter,
    save_reconstructions,
)


def _read(path) -> np.ndarray:
    return mpimg.imread(path)


def test_grid_of_16_digits_with_4_per_row_is_square(tmp_path):
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    path = save_image_grid(images, tmp_path / "grid.png", nrow=4, scale=1)
    pixels = _read(path)
    assert path == tmp_path / "grid.png"
    assert pixels.shape[:2] == (4 * 9 + 1, 4 * 9 + 1)


def test_grid_of_16_digits_with_8_per_row_is_twice_as_wide_as_2_rows(tmp_path):
    images = torch.rand(16, 1, 8, 8)
    pixels = _read(save_image_grid(images, tmp_path / "grid.png", nrow=8, scale=1, padding=0))
    assert pixels.shape[:2] == (2 * 8, 8 * 8)


def test_row_labels_are_drawn_in_a_band_left_of_the_unchanged_grid(tmp_path):
    images = torch.full((6, 1, 28, 28), 0.5)
    plain = _read(save_image_grid(images, tmp_path / "plain.png", nrow=3))
    labels = ["truth", "measurement"]
    labelled = _read(save_image_grid(images, tmp_path / "l.png", nrow=3, row_labels=labels))
    band_width = labelled.shape[1] - plain.shape[1]
    assert labelled.shape[0] == plain.shape[0] and band_width > 40  # "measurement" fits
    assert np.array_equal(labelled[:, band_width:], plain)
    band = labelled[:, :band_width, 0]
    for row in range(2):  # dark text pixels within each row's 28 pixels, white elsewhere
        span = band[1 + row * 29 : (row + 1) * 29]
        assert (span < 0.5).any() and (span == 1.0).any()
    with pytest.raises(ValueError, match="expected 2 row labels"):
        save_image_grid(images, tmp_path / "x.png", nrow=3, row_labels=["one"])


def test_grid_default_scale_enlarges_small_images_only(tmp_path):
    digits = _read(save_image_grid(torch.rand(4, 1, 8, 8), tmp_path / "d.png", nrow=2))
    mnist = _read(save_image_grid(torch.rand(4, 1, 28, 28), tmp_path / "m.png", nrow=2))
    assert digits.shape[:2] == grid_size(4, 8, 8, nrow=2, scale=4) == (2 * 33 + 1, 2 * 33 + 1)
    assert mnist.shape[:2] == grid_size(4, 28, 28, nrow=2, scale=1) == (2 * 29 + 1, 2 * 29 + 1)


def test_grid_keeps_the_aspect_of_non_square_frey_faces(tmp_path):
    pixels = _read(save_image_grid(torch.rand(6, 1, 28, 20), tmp_path / "f.png", nrow=3))
    assert pixels.shape[:2] == (2 * 29 + 1, 3 * 21 + 1)


def test_grid_places_each_image_pixel_for_pixel(tmp_path):
    images = torch.zeros(2, 1, 8, 8)
    images[1] = 1.0  # second image white, first black, grey padding
    pixels = _read(save_image_grid(images, tmp_path / "g.png", nrow=2, scale=1))
    grey = pixels[..., 0]
    assert np.allclose(grey[1:9, 1:9], 0.0)
    assert np.allclose(grey[1:9, 10:18], 1.0)
    assert np.allclose(grey[0, :], 0.5, atol=0.01)


def test_grid_writes_rgb_colours(tmp_path):
    images = torch.zeros(1, 3, 4, 4)
    images[0, 0] = 1.0  # pure red
    pixels = _read(save_image_grid(images, tmp_path / "rgb.png", nrow=1, scale=1, padding=0))
    assert np.allclose(pixels[..., :3], [1.0, 0.0, 0.0])


def test_grid_leaves_no_temporary_files(tmp_path):
    save_image_grid(torch.rand(3, 1, 8, 8), tmp_path / "grid.png")
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


@pytest.mark.parametrize("shape", [(8, 8), (16, 8, 8), (4, 2, 8, 8), (0, 1, 8, 8), (2, 1, 1, 8, 8)])
def test_grid_rejects_images_that_are_not_N_C_H_W_grey_or_rgb(tmp_path, shape):
    with pytest.raises(ValueError, match=r"\[N, C, H, W\].*got"):
        save_image_grid(torch.rand(shape), tmp_path / "bad.png")


def test_grid_rejects_values_outside_unit_interval_and_nan(tmp_path):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        save_image_grid(torch.full((1, 1, 8, 8), 2.0), tmp_path / "bad.png")
    with pytest.raises(ValueError, match="finite"):
        save_image_grid(torch.full((1, 1, 8, 8), float("nan")), tmp_path / "bad.png")


def test_grid_rejects_bad_nrow_and_missing_suffix(tmp_path):
    with pytest.raises(ValueError, match="nrow"):
        save_image_grid(torch.rand(2, 1, 8, 8), tmp_path / "bad.png", nrow=0)
    with pytest.raises(ValueError, match="suffix"):
        save_image_grid(torch.rand(2, 1, 8, 8), tmp_path / "no_suffix")


def test_reconstructions_figure_is_written_and_wider_than_tall(tmp_path):
    x = torch.rand(10, 1, 28, 28)
    path = save_reconstructions(x, x.flip(0), tmp_path / "rec.png")
    pixels = _read(path)
    assert pixels.shape[1] > pixels.shape[0]


def test_reconstructions_reject_mismatched_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"x_hat must have the shape of x.*\[4, 1, 8, 8\]"):
        save_reconstructions(torch.rand(4, 1, 8, 8), torch.rand(3, 1, 8, 8), tmp_path / "r.png")


def test_latent_scatter_2d_uses_raw_axes(tmp_path, monkeypatch):
    labels_seen = _capture_axis_labels(monkeypatch)
    z = torch.randn(50, 2)
    save_latent_scatter(z, torch.arange(50) % 3, tmp_path / "z.png", title="2-D")
    assert labels_seen == ["$z_1$", "$z_2$"]
    assert (tmp_path / "z.png").stat().st_size > 0


def test_latent_scatter_projects_wide_latents_with_pca(tmp_path, monkeypatch):
    labels_seen = _capture_axis_labels(monkeypatch)
    z = torch.randn(60, 8)
    labels = torch.arange(60) % 10
    labels[:5] = -1  # some unlabelled points
    save_latent_scatter(z, labels, tmp_path / "z.png")
    assert all("PC" in name and "8-D" in name for name in labels_seen)


def test_latent_scatter_accepts_no_labels_and_numpy(tmp_path):
    path = save_latent_scatter(
        np.random.default_rng(0).normal(size=(30, 5)), None, tmp_path / "z.png"
    )
    assert path.exists()


@pytest.mark.parametrize("shape", [(10,), (10, 1), (2, 3, 4)])
def test_latent_scatter_rejects_z_that_is_not_N_by_at_least_2(tmp_path, shape):
    with pytest.raises(ValueError, match=r"\[N, D\].*got"):
        save_latent_scatter(torch.randn(shape), None, tmp_path / "z.png")


def test_latent_scatter_rejects_labels_of_the_wrong_length_or_type(tmp_path):
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \[10\], got \[9\]"):
        save_latent_scatter(
            torch.randn(10, 2), torch.zeros(9, dtype=torch.long), tmp_path / "z.png"
        )
    with pytest.raises(ValueError, match="integers"):
        save_latent_scatter(torch.randn(10, 2), torch.zeros(10), tmp_path / "z.png")


def _capture_axis_labels(monkeypatch) -> list[str]:
    """Record the x and y labels the scatter plot sets."""
    from matplotlib.axes import Axes

    seen: list[str] = []
    set_x, set_y = Axes.set_xlabel, Axes.set_ylabel

    def record_x(self, label, *args, **kwargs):
        seen.append(label)
        return set_x(self, label, *args, **kwargs)

    def record_y(self, label, *args, **kwargs):
        seen.append(label)
        return set_y(self, label, *args, **kwargs)

    monkeypatch.setattr(Axes, "set_xlabel", record_x)
    monkeypatch.setattr(Axes, "set_ylabel", record_y)
    return seen


def test_latent_comparison_draws_one_panel_per_model_side_by_side(tmp_path):
    labels = torch.arange(40) % 4
    one = _read(save_latent_comparison([("a", torch.randn(40, 2))], labels, tmp_path / "1.png"))
    two = _read(
        save_latent_comparison(
            [("a", torch.randn(40, 2)), ("b", torch.randn(40, 5))], labels, tmp_path / "2.png"
        )
    )
    assert one.shape[0] == two.shape[0] and two.shape[1] > 1.4 * one.shape[1]
    with pytest.raises(ValueError, match="at least one"):
        save_latent_comparison([], labels, tmp_path / "0.png")
    with pytest.raises(ValueError, match=r"labels must have shape \[N\]"):
        save_latent_comparison([("a", torch.randn(39, 2))], labels, tmp_path / "x.png")


def test_latent_scatter_legends_name_the_classes_where_names_are_given(tmp_path, monkeypatch):
    import diffvi.evaluation.plots as plots

    legends: list[list[str]] = []
    save = plots._save_figure

    def record(fig, path, *args, **kwargs):
        legends.extend(
            [text.get_text() for text in ax.get_legend().get_texts()]
            for ax in fig.axes
            if ax.get_legend() is not None
        )
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "_save_figure", record)
    labels = torch.tensor([0, 1, 2, -1, 1, 0])
    names = ["B cell", "T cell", "NK"]
    save_latent_scatter(torch.randn(6, 2), labels, tmp_path / "z.png", names=names)
    assert legends[-1] == ["unlabelled", "B cell", "T cell", "NK"]
    save_latent_scatter(torch.randn(6, 2), labels, tmp_path / "z.png")
    assert legends[-1] == ["unlabelled", "0", "1", "2"]  # codes without names
    save_latent_comparison([("a", torch.randn(6, 3))], labels, tmp_path / "c.png", names=names)
    assert legends[-1] == ["unlabelled", "B cell", "T cell", "NK"]
    with pytest.raises(ValueError, match="labels go up to 2, got 2 names"):
        save_latent_scatter(torch.randn(6, 2), labels, tmp_path / "z.png", names=names[:2])


# 1000 Genomes: 26 populations in 5 super-populations.
THOUSAND_GENOMES = {
    "AFR": ["YRI", "LWK", "GWD", "MSL", "ESN", "ASW", "ACB"],
    "AMR": ["MXL", "PUR", "CLM", "PEL"],
    "EAS": ["CHB", "JPT", "CHS", "CDX", "KHV"],
    "EUR": ["CEU", "TSI", "FIN", "GBR", "IBS"],
    "SAS": ["GIH", "PJL", "BEB", "STU", "ITU"],
}


def _hsv(colour) -> np.ndarray:
    from matplotlib.colors import rgb_to_hsv

    return rgb_to_hsv(np.asarray(colour, dtype=float)[:3])


def _hue_gap(a, b) -> float:
    d = abs(_hsv(a)[0] - _hsv(b)[0])
    return min(d, 1 - d)


def _lightness(colour) -> float:
    rgb = np.asarray(colour, dtype=float)[:3]
    return (rgb.max() + rgb.min()) / 2


def _populations(per_population: int = 3) -> tuple[list[str], list[str]]:
    pops = [p for group in THOUSAND_GENOMES.values() for p in group for _ in range(per_population)]
    supers = [
        s for s, group in THOUSAND_GENOMES.items() for _ in group for _ in range(per_population)
    ]
    return pops, supers


def test_grouped_palette_shades_one_hue_per_group_and_gives_the_group_its_middle_shade():
    from diffvi.evaluation.plots import grouped_palette

    pops, supers = _populations()
    members, groups = grouped_palette(pops, supers)
    assert set(members) == set(pops) and set(groups) == set(THOUSAND_GENOMES)
    for group, inside in THOUSAND_GENOMES.items():
        for pop in inside:  # one hue per super-population, shared with its colour
            assert _hue_gap(members[pop], groups[group]) < 0.01
        light = sorted(_lightness(members[pop]) for pop in inside)
        assert min(np.diff(light)) > 0.05  # distinct shades
        assert light[0] < _lightness(groups[group]) < light[-1]  # the middle shade
        assert abs(_lightness(groups[group]) - (light[0] + light[-1]) / 2) < 0.02
    names = sorted(groups)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert _hue_gap(groups[a], groups[b]) > 0.08, (a, b)  # different hues
    # more groups than the named hues: evenly spaced ones, still all different
    many_members, many_groups = grouped_palette([f"p{k}" for k in range(24)],
                                                [f"g{k % 12}" for k in range(24)])  # fmt: skip
    hues = sorted(_hsv(colour)[0] for colour in many_groups.values())
    assert len(many_members) == 24 and min(np.diff(hues)) > 0.07
    with pytest.raises(ValueError, match="'a' is in two groups"):
        grouped_palette(["a", "a"], ["X", "Y"])


def _legend_colours(monkeypatch) -> list[list[tuple[str, tuple]]]:
    """(text, face colour) of every legend entry of each axis of the figures saved."""
    import diffvi.evaluation.plots as plots

    legends: list[list[tuple[str, tuple]]] = []
    save = plots._save_figure

    def record(fig, path, *args, **kwargs):
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None:
                legends.append([
                    (text.get_text(), tuple(handle.get_facecolor()[0][:3]))
                    for text, handle in zip(legend.get_texts(), legend.legend_handles,
                                            strict=True)
                ])  # fmt: skip
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(plots, "_save_figure", record)
    return legends


def test_embedding_panels_colour_populations_by_super_population_in_both_panels(
    tmp_path, monkeypatch
):
    from diffvi.evaluation.plots import save_embedding_panels

    legends = _legend_colours(monkeypatch)
    pops, supers = _populations()
    xy = np.random.default_rng(0).normal(size=(len(pops), 2))
    save_embedding_panels(
        xy, [("population", pops), ("super_population", supers)], tmp_path / "e.png"
    )
    by_pop, by_super = dict(legends[0]), dict(legends[1])
    # the legend lists the populations by super-population, sorted within it
    assert [name for name, _ in legends[0]] == [
        p for s in sorted(THOUSAND_GENOMES) for p in sorted(THOUSAND_GENOMES[s])
    ]
    for group, inside in THOUSAND_GENOMES.items():
        for pop in inside:
            assert _hue_gap(by_pop[pop], by_super[group]) < 0.01
        assert len({by_pop[pop] for pop in inside}) == len(inside)
    assert len(set(by_super.values())) == 5


def test_embedding_panels_keep_qualitative_colours_without_super_populations(tmp_path, monkeypatch):
    from diffvi.evaluation.plots import save_embedding_panels

    legends = _legend_colours(monkeypatch)
    pops, _ = _populations()
    xy = np.random.default_rng(0).normal(size=(len(pops), 2))
    none = ["(none)"] * len(pops)
    save_embedding_panels(xy, [("population", pops), ("super_population", none)],
                          tmp_path / "e.png")  # fmt: skip
    save_embedding_panels(xy, [("population", pops)], tmp_path / "one.png")
    for legend in (legends[0], legends[2]):
        names = [name for name, _ in legend]
        assert names == sorted(set(pops))  # alphabetical, no grouping
        assert len({colour for _, colour in legend}) == 26  # 26 distinct colours
    # ten classes or fewer: tab10 as before
    save_embedding_panels(xy[:12], [("population", pops[:12])], tmp_path / "few.png")
    import matplotlib.pyplot as plt

    tab10 = [tuple(plt.get_cmap("tab10")(k)[:3]) for k in range(4)]
    np.testing.assert_allclose([colour for _, colour in legends[-1]], tab10)
