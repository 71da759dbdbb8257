"""Figures: image grids, data-over-reconstruction rows and 2-D latent scatter plots.

Images follow the library convention: float ``[N, C, H, W]`` in [0, 1] with ``C`` = 1 (grey) or
3 (RGB); any ``H × W`` works (8×8 digits, 28×28 MNIST, 28×20 Frey faces). Tensors may live on
any device and need no gradient; NumPy arrays are accepted as well.

``save_image_grid`` writes the grid pixel for pixel (no axes, no resampling) so that its size is
predictable: ``nrows·(H·s + p) + p`` by ``ncols·(W·s + p) + p`` pixels, with ``s`` the integer
``scale`` and ``p`` the ``padding`` (see :func:`grid_size`). The other two draw matplotlib
figures. Every function writes to a temporary file in the destination folder and renames it into
place, so a reader never sees a half-written file, and returns the path it wrote.

Matplotlib runs on its non-interactive Agg backend; no display is needed.
"""

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from diffvi.utils.io import atomic_write

__all__ = [
    "grid_size",
    "grouped_palette",
    "save_embedding_panels",
    "save_image_grid",
    "save_latent_scatter",
    "save_reconstructions",
]

ArrayLike = torch.Tensor | np.ndarray

# Values this far outside [0, 1] are rounding noise (clipped); further out is an error.
_RANGE_TOLERANCE = 1e-3


def _to_numpy(values: ArrayLike, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    raise ValueError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(values).__name__}")


def _check_images(images: ArrayLike, name: str = "images") -> np.ndarray:
    """``[N, C, H, W]`` with C in {1, 3}, finite, in [0, 1] -> float64 array (clipped)."""
    array = _to_numpy(images, name)
    if array.ndim != 4 or array.shape[1] not in (1, 3) or array.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape [N, C, H, W] with N >= 1 and C = 1 (grey) or 3 (RGB), "
            f"got {list(array.shape)}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return np.clip(array, 0.0, 1.0)


