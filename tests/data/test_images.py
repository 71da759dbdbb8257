"""Tests of the image loaders, the in-memory data set, the batch loader and the registry.

Real data comes from ``$DIFFVI_DATA`` (set by tests/conftest.py to the shared data folder);
each split is loaded once per session. A test whose data is absent is skipped, never
downloaded.
"""

import functools
import gzip
import hashlib
import os
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from diffvi.data import (
    ImageDataset,
    available_datasets,
    batch_loader,
    dataset_splits,
    load_dataset,
    read_idx,
)
from diffvi.data import images as image_module
from diffvi.data.files import Source

# (name, split) -> (N, (C, H, W), labelled)
EXPECTED = {
    ("mnist", "train"): (60000, (1, 28, 28), True),
    ("mnist", "test"): (10000, (1, 28, 28), True),
    ("fashion-mnist", "train"): (60000, (1, 28, 28), True),
    ("fashion-mnist", "test"): (10000, (1, 28, 28), True),
    ("mnist-dynamic", "train"): (60000, (1, 28, 28), True),
    ("mnist-dynamic", "test"): (10000, (1, 28, 28), True),
    ("binarized-mnist", "train"): (50000, (1, 28, 28), False),
    ("binarized-mnist", "valid"): (10000, (1, 28, 28), False),
    ("binarized-mnist", "test"): (10000, (1, 28, 28), False),
    ("frey-faces", "train"): (1772, (1, 28, 20), False),
    ("frey-faces", "test"): (193, (1, 28, 20), False),
    ("frey-faces", "all"): (1965, (1, 28, 20), False),
    ("digits", "train"): (1437, (1, 8, 8), True),
    ("digits", "test"): (360, (1, 8, 8), True),
    ("digits", "all"): (1797, (1, 8, 8), True),
}

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
DIGITS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
BINARIZED_ONES = {"train": 5_118_041, "valid": 1_028_036, "test": 1_038_896}


@functools.cache
def _cached(name: str, split: str) -> ImageDataset:
    return load_dataset(name, split)


@pytest.fixture(autouse=True, scope="module")
def release_datasets():
    """Free the data sets (about 1 GB of float32) once this module is done."""
    yield
    _cached.cache_clear()
    image_module.clear_caches()


def data(name: str, split: str) -> ImageDataset:
    """The data set, loaded once per session; skips the test when its files are absent."""
    try:
        return _cached(name, split)
    except FileNotFoundError as err:
        pytest.skip(f"{name}/{split} data not available: {err}")


def shared_data_dir() -> Path:
    root = os.environ.get("DIFFVI_DATA", "").split(os.pathsep)[0]
    if not root or not (Path(root) / "mnist").is_dir():
        pytest.skip("shared data folder not available")
    return Path(root)


# --- registry --------------------------------------------------------------------------------


def test_registry_lists_every_documented_dataset_and_split() -> None:
    assert available_datasets() == sorted({name for name, _ in EXPECTED})
    for name in available_datasets():
        assert set(dataset_splits(name)) == {s for n, s in EXPECTED if n == name}


def test_unknown_name_raises_value_error_listing_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown data set 'cifar'") as info:
        load_dataset("cifar")
    assert all(name in str(info.value) for name in available_datasets())


def test_unknown_split_raises_value_error_listing_valid_splits() -> None:
    with pytest.raises(ValueError, match="'valid'") as info:
        load_dataset("digits", "valid")
    assert "['train', 'test', 'all']" in str(info.value)
    with pytest.raises(ValueError, match="unknown split"):
        image_module.load_mnist("validation")


def test_names_are_matched_case_insensitively_with_underscores_as_dashes() -> None:
    assert load_dataset("DIGITS", "test").name == "digits"
    assert dataset_splits("Binarized_MNIST") == ("train", "valid", "test")


# --- shapes, dtypes, ranges, labels of every data set ----------------------------------------


