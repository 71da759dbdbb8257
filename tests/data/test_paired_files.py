"""Your own pairs from files: simulated microscopy pairs written to disk (folders matched by
name, TIFF stacks, PNG, 16-bit and multi-channel files) read back as written; crops whose
condition is the crop of the whole image's; and every corrupt or mismatched file is an error
that names it."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffvi.data.microscopy import make_microscopy_dataset
from diffvi.data.paired import upsample, upsample_window
from diffvi.data.paired_files import (
    PairCrops,
    PairFilesDataModule,
    held_out_pairs,
    read_image_set,
    read_pairs,
)

tifffile = pytest.importorskip("tifffile")


@pytest.fixture(scope="module")
def simulated():
    """Six simulated (widefield 16x16, SIM 32x32) pairs."""
    return make_microscopy_dataset(6, "train", size=32).pairs


def _write_folders(root: Path, low: torch.Tensor, high: torch.Tensor) -> tuple[Path, Path]:
    """Pairs ``i`` as ``cell<i>``: float TIFFs, then 16-bit TIFFs, then 8-bit PNGs."""
    (root / "low").mkdir(parents=True)
    (root / "high").mkdir()
    for i, (lo, hi) in enumerate(zip(low[:, 0].numpy(), high[:, 0].numpy(), strict=True)):
        for folder, image in (("low", lo), ("high", hi)):
            path = root / folder / f"cell{i}"
            if i < 2:
                tifffile.imwrite(path.with_suffix(".tif"), image.astype(np.float32))
            elif i < 4:
                tifffile.imwrite(
                    path.with_suffix(".tiff"), np.round(image * 65535).astype(np.uint16)
                )
            else:
                Image.fromarray(np.round(image * 255).astype(np.uint8)).save(
                    path.with_suffix(".png")
                )
    return root / "low", root / "high"


def test_simulated_pairs_on_disk_read_back_as_written(simulated, tmp_path):
    low, high = _write_folders(tmp_path, simulated.input, simulated.target)
    pairs = read_pairs(low, high)
    assert pairs.names == [f"cell{i}" for i in range(6)]
    assert (pairs.factor, pairs.channels, len(pairs)) == (2, 1, 6)
    for i, tolerance in ((0, 0), (1, 0), (2, 0.5 / 65535), (3, 0.5 / 65535), (4, 0.5 / 255)):
        lo, hi = pairs[i]
        assert lo.shape == (1, 16, 16) and hi.shape == (1, 32, 32)
        torch.testing.assert_close(lo, simulated.input[i], rtol=0, atol=tolerance + 1e-7)
        torch.testing.assert_close(hi, simulated.target[i], rtol=0, atol=tolerance + 1e-7)


def test_tiff_stacks_pair_item_by_item_grey_and_multichannel(simulated, tmp_path):
    tifffile.imwrite(tmp_path / "wf.tif", simulated.input[:, 0].numpy())
    tifffile.imwrite(tmp_path / "sim.tif", simulated.target[:, 0].numpy())
    pairs = read_pairs(tmp_path / "wf.tif", tmp_path / "sim.tif")
    assert pairs.names[:2] == ["wf-0000", "wf-0001"] and len(pairs) == 6
    torch.testing.assert_close(pairs[5][1], simulated.target[5], rtol=0, atol=0)
    two = torch.cat([simulated.input, simulated.input.flip(-1)], 1)  # [N, 2, h, w]
    tifffile.imwrite(tmp_path / "wf2.tif", two.numpy())
    tifffile.imwrite(tmp_path / "sim2.tif", torch.cat([simulated.target] * 2, 1).numpy())
    pairs = read_pairs(tmp_path / "wf2.tif", tmp_path / "sim2.tif")
    assert pairs.channels == 2
    torch.testing.assert_close(pairs[3][0], two[3], rtol=0, atol=0)


def test_multichannel_files_of_any_size_and_scale_three(tmp_path):
    generator = torch.Generator().manual_seed(0)
    (tmp_path / "lo").mkdir()
    (tmp_path / "hi").mkdir()
    for name, (h, w) in {"a": (10, 14), "b": (12, 9)}.items():
        # Three pages (MINISBLACK), or an RGB image with separate planes: [3, H, W] both.
        for folder, scale, photometric in (("lo", 1, "minisblack"), ("hi", 3, "rgb")):
            tifffile.imwrite(
                tmp_path / folder / f"{name}.tif",
                torch.rand(3, scale * h, scale * w, generator=generator).numpy(),
                photometric=photometric,
                planarconfig="separate",
            )
    pairs = read_pairs(tmp_path / "lo", tmp_path / "hi")
    assert (pairs.factor, pairs.channels) == (3, 3)
    assert pairs.high_shape(1) == (36, 27)


@pytest.mark.parametrize(("factor", "mode"), [(2, "bicubic"), (3, "bicubic"), (2, "nearest")])
def test_the_condition_of_a_window_is_the_window_of_the_whole_condition(factor, mode):
    low = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(1))
    whole = upsample(low, factor, mode)
    for top, left, h, w in [(0, 0, 2, 4), (5, 3, 4, 6), (9, 11, 4, 6)]:
        box = [v * factor for v in (top, left, h, w)]
        window = upsample_window(low, factor, mode, *box)
        expected = whole[..., box[0] : box[0] + box[2], box[1] : box[1] + box[3]]
        torch.testing.assert_close(window, expected, rtol=0, atol=1e-5)


def test_crops_are_residual_pairs_drawn_from_seed_epoch_and_item(simulated, tmp_path):
    low, high = _write_folders(tmp_path, simulated.input, simulated.target)
    kept = PairFilesDataModule(low, high, batch_size=4, seed=3, patch=16, val_size=5)
    lazy = PairFilesDataModule(low, high, batch_size=4, seed=3, patch=16, in_memory_bytes=0)
    assert kept.pairs.in_memory and not lazy.pairs.in_memory
    data = kept.train_data
    assert (data.x_channels, data.image_size, len(data)) == (1, 16, 6 * 4)
    condition, target = data[torch.tensor([0, 7])]
    assert condition.shape == target.shape == (2, 1, 16, 16)
    for got, want in zip(data[[0, 7]], lazy.train_data[[0, 7]], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(data[7][0][0], condition[1], rtol=0, atol=0)  # by item alone
    data.set_epoch(1)
    assert not torch.equal(data[7][0][0], condition[1])  # another epoch, another crop
    data.set_epoch(0)
    # The crop of pair 1 (item 7 = 7 % 6): x + y0 = 2 high - 1 at the crop, x = 2 up - 1.
    pair_low, pair_high = kept.pairs[1]
    whole = 2 * upsample(pair_low[None], 2) - 1
    found = [
        (r, c)
        for r in range(0, 17, 2)
        for c in range(0, 17, 2)
        if torch.allclose(whole[0, :, r : r + 16, c : c + 16], condition[1], atol=1e-6)
    ]
    assert len(found) == 1
    r, c = found[0]
    torch.testing.assert_close(
        condition[1] + target[1], 2 * pair_high[:, r : r + 16, c : c + 16] - 1, rtol=0, atol=1e-6
    )
    assert kept.val_set.tensors[0].shape == (5, 1, 16, 16) and not kept.held_out


def test_whole_images_train_without_a_patch(simulated, tmp_path):
    low, high = _write_folders(tmp_path, simulated.input, simulated.target)
    module = PairFilesDataModule(low, high, batch_size=2, val_size=3)
    assert module.train_data.image_size == 32
    condition, target = module.train_data[torch.tensor([1])]
    lo, hi = module.pairs[1]
    torch.testing.assert_close(condition[0], 2 * upsample(lo[None], 2)[0] - 1)
    torch.testing.assert_close(condition[0] + target[0], 2 * hi - 1, rtol=0, atol=1e-6)


def test_a_tenth_is_held_out_from_ten_pairs_on():
    assert held_out_pairs(9, 0) == (list(range(9)), None)
    train, held = held_out_pairs(25, 0)
    assert len(held) == 3 and sorted(train + held) == list(range(25))
    assert held_out_pairs(25, 0) == (train, held) and held_out_pairs(25, 1)[1] != held


# -- errors that name the file -------------------------------------------------------------


def _pair_folders(tmp_path, low_sizes, high_sizes, suffix=".tif"):
    (tmp_path / "lo").mkdir(exist_ok=True)
    (tmp_path / "hi").mkdir(exist_ok=True)
    for folder, sizes in (("lo", low_sizes), ("hi", high_sizes)):
        for name, shape in sizes.items():
            tifffile.imwrite(
                tmp_path / folder / f"{name}{suffix}",
                np.full(shape, 0.5, np.float32),
                photometric="minisblack",
            )
    return tmp_path / "lo", tmp_path / "hi"


def test_a_file_without_a_partner_is_named(tmp_path):
    lo, hi = _pair_folders(tmp_path, {"a": (8, 8), "b": (8, 8)}, {"a": (16, 16), "c": (16, 16)})
    with pytest.raises(ValueError, match=r"lo/b\.tif has no partner of the same name in .*hi"):
        read_pairs(lo, hi)


def test_two_files_of_one_name_are_named(tmp_path):
    lo, hi = _pair_folders(tmp_path, {"a": (8, 8)}, {"a": (16, 16)})
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(lo / "a.png")
    with pytest.raises(ValueError, match=r"a\.png and .*a\.tif share the name 'a'"):
        read_pairs(lo, hi)


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        ({"a": (8, 8), "b": (8, 8)}, {"a": (16, 16), "b": (24, 24)},
         "b.tif.*scale 3, but the first pair has scale 2"),
        ({"a": (8, 8)}, {"a": (16, 17)}, "a.tif.*integer multiple of the low one"),
        ({"a": (8, 8)}, {"a": (16, 24)}, "a.tif.*the same along both axes"),
        ({"a": (2, 8, 8)}, {"a": (16, 16)}, "a.tif.*need the same channels"),
        ({"a": (8, 8), "b": (2, 8, 8)}, {"a": (16, 16), "b": (2, 16, 16)},
         "b.tif.*2 channel.*first pair has 1"),
    ],
)  # fmt: skip
def test_mismatched_pairs_are_named(tmp_path, low, high, message):
    with pytest.raises(ValueError, match=message):
        read_pairs(*_pair_folders(tmp_path, low, high))


def test_a_scale_other_than_the_task_option_factor_is_named(tmp_path):
    lo, hi = _pair_folders(tmp_path, {"a": (8, 8)}, {"a": (16, 16)})
    with pytest.raises(ValueError, match=r"a\.tif.*scale 2, but the task option factor has"):
        read_pairs(lo, hi, factor=4)


def test_corrupt_and_truncated_files_are_named(tmp_path):
    lo, hi = _pair_folders(tmp_path, {"a": (8, 8), "b": (8, 8)}, {"a": (16, 16), "b": (16, 16)})
    (hi / "b.tif").write_bytes(b"this is not a TIFF file at all")
    with pytest.raises(ValueError, match=r"cannot read .*hi/b\.tif as a TIFF image"):
        read_pairs(lo, hi)
    data = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    tifffile.imwrite(hi / "b.tif", np.kron(data, np.ones((2, 2), np.float32)))
    tifffile.imwrite(lo / "b.tif", data, compression="zlib")
    raw = (lo / "b.tif").read_bytes()
    (lo / "b.tif").write_bytes(raw[: len(raw) // 2])  # header intact, pixels cut off
    assert read_pairs(lo, hi).low_shapes[1] == (8, 8)
    with pytest.raises(ValueError, match=r"cannot read .*lo/b\.tif as a TIFF image: .*truncated"):
        PairFilesDataModule(lo, hi, batch_size=2, patch=16)
    (lo / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (lo / "a.tif").unlink()
    with pytest.raises(ValueError, match=r"cannot read .*lo/a\.png as an image"):
        read_pairs(lo, hi)


def test_stacks_of_different_lengths_and_a_folder_with_a_file_are_errors(tmp_path):
    tifffile.imwrite(tmp_path / "lo.tif", np.zeros((3, 8, 8), np.float32), photometric="minisblack")
    tifffile.imwrite(
        tmp_path / "hi.tif", np.zeros((4, 16, 16), np.float32), photometric="minisblack"
    )
    with pytest.raises(ValueError, match=r"lo\.tif holds 3 images and .*hi\.tif holds 4"):
        read_pairs(tmp_path / "lo.tif", tmp_path / "hi.tif")
    with pytest.raises(ValueError, match="two folders or two TIFF stacks"):
        read_pairs(tmp_path, tmp_path / "hi.tif")
    with pytest.raises(FileNotFoundError, match="missing"):
        read_pairs(tmp_path / "missing", tmp_path / "hi.tif")


def test_values_outside_the_unit_range_are_named_unless_normalised(tmp_path):
    lo, hi = _pair_folders(tmp_path, {"a": (8, 8)}, {"a": (16, 16)})
    tifffile.imwrite(hi / "a.tif", np.linspace(0, 300, 256, dtype=np.float32).reshape(16, 16))
    with pytest.raises(ValueError, match=r"hi/a\.tif has values in \[0, 300\].*normalize=minmax"):
        read_pairs(lo, hi).check()
    high = read_pairs(lo, hi, normalize="minmax")[0][1]
    assert float(high.min()) == 0 and float(high.max()) == 1


def test_patches_that_do_not_fit_are_named(tmp_path):
    lo, hi = _pair_folders(tmp_path, {"a": (8, 8), "b": (6, 10)}, {"a": (16, 16), "b": (12, 20)})
    with pytest.raises(ValueError, match="multiple of the scale factor 2"):
        PairFilesDataModule(lo, hi, batch_size=2, patch=15)
    with pytest.raises(ValueError, match=r"b\.tif.*12x20 pixels, smaller than --patch 16"):
        PairFilesDataModule(lo, hi, batch_size=2, patch=16)
    with pytest.raises(ValueError, match=r"b\.tif.*differs .* train on crops with --patch"):
        PairFilesDataModule(lo, hi, batch_size=1)


def test_images_to_restore_are_of_one_size_and_the_models_channels(tmp_path):
    lo, _ = _pair_folders(tmp_path, {"a": (8, 8), "b": (8, 12)}, {})
    with pytest.raises(ValueError, match=r"b\.tif is 8x12 pixels .* restore the others separately"):
        read_image_set(lo, 1)
    with pytest.raises(ValueError, match=r"a\.tif has 1 channel\(s\); this model takes 2"):
        read_image_set(lo / "a.tif", 2)
    images, names = read_image_set(lo / "b.tif", 1)
    assert images.shape == (1, 1, 8, 12) and names == ["b"]


def test_pair_crops_without_patch_use_whole_images(simulated, tmp_path):
    low, high = _write_folders(tmp_path, simulated.input, simulated.target)
    crops = PairCrops(read_pairs(low, high), [0, 1], None, 0, "bicubic")
    assert crops.image_size == 32 and len(crops) == 2


def test_rgb_pngs_and_interleaved_rgb_tiffs_are_three_channels(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "lo").mkdir()
    (tmp_path / "hi").mkdir()
    low, high = rng.integers(0, 256, (8, 8, 3), np.uint8), rng.random((16, 16, 3), np.float32)
    Image.fromarray(low).save(tmp_path / "lo" / "a.png")
    tifffile.imwrite(tmp_path / "hi" / "a.tif", high, photometric="rgb")  # [H, W, S]
    pairs = read_pairs(tmp_path / "lo", tmp_path / "hi")
    assert pairs.channels == 3
    lo, hi = pairs[0]
    torch.testing.assert_close(lo, torch.from_numpy(low).permute(2, 0, 1) / 255)
    torch.testing.assert_close(hi, torch.from_numpy(high).permute(2, 0, 1), rtol=0, atol=0)