def default_scale(height: int, width: int) -> int:
    """Integer up-scaling that makes small images viewable: ``max(1, 32 // max(H, W))``
    (4 for 8×8 digits, 1 for 28×28 MNIST)."""
    return max(1, 32 // max(height, width))


def grid_size(
    num: int, height: int, width: int, nrow: int, padding: int = 1, scale: int = 1
) -> tuple[int, int]:
    """Pixel size ``(height, width)`` of the grid ``save_image_grid`` writes for ``num`` images
    of ``height × width`` with ``nrow`` images per row."""
    ncols = min(nrow, num)
    nrows = math.ceil(num / nrow)
    return (
        nrows * (height * scale + padding) + padding,
        ncols * (width * scale + padding) + padding,
    )


def _compose_grid(
    images: np.ndarray, nrow: int, padding: int, scale: int, pad_value: float
) -> np.ndarray:
    """Tile ``[N, C, H, W]`` into one ``[H', W', C]`` array."""
    num, channels, height, width = images.shape
    if scale > 1:
        images = images.repeat(scale, axis=2).repeat(scale, axis=3)
    cell_h, cell_w = height * scale, width * scale
    out_h, out_w = grid_size(num, height, width, nrow, padding, scale)
    grid = np.full((out_h, out_w, channels), pad_value, dtype=np.float64)
    for i in range(num):
        row, col = divmod(i, nrow)
        top = padding + row * (cell_h + padding)
        left = padding + col * (cell_w + padding)
        grid[top : top + cell_h, left : left + cell_w] = images[i].transpose(1, 2, 0)
    return grid


def _label_band(labels: list[str], height: int, cell_h: int, padding: int) -> np.ndarray:
    """A white ``[height, W]`` band with ``labels[r]`` in black, vertically centred on row
    ``r`` of a grid of cells ``cell_h`` pixels high; ``W`` fits the longest label."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    margin = 3
    boxes = [font.getbbox(label) for label in labels]
    width = max(box[2] for box in boxes) + 2 * margin
    band = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(band)
    for r, (label, box) in enumerate(zip(labels, boxes, strict=True)):
        middle = padding + r * (cell_h + padding) + cell_h / 2
        draw.text((margin, middle - (box[1] + box[3]) / 2), label, fill=0, font=font)
    return np.asarray(band, dtype=np.float64) / 255.0


def _atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """``atomic_write`` for images: the suffix picks the format, so it must be there."""
    if not Path(path).suffix:
        raise ValueError(f"path needs an image suffix such as .png or .pdf, got {str(path)!r}")
    return atomic_write(path, write)


def _save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    try:
        return _atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def save_image_grid(
    images: ArrayLike,
    path: str | os.PathLike[str],
    nrow: int = 8,
    padding: int = 1,
    scale: int | None = None,
    pad_value: float = 0.5,
    row_labels: list[str] | None = None,
) -> Path:
    """Save ``images`` ``[N, C, H, W]`` in [0, 1] as one grid image, ``nrow`` images per row.

    Args:
        images: grey (C = 1) or RGB (C = 3) images.
        path: output file; the format follows the suffix (``.png`` recommended).
        nrow: images per row.
        padding: pixels of ``pad_value`` between and around the images.
        scale: integer nearest-neighbour up-scaling; ``None`` picks
            :func:`default_scale` (4 for 8×8 images, 1 for 28×28).
        pad_value: grey level of the padding, in [0, 1].
        row_labels: one text per grid row, written in black on a white band left of the
            grid (Pillow's default font), or ``None`` for no band.
    Returns:
        ``path``. The image is :func:`grid_size` pixels large, plus the band's width.
    """
    array = _check_images(images)
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if scale is None:
        scale = default_scale(array.shape[2], array.shape[3])
    if scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale}")
    if not 0.0 <= pad_value <= 1.0:
        raise ValueError(f"pad_value must lie in [0, 1], got {pad_value}")
    grid = _compose_grid(array, nrow, padding, scale, pad_value)
    if row_labels is not None:
        rows = math.ceil(array.shape[0] / nrow)
        if len(row_labels) != rows:
            raise ValueError(
                f"expected {rows} row labels (one per grid row), got {len(row_labels)}"
            )
        band = _label_band(row_labels, grid.shape[0], array.shape[2] * scale, padding)
        grid = np.concatenate([np.repeat(band[:, :, None], grid.shape[2], axis=2), grid], axis=1)
    if grid.shape[2] == 1:
        pixels, cmap = grid[:, :, 0], "gray"
    else:
        pixels, cmap = grid, None
    # imsave writes one file pixel per array entry (no axes, no interpolation).
    return _atomic_write(path, lambda tmp: plt.imsave(tmp, pixels, cmap=cmap, vmin=0.0, vmax=1.0))


def save_reconstructions(
    x: ArrayLike,
    x_hat: ArrayLike,
    path: str | os.PathLike[str],
    padding: int = 1,
    scale: int | None = None,
) -> Path:
    """Save data ``x`` (top row) over its reconstructions ``x_hat`` (bottom row).

    Args:
        x, x_hat: ``[N, C, H, W]`` in [0, 1], the same shape; one column per data point
            (pass ~8–16 points).
    Returns:
        ``path``.
    """
    originals = _check_images(x, "x")
    recons = _check_images(x_hat, "x_hat")
    if originals.shape != recons.shape:
        raise ValueError(
            f"x_hat must have the shape of x, expected {list(originals.shape)}, "
            f"got {list(recons.shape)}"
        )
    num, _, height, width = originals.shape
    if scale is None:
        scale = default_scale(height, width)
    if scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale}")
    grid = _compose_grid(np.concatenate([originals, recons]), num, padding, scale, 0.5)
    fig_h, fig_w = grid.shape[0] / 50, grid.shape[1] / 50  # ~50 grid pixels per inch
    fig, ax = plt.subplots(figsize=(max(fig_w, 3.0) + 1.2, max(fig_h, 1.2)))
    if grid.shape[2] == 1:
        ax.imshow(grid[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    row_centres = [padding + (r + 0.5) * (height * scale + padding) for r in range(2)]
    ax.set_yticks(row_centres, ["data", "reconstruction"])
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return _save_figure(fig, path)


def _check_labels(labels: ArrayLike | None, num: int) -> np.ndarray | None:
    if labels is None:
        return None
    if isinstance(labels, torch.Tensor):
        array = labels.detach().cpu().numpy()
    elif isinstance(labels, np.ndarray):
        array = labels
    else:
        raise ValueError(f"labels must be a tensor, array or None, got {type(labels).__name__}")
    if array.ndim != 1 or array.shape[0] != num:
        raise ValueError(f"labels must have shape [N] = [{num}], got {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"labels must be integers (-1 for unlabelled), got dtype {array.dtype}")
    return array.astype(np.int64)


def _latent_xy(z: ArrayLike, seed: int) -> tuple[np.ndarray, tuple[str, str]]:
    """``z [N, D]`` as plane coordinates (PCA when D > 2) and the two axis names."""
    points = _to_numpy(z, "z")
    if points.ndim != 2 or points.shape[0] < 1 or points.shape[1] < 2:
        raise ValueError(
            f"z must have shape [N, D] with N >= 1 and D >= 2, got {list(points.shape)}"
        )
    if not np.isfinite(points).all():
        raise ValueError("z must be finite, got NaN or infinite values")
    dim = points.shape[1]
    if dim == 2:
        return points, ("$z_1$", "$z_2$")
    if points.shape[0] < 2:
        raise ValueError(f"PCA of a {dim}-D latent needs N >= 2 points, got {points.shape[0]}")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed)
    xy = pca.fit_transform(points)
    ratio = pca.explained_variance_ratio_
    return xy, (
        f"PC 1 of {dim}-D latent ({100 * ratio[0]:.0f}% var.)",
        f"PC 2 of {dim}-D latent ({100 * ratio[1]:.0f}% var.)",
    )


def _scatter_by_label(
    ax,
    xy: np.ndarray,
    label_array: np.ndarray | None,
    names: list[str] | None = None,
    *,
    colours: Sequence | None = None,
) -> bool:
    """Draw ``xy`` on ``ax`` coloured by label (grey for −1); True when there is a legend.
    ``names[c]`` is the legend text of class ``c`` (default: the number); ``colours[c]`` its
    colour (default: tab10/tab20, evenly spaced hues past 20 classes)."""
    size = 12 if len(xy) <= 2000 else 4
    if label_array is None or (label_array < 0).all():
        ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.7, color="tab:blue", linewidths=0)
        return False
    unlabelled = label_array < 0
    if unlabelled.any():
        ax.scatter(
            xy[unlabelled, 0], xy[unlabelled, 1], s=size, alpha=0.4, color="0.6",
            linewidths=0, label="unlabelled",
        )  # fmt: skip
    classes = np.unique(label_array[~unlabelled])
    if colours is not None:
        colours = [colours[cls] for cls in classes]
    elif len(classes) <= 20:
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        colours = [cmap(i % cmap.N) for i in range(len(classes))]
    else:  # evenly spaced hues: tab20 would repeat colours
        colours = [plt.get_cmap("gist_ncar")(0.95 * i / len(classes)) for i in range(len(classes))]
    for colour, cls in zip(colours, classes, strict=True):
        mask = label_array == cls
        ax.scatter(
            xy[mask, 0], xy[mask, 1], s=size, alpha=0.8, color=colour, linewidths=0,
            label=names[cls] if names is not None else str(cls),
        )  # fmt: skip
    return True


def _legend_right(ax, num_entries: int, title: str = "label") -> None:
    ax.legend(
        title=title, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
        markerscale=1.5, ncols=1 if num_entries <= 21 else 2,
    )  # fmt: skip


def _check_names(names: Sequence[str] | None, label_array: np.ndarray | None) -> list[str] | None:
    """``names`` as a list of strings, one for every class code in ``label_array``."""
    if names is None or label_array is None:
        return None
    names = [str(name) for name in names]
    top = int(label_array.max(initial=-1))
    if top >= len(names):
        raise ValueError(
            f"names must name every class: labels go up to {top}, got {len(names)} names"
        )
    return names


def save_latent_scatter(
    z: ArrayLike,
    labels: ArrayLike | None,
    path: str | os.PathLike[str],
    title: str | None = None,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> Path:
    """Scatter plot of latent codes ``z`` ``[N, D]``, coloured by ``labels``.

    ``D = 2`` is drawn as is; ``D > 2`` is projected on its first two principal components
    (scikit-learn PCA; the axis labels say so and give the explained variance). ``labels`` is an
    integer ``[N]`` or ``None``; ``-1`` marks unlabelled points (drawn in grey). Each class gets
    its own colour and a legend entry: ``names[c]`` for class ``c`` where the labels were names
    (a table's text label column, image subfolders), else the number.

    Args:
        seed: PCA's random state (only used by its randomised solver on large inputs).
    Returns:
        ``path``.
    """
    xy, axis_names = _latent_xy(z, seed)
    label_array = _check_labels(labels, xy.shape[0])
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    if _scatter_by_label(ax, xy, label_array, _check_names(names, label_array)):
        _legend_right(ax, len(np.unique(label_array)))
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    if title:
        ax.set_title(title)
    return _save_figure(fig, path)


def save_latent_comparison(
    panels: list[tuple[str, ArrayLike]],
    labels: ArrayLike | None,
    path: str | os.PathLike[str],
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> Path:
    """Latent scatter plots side by side, one per ``(title, z [N, D])`` panel, all coloured by
    the same ``labels [N]`` (e.g. VAE and DD-VAE latents of one test set), one shared legend
    (``names[c]`` for class ``c`` where given, as in :func:`save_latent_scatter`).

    Returns:
        ``path``.
    """
    if not panels:
        raise ValueError("panels must hold at least one (title, z) pair")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.2, 4.6), squeeze=False)
    has_legend = False
    for ax, (title, z) in zip(axes[0], panels, strict=True):
        xy, axis_names = _latent_xy(z, seed)
        label_array = _check_labels(labels, xy.shape[0])
        has_legend = _scatter_by_label(ax, xy, label_array, _check_names(names, label_array))
        ax.set_xlabel(axis_names[0])
        ax.set_ylabel(axis_names[1])
        ax.set_title(title, fontsize=10)
    if has_legend:
        _legend_right(axes[0][-1], len(np.unique(label_array)))
    return _save_figure(fig, path)


# Hues (degrees) of the groups of a nested palette, in order: blue, orange, green, red, purple,
# teal, gold, pink; past eight groups, evenly spaced hues.
_GROUP_HUES = (210.0, 28.0, 125.0, 352.0, 280.0, 178.0, 48.0, 318.0)
# HLS lightness of a group's darkest and lightest member, and the saturation of every shade.
_SHADE_LIGHTNESS = (0.27, 0.72)
_SHADE_SATURATION = 0.8


def grouped_palette(
    members: Sequence[str], groups: Sequence[str]
) -> tuple[dict[str, tuple[float, float, float]], dict[str, tuple[float, float, float]]]:
    """Colours for classes nested in groups, such as populations in super-populations.

    ``members[i]`` belongs to ``groups[i]`` (e.g. the population and super-population of point
    i; each member must lie in one group). Every group gets a hue of its own (sorted group
    names take blue, orange, green, red, purple, teal, gold, pink; more groups, evenly spaced
    hues), its members shades of that hue (HLS lightness from 0.27 to 0.72, sorted by name,
    one fixed saturation) and the group itself the hue's middle shade, so a population and its
    super-population look alike in two panels and look-alike colours mean one continent.

    Returns:
        ``(member → RGB, group → RGB)``, components in [0, 1].
    """
    import colorsys

    if len(members) != len(groups):
        raise ValueError(f"{len(members)} members for {len(groups)} groups: expected one each")
    group_of: dict[str, str] = {}
    for member, group in zip(members, groups, strict=True):
        if group_of.setdefault(member, group) != group:
            raise ValueError(
                f"member {member!r} is in two groups, {group_of[member]!r} and {group!r}"
            )
    names = sorted(set(group_of.values()))
    if len(names) <= len(_GROUP_HUES):
        hues = _GROUP_HUES[: len(names)]
    else:
        hues = tuple(_GROUP_HUES[0] + 360.0 * k / len(names) for k in range(len(names)))
    dark, light = _SHADE_LIGHTNESS
    member_colours, group_colours = {}, {}
    for name, hue in zip(names, hues, strict=True):
        h = (hue % 360.0) / 360.0
        group_colours[name] = colorsys.hls_to_rgb(h, (dark + light) / 2, _SHADE_SATURATION)
        inside = sorted(m for m, g in group_of.items() if g == name)
        for k, member in enumerate(inside):
            t = 0.5 if len(inside) == 1 else k / (len(inside) - 1)
            member_colours[member] = colorsys.hls_to_rgb(
                h, dark + t * (light - dark), _SHADE_SATURATION
            )
    return member_colours, group_colours


def _nesting(panels: list[tuple[str, np.ndarray]]) -> tuple[int, int] | None:
    """``(i, j)``: the first pair of panels where every class of panel i lies in one class of
    panel j and j has at least two classes and fewer than i; else None."""
    for i, (_, fine) in enumerate(panels):
        for j, (_, coarse) in enumerate(panels):
            if i == j or not 2 <= len(np.unique(coarse)) < len(np.unique(fine)):
                continue
            pairs = set(zip(fine.tolist(), coarse.tolist(), strict=True))
            if len({member for member, _ in pairs}) == len(pairs):
                return i, j
    return None


def save_embedding_panels(
    xy: ArrayLike,
    panels: list[tuple[str, list[str]]],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """One scatter plot of the 2-D points ``xy [N, 2]`` per panel, side by side, each coloured
    by its own names: ``panels = [(legend title, [N] class names), ...]``, e.g. population and
    super-population of every sample.

    When the classes of one panel nest in those of another (every population in one
    super-population, at least two of them), both take :func:`grouped_palette`'s colours: the
    populations shades of one hue per super-population, listed in the legend by
    super-population, and each super-population its hue's middle shade. Otherwise each panel
    has its own qualitative colours. Returns ``path``."""
    points = _to_numpy(xy, "xy")
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 1:
        raise ValueError(f"xy must have shape [N, 2] with N >= 1, got {list(points.shape)}")
    if not panels:
        raise ValueError("panels must name at least one labelling")
    # Constrained layout keeps each legend (two columns past 21 names) clear of the next panel.
    fig, axes = plt.subplots(
        1, len(panels), figsize=(7.5 * len(panels), 5.2), squeeze=False, layout="constrained"
    )
    arrays = []
    for legend_title, labels in panels:
        if len(labels) != len(points):
            raise ValueError(f"{legend_title}: {len(labels)} names for {len(points)} points")
        arrays.append((legend_title, np.asarray(labels, dtype=str)))
    nesting = _nesting(arrays)
    palette: dict[int, dict[str, tuple[float, float, float]]] = {}
    group_of: dict[str, str] = {}
    if nesting is not None:
        fine, coarse = arrays[nesting[0]][1], arrays[nesting[1]][1]
        palette[nesting[0]], palette[nesting[1]] = grouped_palette(fine, coarse)
        group_of = dict(zip(fine.tolist(), coarse.tolist(), strict=True))
    for k, (ax, (legend_title, labels)) in enumerate(zip(axes[0], arrays, strict=True)):
        names = sorted(set(labels.tolist()))
        if nesting is not None and k == nesting[0]:  # the legend lists them by group
            names.sort(key=lambda name: (group_of[name], name))
        code_of = {name: code for code, name in enumerate(names)}
        codes = np.array([code_of[name] for name in labels.tolist()], dtype=np.int64)
        colours = [palette[k][name] for name in names] if k in palette else None
        _scatter_by_label(ax, points, codes, names, colours=colours)
        _legend_right(ax, len(names), legend_title)
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
        ax.set_title(f"coloured by {legend_title}")
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path)