@pytest.mark.parametrize(("name", "split"), list(EXPECTED))
def test_every_split_has_documented_size_shape_dtype_and_unit_range(name: str, split: str) -> None:
    n, shape, labelled = EXPECTED[(name, split)]
    ds = data(name, split)
    assert len(ds) == n
    assert ds.images.shape == (n, *shape) and ds.image_shape == shape
    assert ds.images.dtype == torch.float32
    assert ds.images.min() >= 0 and ds.images.max() <= 1
    assert ds.name == name and ds.split == split
    if labelled:
        assert ds.labels is not None and ds.labels.dtype == torch.int64
        assert ds.labels.shape == (n,)
        assert ds.num_classes == 10
        assert ds.labels.min() >= 0 and ds.labels.max() <= 9
    else:
        assert ds.labels is None and ds.num_classes is None


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_grey_levels_are_bytes_over_255_with_published_label_counts(split: str) -> None:
    ds = data("mnist", split)
    counts = ds.labels.bincount(minlength=10).tolist()
    assert counts == (MNIST_TRAIN_COUNTS if split == "train" else MNIST_TEST_COUNTS)
    assert counts[1] == (6742 if split == "train" else 1135)
    levels = ds.images[:500] * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert ds.images.min() == 0 and ds.images.max() == 1


@pytest.mark.parametrize(("split", "per_class"), [("train", 6000), ("test", 1000)])
def test_fashion_mnist_has_equal_class_counts(split: str, per_class: int) -> None:
    ds = data("fashion-mnist", split)
    assert ds.labels.bincount(minlength=10).tolist() == [per_class] * 10
    assert ds.images.max() == 1


def test_fashion_mnist_differs_from_mnist() -> None:
    assert not torch.equal(data("fashion-mnist", "test").images, data("mnist", "test").images)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_binarized_mnist_values_are_exactly_zero_or_one_with_published_counts(split: str) -> None:
    ds = data("binarized-mnist", split)
    assert torch.all((ds.images == 0) | (ds.images == 1))
    assert int(ds.images.sum()) == BINARIZED_ONES[split]


def test_unlabelled_sets_return_minus_one_labels_of_batch_shape() -> None:
    ds = data("binarized-mnist", "valid")
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and y.shape == () and y.dtype == torch.int64 and y == -1
    x, y = ds[torch.tensor([0, 5, 7])]
    assert x.shape == (3, 1, 28, 28) and y.tolist() == [-1, -1, -1]


def test_frey_faces_split_is_a_seed_0_permutation_of_all_faces() -> None:
    everything = data("frey-faces", "all")
    perm = torch.randperm(1965, generator=torch.Generator().manual_seed(0))
    assert torch.equal(data("frey-faces", "train").images, everything.images[perm[:1772]])
    assert torch.equal(data("frey-faces", "test").images, everything.images[perm[1772:]])
    levels = everything.images * 255
    assert levels.min().round() == 8 and levels.max().round() == 238
    assert abs(levels.mean().item() - 154.46) < 0.01


def test_digits_labels_and_values_match_scikit_learn() -> None:
    everything = data("digits", "all")
    assert everything.labels.bincount().tolist() == DIGITS_COUNTS
    assert int(everything.labels.bincount().sum()) == 1797
    sixteenths = everything.images * 16
    assert torch.equal(sixteenths, sixteenths.round())
    assert everything.images.max() == 1


def test_digits_split_is_a_stratified_partition_of_all_images() -> None:
    train, test = data("digits", "train"), data("digits", "test")
    assert (train.labels.bincount() + test.labels.bincount()).tolist() == DIGITS_COUNTS
    expected_test = 0.2 * torch.tensor(DIGITS_COUNTS)
    assert torch.all((test.labels.bincount() - expected_test).abs() <= 1)

    def rows(ds: ImageDataset) -> Counter:
        return Counter(
            map(tuple, torch.cat([ds.images.flatten(1), ds.labels[:, None]], 1).tolist())
        )

    assert rows(train) + rows(test) == rows(data("digits", "all"))


# --- dynamic binarisation --------------------------------------------------------------------


