"""Tests of data-file lookup, verification and download (no network: urlopen is faked)."""

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffvi.data import files
from diffvi.data.files import (
    Source,
    cache_dir,
    fetch,
    fetch_derived,
    find_file,
    read_image_files,
    read_measurement_files,
    resize_cover,
    search_dirs,
)
from diffvi.utils.io import write_float_tiff

REL = "toy/file.bin"
URL = "https://example.invalid/toy/file.bin"
DATA = b"diffvi test payload " * 1000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("DIFFVI_DATA", str(root))
    return root


def test_cache_dir_follows_xdg_cache_home(isolated_cache: Path) -> None:
    assert cache_dir() == isolated_cache


def test_cache_dir_defaults_to_home_dot_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "diffvi"


def test_search_order_is_diffvi_data_entries_then_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path
) -> None:
    monkeypatch.setenv("DIFFVI_DATA", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert search_dirs() == [tmp_path / "a", tmp_path / "b", isolated_cache]


def test_fetch_prefers_diffvi_data_over_cache(data_dir: Path, isolated_cache: Path) -> None:
    put(isolated_cache, REL, b"cache copy")
    path = put(data_dir, REL, DATA)
    assert fetch(REL, URL, sha(DATA)) == path


def test_fetch_falls_back_to_user_cache(data_dir: Path, isolated_cache: Path) -> None:
    path = put(isolated_cache, REL, DATA)
    assert fetch(REL, URL, sha(DATA)) == path


def test_fetch_without_checksum_accepts_any_content(data_dir: Path) -> None:
    path = put(data_dir, REL, b"anything")
    assert fetch(REL, URL, None) == path


def test_local_checksum_mismatch_raises_value_error_naming_file_and_both_digests(
    data_dir: Path,
) -> None:
    put(data_dir, REL, DATA + b"x")
    with pytest.raises(ValueError, match="SHA-256 mismatch") as info:
        fetch(REL, URL, sha(DATA))
    message = str(info.value)
    assert "file.bin" in message and sha(DATA) in message and sha(DATA + b"x") in message


def test_local_verification_is_hashed_once_per_path_size_and_mtime(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = put(data_dir, REL, DATA)
    expected = sha(DATA)
    calls = []
    real_sha256 = hashlib.sha256

    def counting_sha256(*args: bytes) -> "hashlib._Hash":
        calls.append(1)
        return real_sha256(*args)

    monkeypatch.setattr(files.hashlib, "sha256", counting_sha256)
    for _ in range(3):
        fetch(REL, URL, expected)
    assert len(calls) == 1
    # A changed file (new size and mtime) is hashed again, and caught.
    path.write_bytes(DATA[:-1])
    with pytest.raises(ValueError, match="file.bin"):
        fetch(REL, URL, expected)
    assert len(calls) == 2


def test_missing_file_offline_raises_file_not_found_listing_every_place_and_url(
    data_dir: Path, isolated_cache: Path
) -> None:
    with pytest.raises(FileNotFoundError) as info:
        fetch(REL, URL, sha(DATA))
    message = str(info.value)
    assert str(data_dir / REL) in message
    assert str(isolated_cache / REL) in message
    assert URL in message
    assert "DIFFVI_OFFLINE" in message


def test_missing_file_says_when_diffvi_data_is_unset(
    monkeypatch: pytest.MonkeyPatch, isolated_cache: Path
) -> None:
    monkeypatch.delenv("DIFFVI_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="DIFFVI_DATA is not set"):
        fetch(REL, URL, None)


def test_network_error_raises_file_not_found_with_url_and_leaves_nothing(
    data_dir: Path, isolated_cache: Path, serve
) -> None:
    serve({})  # every URL answers 404
    with pytest.raises(FileNotFoundError, match="download failed") as info:
        fetch(REL, URL, sha(DATA))
    assert URL in str(info.value) and str(data_dir / REL) in str(info.value)
    leftovers = list(isolated_cache.rglob("*")) if isolated_cache.exists() else []
    assert [p for p in leftovers if p.is_file()] == []


def test_download_goes_to_user_cache_through_a_temporary_file_in_the_same_folder(
    data_dir: Path, isolated_cache: Path, serve
) -> None:
    dest = isolated_cache / REL
    seen: list[list[str]] = []

    def check_not_yet_in_place() -> None:
        assert not dest.exists(), "the final file must appear only after verification"
        seen.append(sorted(p.name for p in dest.parent.iterdir()))

    requested = serve({URL: DATA}, on_read=check_not_yet_in_place)
    path = fetch(REL, URL, sha(DATA))
    assert path == dest
    assert path.read_bytes() == DATA
    assert requested == [URL]
    # While downloading, exactly one hidden temporary file sat next to the destination.
    assert seen and all(len(names) == 1 and names[0].startswith(".file.bin.") for names in seen)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]
    # Found in the cache the next time: no second request.
    assert fetch(REL, URL, sha(DATA)) == dest
    assert requested == [URL]


def test_download_with_wrong_checksum_raises_and_leaves_no_file(
    data_dir: Path, isolated_cache: Path, serve
) -> None:
    serve({URL: DATA})
    with pytest.raises(ValueError, match="SHA-256 mismatch") as info:
        fetch(REL, URL, sha(b"something else"))
    assert "file.bin" in str(info.value) and sha(DATA) in str(info.value)
    assert list((isolated_cache / "toy").iterdir()) == []


def test_interrupted_download_leaves_no_file(data_dir: Path, isolated_cache: Path, serve) -> None:
    def drop_connection() -> None:
        raise ConnectionResetError("connection reset by peer")

    serve({URL: DATA}, on_read=drop_connection)
    with pytest.raises(FileNotFoundError, match="connection reset"):
        fetch(REL, URL, sha(DATA))
    assert list((isolated_cache / "toy").iterdir()) == []


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_offline_accepts_usual_true_values(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DIFFVI_OFFLINE", value)
    assert files.is_offline()


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_offline_false_values_allow_downloads(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DIFFVI_OFFLINE", value)
    assert not files.is_offline()


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../escape.bin", "mnist/../../x"])
def test_relative_path_must_stay_inside_the_data_folder(bad: str) -> None:
    with pytest.raises(ValueError, match="relative path"):
        find_file(bad)


def test_published_checksums_cover_every_shared_data_file() -> None:
    shared = os.environ.get("DIFFVI_DATA", "")
    sums = Path(shared.split(os.pathsep)[0]) / "SHA256SUMS" if shared else None
    if sums is None or not sums.is_file():
        pytest.skip("shared data folder with SHA256SUMS not available")
    listed = {}
    for line in sums.read_text().splitlines():
        digest, name = line.split()
        listed[name.removeprefix("./")] = digest
    assert listed == files.SHA256SUMS


# --- derived files ---------------------------------------------------------------------------

SOURCES = [
    Source("toy/a.txt", "https://example.invalid/a.txt", sha(b"alpha")),
    Source("toy/b.txt", "https://example.invalid/b.txt", sha(b"beta")),
]


def concatenate(paths: list[Path], out: Path) -> None:
    out.write_bytes(b"+".join(p.read_bytes() for p in paths))


def test_derived_file_is_built_in_cache_from_downloaded_sources(
    data_dir: Path, isolated_cache: Path, serve
) -> None:
    requested = serve({s.url: d for s, d in zip(SOURCES, [b"alpha", b"beta"], strict=True)})
    path = fetch_derived("toy/derived.bin", sha(b"published version"), SOURCES, concatenate)
    assert path == isolated_cache / "toy" / "derived.bin"
    assert path.read_bytes() == b"alpha+beta"
    assert sorted(requested) == sorted(s.url for s in SOURCES)
    # Sources were downloaded to a temporary folder that is gone; the digest is recorded.
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["derived.bin", "derived.bin.sha256"]
    assert (path.parent / "derived.bin.sha256").read_text().split()[0] == sha(b"alpha+beta")
    # The next lookup accepts the recorded digest and downloads nothing.
    files._DIGESTS.clear()
    assert fetch_derived("toy/derived.bin", sha(b"published version"), SOURCES, concatenate) == path
    assert len(requested) == 2


def test_derived_file_uses_local_sources_when_present(data_dir: Path, serve) -> None:
    put(data_dir, "toy/a.txt", b"alpha")
    put(data_dir, "toy/b.txt", b"beta")
    requested = serve({})
    path = fetch_derived("toy/derived.bin", None, SOURCES, concatenate)
    assert path.read_bytes() == b"alpha+beta" and requested == []


def test_corrupted_derived_file_raises_even_with_a_recorded_digest(
    data_dir: Path, isolated_cache: Path, serve
) -> None:
    serve({s.url: d for s, d in zip(SOURCES, [b"alpha", b"beta"], strict=True)})
    path = fetch_derived("toy/derived.bin", sha(b"published"), SOURCES, concatenate)
    path.write_bytes(b"alpha+bet")
    with pytest.raises(ValueError, match="derived.bin"):
        fetch_derived("toy/derived.bin", sha(b"published"), SOURCES, concatenate)


def test_derived_file_offline_lists_places_and_source_urls(
    data_dir: Path, isolated_cache: Path
) -> None:
    with pytest.raises(FileNotFoundError) as info:
        fetch_derived("toy/derived.bin", None, SOURCES, concatenate)
    message = str(info.value)
    assert str(data_dir / "toy/derived.bin") in message
    assert str(isolated_cache / "toy/derived.bin") in message
    assert all(s.url in message for s in SOURCES)


def test_failed_build_leaves_no_file(data_dir: Path, isolated_cache: Path, serve) -> None:
    serve({s.url: d for s, d in zip(SOURCES, [b"alpha", b"beta"], strict=True)})

    def broken(paths: list[Path], out: Path) -> None:
        out.write_bytes(b"partial")
        raise ValueError("bad source")

    with pytest.raises(ValueError, match="bad source"):
        fetch_derived("toy/derived.bin", None, SOURCES, broken)
    assert list((isolated_cache / "toy").iterdir()) == []


def test_measurement_files_keep_float_tiffs_exact_and_scale_integer_images(tmp_path):
    intensities = torch.rand(2, 6, 5) * 3  # two defocused frames, values beyond 1 kept
    write_float_tiff(tmp_path / "a.tif", intensities)
    write_float_tiff(tmp_path / "b.tif", intensities + 1)
    got, names = read_measurement_files(tmp_path, 2, 6, 5)
    assert names == ["a", "b"] and got.shape == (2, 2, 6, 5)
    assert torch.equal(got[0], intensities) and torch.equal(got[1], intensities + 1)

    grey = tmp_path / "grey"
    grey.mkdir()
    Image.fromarray(np.full((6, 5), 51, np.uint8)).save(grey / "eight.png")
    Image.fromarray(np.full((6, 5), 13107, np.uint16)).save(grey / "sixteen.png")
    got, _ = read_measurement_files(grey, 1, 6, 5)
    torch.testing.assert_close(got, torch.full((2, 1, 6, 5), 0.2))

    with pytest.raises(ValueError, match="has 2 frame"):
        read_measurement_files(tmp_path / "a.tif", 1, 6, 5)
    with pytest.raises(ValueError, match="expects 5x5"):
        read_measurement_files(tmp_path / "a.tif", 2, 5, 5)
    with pytest.raises(FileNotFoundError):
        read_measurement_files(tmp_path / "missing.tif", 1, 6, 5)


def test_a_digest_record_outside_the_cache_cannot_override_the_published_digest(
    data_dir: Path, isolated_cache: Path
) -> None:
    # Anyone who can write a shared DIFFVI_DATA could otherwise swap a data file.
    swapped = put(data_dir, REL, b"swapped payload")
    swapped.with_name(swapped.name + ".sha256").write_text(f"{sha(b'swapped payload')}  x\n")
    files._DIGESTS.clear()
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        find_file(REL, sha(DATA))
    # In the user cache, where diffvi converts files itself, the record is honoured.
    converted = put(isolated_cache, "toy/converted.bin", b"converted here")
    converted.with_name("converted.bin.sha256").write_text(f"{sha(b'converted here')}  x\n")
    assert find_file("toy/converted.bin", sha(b"published version")) == converted


def _colour_files(folder: Path) -> dict[str, np.ndarray]:
    """Small PNGs of every kind: grey, grey stored as RGB, grey RGBA fully opaque, colour RGB,
    RGBA with a transparent pixel, and a grey palette image with a transparent index."""
    folder.mkdir(exist_ok=True)
    grey = np.arange(30, dtype=np.uint8).reshape(6, 5) * 8
    colour = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    opaque = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    holed = opaque.copy()
    holed[2, 3, 3] = 0
    Image.fromarray(grey, "L").save(folder / "grey.png")
    Image.fromarray(np.dstack([grey] * 3), "RGB").save(folder / "grey_rgb.png")
    Image.fromarray(opaque, "RGBA").save(folder / "grey_rgba.png")
    Image.fromarray(colour, "RGB").save(folder / "colour.png")
    Image.fromarray(holed, "RGBA").save(folder / "holed.png")
    palette = Image.fromarray(grey, "L").convert("P")
    palette.save(folder / "palette_holed.png", transparency=int(np.asarray(palette)[0, 0]))
    return {"grey": grey, "colour": colour}


def test_grey_images_stored_as_rgb_or_opaque_rgba_read_as_the_same_grey_levels(tmp_path):
    pixels = _colour_files(tmp_path / "all")
    want = torch.from_numpy(pixels["grey"].astype(np.float32) / 255).expand(3, 1, 6, 5)
    for name in ("grey", "grey_rgb", "grey_rgba"):
        got, names = read_image_files(tmp_path / "all" / f"{name}.png", (1, 6, 5))
        assert names == [name]
        assert torch.equal(got, want[:1])
    rgb, _ = read_image_files(tmp_path / "all" / "colour.png", (3, 6, 5))  # colour for colour
    assert torch.equal(rgb[0], torch.from_numpy(pixels["colour"]).permute(2, 0, 1) / 255)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("colour.png", r"colour\.png is a colour image \(mode RGB\), but the prior takes grey "
                       r"images \(1 channel\); convert it to grey first.*convert\('L'\)"),
        ("holed.png", r"holed\.png has 1 transparent pixel.*flatten it onto a background"),
        ("palette_holed.png", r"palette_holed\.png has \d+ transparent pixel"),
    ],
)  # fmt: skip
def test_colour_for_a_grey_prior_or_transparency_is_refused_naming_the_file(
    tmp_path, name, expected
):
    _colour_files(tmp_path / "all")
    with pytest.raises(ValueError, match=expected):
        read_image_files(tmp_path / "all" / name, (1, 6, 5))
    if name != "colour.png":
        with pytest.raises(ValueError, match="transparent"):
            read_image_files(tmp_path / "all" / name, (3, 6, 5))


def test_a_folder_with_one_colour_image_is_refused_naming_that_file(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    grey = np.zeros((6, 5), np.uint8)
    Image.fromarray(grey, "L").save(folder / "a.png")
    Image.fromarray(np.dstack([grey, grey + 9, grey]), "RGB").save(folder / "b.png")
    with pytest.raises(ValueError, match=r"b\.png is a colour image"):
        read_image_files(folder, (1, 6, 5))


def test_colour_or_transparent_measurement_files_are_refused(tmp_path):
    _colour_files(tmp_path / "all")
    for name, expected in [("colour.png", "this model takes grey"), ("holed.png", "transparent")]:
        with pytest.raises(ValueError, match=expected):
            read_measurement_files(tmp_path / "all" / name, 1, 6, 5)
    got, _ = read_measurement_files(tmp_path / "all" / "grey_rgba.png", 1, 6, 5)
    assert torch.equal(got, read_measurement_files(tmp_path / "all" / "grey.png", 1, 6, 5)[0])


def test_resize_brings_colour_files_of_any_size_to_the_prior_size_aspect_kept(tmp_path):
    yy, xx = np.mgrid[:40, :80]
    stripes = np.stack([(xx % 8 < 4) * 255, yy * 6, np.full_like(xx, 90)], -1).astype(np.uint8)
    Image.fromarray(stripes, "RGB").save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match=r"let restore do it \(--resize 16,16\)"):
        read_image_files(tmp_path / "wide.png", (3, 16, 16))
    images, names = read_image_files(tmp_path / "wide.png", (3, 16, 16), resize=True)
    assert images.shape == (1, 3, 16, 16) and names == ["wide"]
    # Scaled by 16/40 to cover 16×32 (aspect kept), then the centre 16×16 window: the blue
    # channel stays flat, colour is kept.
    expected = resize_cover(torch.from_numpy(stripes).permute(2, 0, 1) / 255.0, (16, 16))
    torch.testing.assert_close(images[0], expected.float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(images[0, 2], torch.full((16, 16), 90 / 255), atol=1e-3, rtol=0)
    cover = torch.nn.functional.interpolate(
        torch.from_numpy(stripes).permute(2, 0, 1)[None].double() / 255, size=(16, 32),
        mode="bicubic", antialias=True,
    )[0].clamp(0, 1)  # fmt: skip
    torch.testing.assert_close(expected.double(), cover[:, :, 8:24], atol=1e-6, rtol=0)
    same = torch.rand(3, 16, 16)
    assert resize_cover(same, (16, 16)) is same
