"""One metrics log per run: ``logs/metrics.csv``, continued (never duplicated) when it resumes.

A resumed run trains again the steps a killed run did after its last checkpoint; its first
logged row cuts the log back to the rows before that row's step, so each step appears once,
from the run that trained it for good. (The validation at the checkpoint's own step, which
Lightning does not repeat on resume, keeps its row.)
"""

import csv
import io
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from diffvi.utils.io import atomic_write

LOG_FILE = "metrics.csv"


class _RunLogWriter(ExperimentWriter):
    """Lightning's CSV writer, continuing the run's log (``resume``) or starting it afresh."""

    def __init__(self, log_dir: str, resume: bool) -> None:
        self.resume = resume
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # called by __init__
        path = Path(self.metrics_file_path)
        if path.is_file() and not self.resume:
            path.unlink()

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        if self.resume and step is not None:
            self.metrics_keys = _cut_log(Path(self.metrics_file_path), step)
            self.resume = False
        super().log_metrics(metrics_dict, step)


class RunLogger(CSVLogger):
    """``CSVLogger`` writing ``run_dir/logs/metrics.csv`` (and ``hparams.yaml``), one per run;
    ``resume`` continues the existing log, else it is replaced."""

    def __init__(self, run_dir: str | Path, resume: bool = False) -> None:
        super().__init__(run_dir, name="logs", version="")
        self.resume = resume

    @property
    @rank_zero_experiment
    def experiment(self) -> _RunLogWriter:
        if self._experiment is None:
            Path(self.log_dir).mkdir(parents=True, exist_ok=True)
            self._experiment = _RunLogWriter(self.log_dir, self.resume)
        return self._experiment


def _cut_log(path: Path, step: int) -> list[str]:
    """Drop the rows of the CSV log ``path`` from ``step`` on; return its header (``[]`` when
    there is no log)."""
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    kept = [row for row in rows if int(row["step"]) < step]
    if len(kept) < len(rows):
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text.getvalue()))
    return header