def test_mnist_dynamic_train_draws_fresh_binary_images_on_every_access() -> None:
    ds = data("mnist-dynamic", "train")
    assert ds.binarize == "dynamic"
    index = torch.arange(64)
    x1, y1 = ds[index]
    x2, y2 = ds[index]
    assert set(x1.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(x1, x2)
    assert torch.equal(y1, y2)
    single_a, _ = ds[0]
    single_b, _ = ds[0]
    assert single_a.shape == (1, 28, 28) and not torch.equal(single_a, single_b)


def test_dynamic_binarisation_mean_over_many_draws_approaches_grey_level() -> None:
    ds = data("mnist-dynamic", "train")
    grey = data("mnist", "train").images[:4]
    draws = 4000
    torch.manual_seed(0)
    x, _ = ds[torch.arange(4).repeat(draws)]
    mean = x.view(draws, 4, 1, 28, 28).mean(0)
    error = (mean - grey).abs()
    # Standard error <= 0.5 / sqrt(4000) = 0.008 per pixel.
    assert error.max() < 0.045 and error.mean() < 0.005


def test_dynamic_draws_follow_the_given_generator() -> None:
    grey = data("mnist", "test").images[:16]
    a = ImageDataset(grey, binarize="dynamic", generator=torch.Generator().manual_seed(3))
    b = ImageDataset(grey, binarize="dynamic", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[torch.arange(16)][0], b[torch.arange(16)][0])


def test_mnist_dynamic_test_is_mnist_test_binarised_once_with_seed_0() -> None:
    ds = data("mnist-dynamic", "test")
    grey = data("mnist", "test")
    assert ds.binarize == "none"
    expected = torch.bernoulli(grey.images, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ds.images, expected)
    assert torch.equal(ds.labels, grey.labels)
    assert torch.equal(ds[torch.arange(10)][0], ds[torch.arange(10)][0])
    assert torch.equal(load_dataset("mnist-dynamic", "test").images, ds.images)


# --- indexing and validation -----------------------------------------------------------------


def test_batch_indexing_equals_stacking_single_items() -> None:
    ds = data("mnist", "test")
    index = torch.tensor([5, 0, 9999, 5, 123])
    x, y = ds[index]
    singles = [ds[int(i)] for i in index]
    assert torch.equal(x, torch.stack([s[0] for s in singles]))
    assert torch.equal(y, torch.stack([s[1] for s in singles]))
    for same in (index.tolist(), index.numpy(), index.int()):
        assert torch.equal(ds[same][0], x) and torch.equal(ds[same][1], y)
    assert torch.equal(ds[2:5][0], ds[torch.arange(2, 5)][0])
    assert ds[[]][0].shape == (0, 1, 28, 28) and ds[[]][1].shape == (0,)
    assert torch.equal(ds[-1][0], ds[9999][0]) and torch.equal(ds[np.int64(7)][1], ds[7][1])


@pytest.mark.parametrize("bad", [torch.zeros(2, 2, dtype=torch.long), torch.tensor([0.5, 1.0])])
def test_indexing_rejects_float_and_multidimensional_indices(bad: torch.Tensor) -> None:
    ds = data("digits", "test")
    with pytest.raises(TypeError, match="index must be"):
        ds[bad]


def test_image_dataset_validates_images_labels_and_binarize() -> None:
    ok = torch.rand(4, 1, 2, 2)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        ImageDataset(torch.rand(4, 2, 2))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        ImageDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ImageDataset(ok * 2)
    with pytest.raises(ValueError, match="expected 4, got 3"):
        ImageDataset(ok, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor"):
        ImageDataset(ok, torch.zeros(4))
    with pytest.raises(ValueError, match="binarize"):
        ImageDataset(ok, binarize="static")  # type: ignore[arg-type]
    ds = ImageDataset(ok, torch.tensor([0, 2, 1, 2], dtype=torch.int32))
    assert ds.labels.dtype == torch.int64 and ds.num_classes == 3
    assert "size=4" in repr(ds)


# --- batch loader ----------------------------------------------------------------------------


def test_batch_loader_yields_batches_in_one_indexing_call() -> None:
    ds = data("digits", "train")
    loader = batch_loader(ds, 20, shuffle=False)
    batches = list(loader)
    assert len(loader) == len(batches) == 72  # ceil(1437 / 20)
    assert all(x.shape == (20, 1, 8, 8) and y.shape == (20,) for x, y in batches[:-1])
    assert batches[-1][0].shape == (17, 1, 8, 8)
    assert torch.equal(torch.cat([x for x, _ in batches]), ds.images)
    assert len(list(batch_loader(ds, 20, shuffle=False, drop_last=True))) == 71


def test_batch_loader_with_seed_gives_a_reproducible_shuffle_that_changes_per_epoch() -> None:
    ds = data("digits", "test")
    a = batch_loader(ds, 20, shuffle=True, seed=1)
    b = batch_loader(ds, 20, shuffle=True, seed=1)
    epoch_a1 = torch.cat([y for _, y in a])
    epoch_a2 = torch.cat([y for _, y in a])
    epoch_b1 = torch.cat([y for _, y in b])
    assert torch.equal(epoch_a1, epoch_b1)
    assert not torch.equal(epoch_a1, epoch_a2)
    assert torch.equal(epoch_a1.sort().values, ds.labels.sort().values)
    assert not torch.equal(epoch_a1, ds.labels)


def test_batch_loader_rejects_non_positive_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        batch_loader(data("digits", "test"), 0, shuffle=False)


# --- file formats and corrupted files --------------------------------------------------------


def write_idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> Path:
    raw = struct.pack(f">I{len(dims)}I", magic, *dims) + payload
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def test_read_idx_reads_declared_shape_and_dtype(tmp_path: Path) -> None:
    payload = bytes(range(24))
    array = read_idx(write_idx(tmp_path / "ok-idx3-ubyte.gz", 2051, (2, 3, 4), payload), 2051)
    assert array.shape == (2, 3, 4) and array.dtype == np.uint8
    assert array.tobytes() == payload
    raw = read_idx(write_idx(tmp_path / "raw-idx1-ubyte", 2049, (5,), bytes(5)))
    assert raw.shape == (5,)


def test_read_idx_wrong_magic_raises_value_error_naming_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels-idx1-ubyte.gz", 2049, (3,), bytes(3))
    with pytest.raises(ValueError, match="labels-idx1-ubyte.gz") as info:
        read_idx(path, 2051)
    assert "expected 2051" in str(info.value) and "found 2049" in str(info.value)


def test_read_idx_payload_length_mismatch_raises_value_error(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "short-idx3-ubyte.gz", 2051, (2, 3, 4), bytes(23))
    with pytest.raises(ValueError, match=r"short-idx3-ubyte.gz.*expected 24 bytes, found 23"):
        read_idx(path, 2051)


def test_read_idx_non_idx_header_raises_value_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.gz"
    path.write_bytes(gzip.compress(b"\x12\x34\x08\x01junkjunk"))
    with pytest.raises(ValueError, match="junk.gz: not an IDX file"):
        read_idx(path)


def test_read_idx_truncated_gzip_raises_value_error_naming_file(tmp_path: Path) -> None:
    source = shared_data_dir() / "mnist" / "t10k-labels-idx1-ubyte.gz"
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(source.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz.*truncated or corrupt"):
        read_idx(path, 2049)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="not a valid gzip file"):
        read_idx(path, 2049)


def test_truncated_copy_in_diffvi_data_raises_value_error_naming_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = shared_data_dir()
    (tmp_path / "mnist").mkdir()
    images = "t10k-images-idx3-ubyte.gz"
    labels = "t10k-labels-idx1-ubyte.gz"
    (tmp_path / "mnist" / images).symlink_to(shared / "mnist" / images)
    (tmp_path / "mnist" / labels).write_bytes((shared / "mnist" / labels).read_bytes()[:-100])
    monkeypatch.setenv("DIFFVI_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=labels) as info:
        load_dataset("mnist", "test")
    assert "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6" in str(info.value)


def test_npz_with_wrong_checksum_raises_value_error_naming_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "frey_faces").mkdir()
    path = tmp_path / "frey_faces" / "frey_faces.npz"
    np.savez_compressed(path, images=np.zeros((1965, 28, 20), np.uint8))
    monkeypatch.setenv("DIFFVI_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=r"frey_faces.npz: expected 3c70375e"):
        load_dataset("frey-faces", "all")


def test_missing_files_raise_file_not_found_listing_searched_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path
) -> None:
    monkeypatch.setenv("DIFFVI_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion-mnist", "test")
    message = str(info.value)
    rel = "fashion_mnist/t10k-images-idx3-ubyte.gz"
    assert str(tmp_path / rel) in message and str(isolated_cache / rel) in message
    assert image_module.FASHION_MNIST_URL in message


# --- conversions from the original formats (fake downloads) ----------------------------------


def amat_bytes(bits: np.ndarray) -> bytes:
    """The Larochelle .amat text of a uint8 [n, 784] array of 0/1."""
    text = np.empty((bits.shape[0], 1568), np.uint8)
    text[:, 0::2] = bits + 48
    text[:, 1::2] = 32
    text[:, -1] = 10
    return text.tobytes()


def test_binarized_mnist_is_converted_from_amat_downloads_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path, serve
) -> None:
    monkeypatch.setenv("DIFFVI_DATA", str(tmp_path))
    rng = np.random.default_rng(0)
    bits = {
        s: (rng.random((n, 784)) < 0.2).astype(np.uint8)
        for s, n in [("train", 5), ("valid", 3), ("test", 2)]
    }
    served = {}
    for split, array in bits.items():
        body = amat_bytes(array)
        old = image_module.BINARIZED_MNIST_SOURCES[split]
        fake = Source(old.relative_path, old.url, hashlib.sha256(body).hexdigest())
        monkeypatch.setitem(image_module.BINARIZED_MNIST_SOURCES, split, fake)
        served[old.url] = body
    requested = serve(served)
    for split, array in bits.items():
        ds = load_dataset("binarized-mnist", split)
        assert torch.equal(ds.images, torch.from_numpy(array).float().view(-1, 1, 28, 28))
    assert len(requested) == 3
    folder = isolated_cache / "binarized_mnist"
    assert sorted(p.name for p in folder.iterdir()) == [
        "binarized_mnist.npz",
        "binarized_mnist.npz.sha256",
    ]


def test_frey_faces_are_converted_from_the_original_mat_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path, serve
) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    monkeypatch.setenv("DIFFVI_DATA", str(tmp_path))
    ff = np.random.default_rng(0).integers(0, 256, (560, 1965), dtype=np.uint8)
    scipy_io.savemat(tmp_path / "frey_rawface.mat", {"ff": ff})
    faces = np.ascontiguousarray(ff.T.reshape(-1, 28, 20))
    monkeypatch.setattr(
        image_module, "FREY_FACES_CONTENT_SHA256", hashlib.sha256(faces.tobytes()).hexdigest()
    )
    serve({image_module.FREY_FACES_SOURCE.url: (tmp_path / "frey_rawface.mat").read_bytes()})
    ds = load_dataset("frey-faces", "all")
    expected = torch.from_numpy(ff.T.reshape(-1, 1, 28, 20).astype(np.float32)) / 255
    assert torch.equal(ds.images, expected)
    assert (isolated_cache / "frey_faces" / "frey_faces.npz").is_file()


