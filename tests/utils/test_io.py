"""Atomic file writers: a CSV round trip with values that need quoting; outputs that cannot be
written fail with one line naming the path and the cause, before any work where checked."""

import csv
import errno
import os

import pytest
from read_only import make_read_only, make_writable

from diffvi.utils.io import (
    NotWritableError,
    atomic_write,
    ensure_writable,
    remove_stale_temporaries,
    write_csv,
    write_json,
)


def test_write_csv_round_trips_header_and_rows_with_commas_and_quotes(tmp_path):
    rows = [["a,b", 1, 2.5], ['say "hi"', -1, 0.0]]
    path = write_csv(tmp_path / "t.csv", ["name", "n", "x"], iter(rows))
    with open(path, newline="") as f:
        read = list(csv.reader(f))
    assert read == [["name", "n", "x"], ["a,b", "1", "2.5"], ['say "hi"', "-1", "0.0"]]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left


def test_atomic_write_gives_the_umasks_mode_not_the_temporary_files_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "f.txt", lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_stale_temporaries_of_one_file_are_removed_and_nothing_else(tmp_path):
    stale = tmp_path / ".last.ckpt.k2j4h1.ckpt"
    stale.write_bytes(b"half a checkpoint")
    keep = [tmp_path / "last.ckpt", tmp_path / ".other.ckpt.abc.ckpt"]
    for path in keep:
        path.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path, "last.ckpt") == [stale]
    assert not stale.exists() and all(p.exists() for p in keep)


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    folder = make_read_only(tmp_path / "read-only", monkeypatch)
    yield folder
    make_writable(folder)


def test_ensure_writable_accepts_new_and_existing_files_and_folders_and_creates_nothing(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    for path, folder in [
        (tmp_path / "old.json", False),
        (tmp_path / "new.json", False),
        (tmp_path / "a" / "b" / "new.json", False),
        (tmp_path, True),
        (tmp_path / "run" / "sub", True),
    ]:
        assert ensure_writable(path, folder=folder) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]  # no probe, no folder


def test_ensure_writable_in_a_read_only_folder_names_the_path_and_the_folder(read_only):
    for path, folder in [(read_only / "m.json", False), (read_only / "run" / "x", True)]:
        with pytest.raises(NotWritableError) as info:
            ensure_writable(path, folder=folder)
        message = str(info.value)
        assert message.startswith(f"cannot write {path}: {read_only} is ")
        assert "not writable" in message or "read-only file system" in message
        assert "\n" not in message


def test_ensure_writable_refuses_a_folder_for_a_file_and_a_file_for_a_folder(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    cases = [
        (tmp_path, False, "it is a folder, not a file"),
        (tmp_path / "file.txt", True, "it is a file, not a folder"),
        (tmp_path / "file.txt" / "out.png", False, f"{tmp_path / 'file.txt'} is a file"),
        (tmp_path / "file.txt" / "run", True, f"{tmp_path / 'file.txt'} is a file"),
    ]
    for path, folder, needle in cases:
        with pytest.raises(NotWritableError, match=str(path)) as info:
            ensure_writable(path, folder=folder)
        assert needle in str(info.value)


def test_ensure_writable_on_a_full_disk_says_the_disk_is_full(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(NotWritableError, match="the disk is full"):
        ensure_writable(tmp_path / "m.json")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # the probe is removed


def test_atomic_write_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path):
    def fill(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    with pytest.raises(NotWritableError) as info:
        atomic_write(tmp_path / "metrics.json", fill)
    assert str(info.value) == (
        f"cannot write {tmp_path / 'metrics.json'}: the disk is full (no space left on device)"
    )
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_into_a_read_only_folder_names_the_file(read_only):
    with pytest.raises(NotWritableError, match=f"cannot write {read_only / 'sub' / 'm.json'}: "):
        write_json(read_only / "sub" / "m.json", {"a": 1})
