"""Atomic file writers: a CSV round trip with values that need quoting."""

import csv
import os

from diffvi.utils.io import atomic_write, remove_stale_temporaries, write_csv


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
