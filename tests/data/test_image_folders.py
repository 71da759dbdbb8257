"""The user's own images: folders of PNG/JPEG/TIFF files and array files read with the right
shapes and values, labels, a seeded held-out split, resizing and cropping, one-line errors that
name the file, and a set read from disk batch by batch giving the numbers of one held in
memory."""

import builtins
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffvi.data import image_folders
from diffvi.data.image_folders import (
    BinarizedImages,
    ImageFileDataset,
    open_image_data,
    open_image_splits,
    split_positions,
)
from diffvi.data.modules import ImageDataModule


def _grey(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _rgb(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """a.png grey, b.png colour, c.jpg-free: three PNGs of 6x5 pixels."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(_grey(0)).save(folder / "a.png")
    Image.fromarray(_rgb(1)).save(folder / "b.png")
    Image.fromarray(_grey(2)).save(folder / "c.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_a_folder_of_grey_and_colour_pngs_reads_as_colour_with_grey_repeated(mixed_folder):
    data = open_image_data(mixed_folder)
    assert data.image_shape == (3, 6, 5) and len(data) == 3
    x, y = data[torch.arange(3)]
    assert x.shape == (3, 3, 6, 5) and x.dtype == torch.float32
    grey = torch.from_numpy(_grey(0)).float() / 255
    torch.testing.assert_close(x[0], grey.expand(3, 6, 5), rtol=0, atol=0)
    colour = torch.from_numpy(_rgb(1)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(x[1], colour, rtol=0, atol=0)
    assert y.tolist() == [-1, -1, -1] and data.labels is None
    one, label = data[1]
    torch.testing.assert_close(one, colour, rtol=0, atol=0)
    assert label.shape == () and int(label) == -1


def test_a_folder_of_grey_files_reads_as_one_channel_and_16_bit_tiffs_are_scaled(tmp_path):
    folder = tmp_path / "grey"
    folder.mkdir()
    Image.fromarray(_grey(0)).save(folder / "a.png")
    wide = np.random.default_rng(3).integers(0, 65536, (6, 5)).astype(np.uint16)
    Image.fromarray(wide).save(folder / "b.tif")
    data = open_image_data(folder)
    assert data.image_shape == (1, 6, 5)
    x, _ = data[[0, 1]]
    torch.testing.assert_close(x[0, 0], torch.from_numpy(_grey(0)).float() / 255)
    torch.testing.assert_close(x[1, 0], torch.from_numpy(wide.astype(np.float32)) / 65535)


def test_npy_arrays_with_and_without_channels_read_with_the_right_shapes_and_values(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (7, 3, 4, 6), dtype=np.uint8)
    np.save(tmp_path / "colour.npy", colour)
    grey = rng.random((5, 4, 6)).astype(np.float32)
    np.save(tmp_path / "grey.npy", grey)
    data = open_image_data(tmp_path / "colour.npy")
    assert data.image_shape == (3, 4, 6) and len(data) == 7
    x, y = data[torch.tensor([6, 0, 6])]
    torch.testing.assert_close(x, torch.from_numpy(colour[[6, 0, 6]]).float() / 255)
    assert y.tolist() == [-1, -1, -1]
    data = open_image_data(tmp_path / "grey.npy")
    assert data.image_shape == (1, 4, 6)
    torch.testing.assert_close(data[2:4][0], torch.from_numpy(grey[2:4, None]))


def test_npz_and_hdf5_files_give_their_images_and_labels(tmp_path):
    h5py = pytest.importorskip("h5py")
    images = np.random.default_rng(0).integers(0, 256, (6, 2, 3, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "set.npz", x=images, y=labels)
    with h5py.File(tmp_path / "set.h5", "w") as file:
        file["images"] = images
        file["labels"] = labels
    for name in ("set.npz", "set.h5"):
        data = open_image_data(tmp_path / name)
        assert data.image_shape == (2, 3, 3) and data.num_classes == 3
        x, y = data[[5, 1]]
        torch.testing.assert_close(x, torch.from_numpy(images[[5, 1]]).float() / 255)
        assert y.tolist() == [2, 1]


def test_a_labels_csv_maps_file_names_to_integer_labels_or_to_sorted_class_names(mixed_folder):
    numbers = mixed_folder.parent / "numbers.csv"
    numbers.write_text("file,label\nc.png,4\na.png,0\nb.png,2\n")
    data = open_image_data(mixed_folder, labels=numbers)
    assert data.labels.tolist() == [0, 2, 4] and data.num_classes == 5 and data.classes is None
    names = mixed_folder.parent / "names.csv"
    names.write_text("label,file\ndog,a.png\ncat,b.png\ndog,c.png\n")
    data = open_image_data(mixed_folder, labels=names)
    assert data.classes == ["cat", "dog"] and data.labels.tolist() == [1, 0, 1]
    assert data[[2, 1]][1].tolist() == [1, 0]


def test_class_subfolders_label_their_files_and_a_npy_labels_items_in_order(tmp_path):
    root = tmp_path / "pets"
    for name, count in (("dog", 2), ("cat", 3)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(_grey(i)).save(root / name / f"{i}.png")
    data = open_image_data(root)
    assert data.classes == ["cat", "dog"] and data.labels.tolist() == [0, 0, 0, 1, 1]
    np.save(tmp_path / "labels.npy", np.array([4, 3, 2, 1, 0]))
    assert open_image_data(root, labels=tmp_path / "labels.npy").labels.tolist() == [4, 3, 2, 1, 0]
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\n" + "".join(f"{p},{i}\n" for i, p in enumerate(
        ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png"])))  # fmt: skip
    assert open_image_data(root, labels=csv).labels.tolist() == [0, 1, 2, 3, 4]


def test_the_held_out_split_is_seeded_disjoint_and_complete():
    train, held = split_positions(50, 0.2, seed=3)
    again = split_positions(50, 0.2, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(held, again[1])
    assert len(held) == 10 and len(train) == 40
    assert set(train.tolist()).isdisjoint(held.tolist())
    assert sorted([*train.tolist(), *held.tolist()]) == list(range(50))
    assert not torch.equal(held, split_positions(50, 0.2, seed=4)[1])
    with pytest.raises(ValueError, match="holds out 0"):
        split_positions(3, 0.1, seed=0)


def test_open_image_splits_holds_out_a_seeded_fraction_with_centre_crops(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 1, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "a.npy", images)
    train, held = open_image_splits(tmp_path / "a.npy", val_fraction=0.25, seed=1, crop="random")
    expected_train, expected_held = split_positions(20, 0.25, seed=1)
    assert torch.equal(train.items, expected_train) and torch.equal(held.items, expected_held)
    assert held.crop == "center" and train.crop == "random"
    torch.testing.assert_close(held[:][0], torch.from_numpy(images[expected_held]).float() / 255)
    _, first = open_image_splits(tmp_path / "a.npy", val_fraction=0.25, seed=1, val_size=2)
    assert torch.equal(first.items, expected_held[:2])


def test_size_scales_to_cover_and_crops_the_centre_or_a_seeded_random_window(tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir()
    ramp = np.tile(np.arange(0, 240, 6, dtype=np.uint8), (20, 1))  # 20x40, brighter rightwards
    Image.fromarray(ramp).save(folder / "a.png")
    Image.fromarray(_grey(1, 30, 30)).save(folder / "b.png")
    centre = open_image_data(folder, size=10)
    assert centre.image_shape == (1, 10, 10)
    x, _ = centre[[0, 1]]
    assert x.shape == (2, 1, 10, 10) and x.min() >= 0 and x.max() <= 1
    assert open_image_data(folder, size=[8, 12]).image_shape == (1, 8, 12)
    random = open_image_data(folder, size=10, crop="random", seed=0)
    epoch0 = random[[0]][0]
    assert torch.equal(random[[0]][0], epoch0)  # the same (seed, epoch, item): the same window
    windows = set()
    for epoch in range(8):
        random.set_epoch(epoch)
        windows.add(round(float(random[[0]][0].mean()), 4))
    assert len(windows) > 1  # another window in other epochs
    random.set_epoch(0)
    assert torch.equal(random[[0]][0], epoch0)


@pytest.mark.parametrize("crop", ["center", "random"])
def test_a_set_read_from_disk_gives_the_batches_of_one_held_in_memory(tmp_path, crop):
    folder = tmp_path / "set"
    folder.mkdir()
    for i in range(12):
        size = (9, 12) if i % 2 else (12, 9)
        Image.fromarray(_rgb(i, *size) if i % 3 else _grey(i, *size)).save(folder / f"{i:02d}.png")
    memory, _ = open_image_splits(folder, size=8, crop=crop, val_fraction=0.25, seed=2)
    disk, _ = open_image_splits(
        folder, size=8, crop=crop, val_fraction=0.25, seed=2, memory_budget=memory.nbytes - 1
    )
    assert memory.in_memory and not disk.in_memory
    for epoch in (0, 1):
        memory.set_epoch(epoch)
        disk.set_epoch(epoch)
        for batch in (torch.tensor([3, 0, 5]), torch.arange(len(disk))):
            x_memory, y_memory = memory[batch]
            x_disk, y_disk = disk[batch]
            torch.testing.assert_close(x_disk, x_memory, rtol=0, atol=0)
            assert torch.equal(y_disk, y_memory)


def test_the_training_loader_tells_the_data_set_each_epoch(tmp_path, monkeypatch):
    np.save(tmp_path / "a.npy", np.zeros((20, 1, 4, 4), dtype=np.uint8))
    module = ImageDataModule(open_image_splits(tmp_path / "a.npy", seed=0), batch_size=4)
    seen = []
    monkeypatch.setattr(ImageFileDataset, "set_epoch", lambda self, epoch: seen.append(epoch))
    loader = module.train_dataloader()
    loader.sampler.set_epoch(3)
    x, y = next(iter(loader))
    assert seen == [3] and x.shape == (4, 1, 4, 4) and y.shape == (4,)
    assert module.event_shape == (1, 4, 4)
    val = list(module.val_dataloader())
    assert sum(len(b[0]) for b in val) == 2


# -- errors that name the file -----------------------------------------------------------------


def _message(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_a_corrupt_png_is_an_error_naming_it(mixed_folder):
    (mixed_folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(ValueError) as excinfo:
        open_image_data(mixed_folder)
    assert str(mixed_folder / "b.png") in _message(excinfo)


def test_a_truncated_png_read_from_disk_is_an_error_naming_it(mixed_folder):
    good = (mixed_folder / "c.png").read_bytes()
    (mixed_folder / "c.png").write_bytes(good[: len(good) // 2])
    data = open_image_data(mixed_folder)  # the header reads
    with pytest.raises(ValueError) as excinfo:
        data[[0, 2]]
    assert str(mixed_folder / "c.png") in _message(excinfo)


def test_images_of_another_size_without_size_are_an_error_naming_both_files(mixed_folder):
    Image.fromarray(_grey(5, 7, 5)).save(mixed_folder / "d.png")
    with pytest.raises(ValueError, match="--size") as excinfo:
        open_image_data(mixed_folder)
    message = _message(excinfo)
    assert str(mixed_folder / "d.png") in message and "7x5" in message
    assert str(mixed_folder / "a.png") in message and "6x5" in message
    assert open_image_data(mixed_folder, size=[6, 5]).image_shape == (3, 6, 5)


def test_labels_naming_an_unknown_file_or_missing_one_are_errors_naming_it(mixed_folder):
    csv = mixed_folder.parent / "labels.csv"
    csv.write_text("file,label\na.png,0\nb.png,1\nz.png,1\n")
    with pytest.raises(ValueError) as excinfo:
        open_image_data(mixed_folder, labels=csv)
    message = _message(excinfo)
    assert str(csv) in message and "line 4" in message and "z.png" in message
    csv.write_text("file,label\na.png,0\nb.png,1\n")
    with pytest.raises(ValueError) as excinfo:
        open_image_data(mixed_folder, labels=csv)
    assert str(mixed_folder / "c.png") in _message(excinfo)
    csv.write_text("name,class\na.png,0\n")
    with pytest.raises(ValueError, match="header row naming columns file and label"):
        open_image_data(mixed_folder, labels=csv)
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        open_image_data(mixed_folder, labels=mixed_folder / "nothere.csv")


def test_bad_arrays_are_errors_naming_the_file(tmp_path):
    cases = {
        "last.npy": np.zeros((4, 8, 8, 3), dtype=np.uint8),  # channels-last
        "ints.npy": np.zeros((4, 1, 8, 8), dtype=np.int64),
        "flat.npy": np.zeros((4, 64), dtype=np.uint8),
    }
    for name, array in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(ValueError) as excinfo:
            open_image_data(tmp_path / name)
        assert str(tmp_path / name) in _message(excinfo)
    np.save(tmp_path / "big.npy", np.full((4, 1, 2, 2), 2.0, dtype=np.float32))
    with pytest.raises(ValueError, match=r"big\.npy item 1 .*outside \[0, 1\]"):
        open_image_data(tmp_path / "big.npy")[[1]]
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError) as excinfo:
        open_image_data(tmp_path / "broken.npy")
    assert str(tmp_path / "broken.npy") in _message(excinfo)
    np.save(tmp_path / "ok.npy", np.zeros((4, 1, 2, 2), dtype=np.uint8))
    np.save(tmp_path / "short.npy", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"short\.npy.*\[4\]"):
        open_image_data(tmp_path / "ok.npy", labels=tmp_path / "short.npy")
    with pytest.raises(FileNotFoundError, match="nothing"):
        open_image_data(tmp_path / "nothing")
    (tmp_path / "data.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="neither a folder of images nor an array file"):
        open_image_data(tmp_path / "data.txt")


def test_hdf5_without_h5py_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "set.h5").write_bytes(b"")
    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(ValueError, match=r"set\.h5 needs h5py: pip install h5py"):
        open_image_data(tmp_path / "set.h5")


def test_the_memory_budget_decides_what_is_held_in_memory(tmp_path, monkeypatch):
    np.save(tmp_path / "a.npy", np.zeros((10, 1, 4, 4), dtype=np.uint8))
    train, held = open_image_splits(tmp_path / "a.npy", seed=0)
    assert train.in_memory and held.in_memory
    monkeypatch.setattr(image_folders, "IN_MEMORY_BYTES", 0)
    train, held = open_image_splits(tmp_path / "a.npy", seed=0)
    assert not train.in_memory and not held.in_memory


def _grey_levels(tmp_path: Path, values: np.ndarray) -> ImageFileDataset:
    np.save(tmp_path / "grey.npy", values.astype(np.float32))
    return open_image_data(tmp_path / "grey.npy")


def test_binarized_training_images_are_fresh_bernoulli_draws_each_epoch(tmp_path):
    """Pixels at grey level p are 1 with probability p; an epoch's draw of an item depends on
    (seed, epoch, item) only, not on the batch it comes in; binary pixels stay as they are."""
    levels = np.zeros((6, 1, 40, 40))
    levels[:, :, :20] = 0.3
    levels[:, :, 20:30] = 1.0
    binary = BinarizedImages(_grey_levels(tmp_path, levels), dynamic=True, seed=3)
    x, y = binary[torch.arange(6)]
    assert x.shape == (6, 1, 40, 40) and x.dtype == torch.float32 and (y == -1).all()
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert (x[:, :, 20:30] == 1).all() and (x[:, :, 30:] == 0).all()
    assert float(x[:, :, :20].mean()) == pytest.approx(0.3, abs=0.02)  # 4800 draws: sd 0.007
    assert torch.equal(binary[[4, 1]][0], x[[4, 1]])  # the item's draw, whatever the batch
    assert torch.equal(binary[2][0], x[2])
    again = BinarizedImages(_grey_levels(tmp_path, levels), dynamic=True, seed=3)
    assert torch.equal(again[torch.arange(6)][0], x)  # seeded
    binary.set_epoch(1)
    assert not torch.equal(binary[torch.arange(6)][0], x)  # a new draw every epoch


def test_held_out_images_are_binarised_once_whatever_the_epoch_or_seed(tmp_path):
    levels = np.full((5, 1, 8, 8), 0.5)
    views = [BinarizedImages(_grey_levels(tmp_path, levels), dynamic=False) for _ in range(2)]
    first = views[0][torch.arange(5)][0]
    views[0].set_epoch(4)
    assert torch.equal(views[0][torch.arange(5)][0], first)
    assert torch.equal(views[1][torch.arange(5)][0], first)
    assert 0.3 < float(first.mean()) < 0.7  # a draw, not the grey levels
    _, held_out = open_image_splits(tmp_path / "grey.npy", val_fraction=0.4, seed=1)
    view = BinarizedImages(held_out, dynamic=False)
    # item i of the source gets the same bits in a held-out view as in the whole set
    assert torch.equal(view[torch.arange(2)][0], first[held_out.items])