def test_a_frey_mat_file_with_other_faces_is_refused_and_nothing_is_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path, serve
) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    monkeypatch.setenv("DIFFVI_DATA", str(tmp_path))
    ff = np.random.default_rng(0).integers(0, 256, (560, 1965), dtype=np.uint8)
    scipy_io.savemat(tmp_path / "frey_rawface.mat", {"ff": ff})
    serve({image_module.FREY_FACES_SOURCE.url: (tmp_path / "frey_rawface.mat").read_bytes()})
    with pytest.raises(ValueError, match="does not hold the published Frey faces") as info:
        load_dataset("frey-faces", "all")
    assert image_module.FREY_FACES_CONTENT_SHA256 in str(info.value)
    assert not (isolated_cache / "frey_faces" / "frey_faces.npz").exists()


def test_every_download_is_https_and_checked_against_a_pinned_sha256() -> None:
    from diffvi.data.files import SHA256SUMS

    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")  # fmt: skip
    bases = {"mnist": image_module.MNIST_URL, "fashion_mnist": image_module.FASHION_MNIST_URL}
    files = [(f"{folder}/{n}", base + n) for n in names for folder, base in bases.items()]
    sources = [*image_module.BINARIZED_MNIST_SOURCES.values(), image_module.FREY_FACES_SOURCE]
    for url in [*(url for _, url in files), *(s.url for s in sources)]:
        assert url.startswith("https://"), url
    for relative_path, _ in files:
        assert len(SHA256SUMS[relative_path]) == 64
    for source in image_module.BINARIZED_MNIST_SOURCES.values():
        assert source.sha256 is not None and len(source.sha256) == 64
    # frey_rawface.mat has no published digest: its faces are pinned (checked below).
    assert image_module.FREY_FACES_SOURCE.sha256 is None
    assert len(image_module.FREY_FACES_CONTENT_SHA256) == 64


def test_the_pinned_frey_faces_are_those_of_the_published_npz() -> None:
    frey = load_dataset("frey-faces", "all")  # the published file, checked by its SHA-256
    faces = (frey.images[:, 0] * 255).round().to(torch.uint8).numpy()
    digest = hashlib.sha256(np.ascontiguousarray(faces).tobytes()).hexdigest()
    assert digest == image_module.FREY_FACES_CONTENT_SHA256
