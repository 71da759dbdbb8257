"""Atomic file writers: a CSV round trip with values that need quoting."""

import csv

from diffvi.utils.io import write_csv


def test_write_csv_round_trips_header_and_rows_with_commas_and_quotes(tmp_path):
    rows = [["a,b", 1, 2.5], ['say "hi"', -1, 0.0]]
    path = write_csv(tmp_path / "t.csv", ["name", "n", "x"], iter(rows))
    with open(path, newline="") as f:
        read = list(csv.reader(f))
    assert read == [["name", "n", "x"], ["a,b", "1", "2.5"], ['say "hi"', "-1", "0.0"]]
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary file left
