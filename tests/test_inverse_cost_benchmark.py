"""The solver-cost benchmark (benchmarks/inverse_cost.py) on a tiny ADM, in-process: every
solver's step is timed and counted, and whether it back-propagates through the network is
recorded exactly (not inferred from timings)."""

import importlib
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def inverse_cost():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("inverse_cost")
    finally:
        sys.path.remove(str(BENCHMARKS))
        torch.set_flush_denormal(False)  # run_job turns it on


def _job(solver: str, operator: str | None = "sr4-bicubic", steps: int = 3) -> dict:
    return {
        "network": "tiny",
        "size": 32,
        "batch": 2,
        "solver": solver,
        "operator": operator,
        "steps": steps,
        "seed": 0,
        "threads": 1,
        "device": "cpu",
        "forward_repeats": 1,
        "memory_steps": 2,
        "memory_in_process": True,
    }


@pytest.fixture(scope="module")
def records(inverse_cost) -> dict[str, dict]:
    """Every row of one network and batch: the references, then the four solvers."""
    rows = {}
    for solver in (*inverse_cost.REFERENCES, *inverse_cost.SOLVERS):
        operator = None if solver in inverse_cost.REFERENCES else OPERATOR[solver]
        rows[solver] = inverse_cost.run_job(_job(solver, operator, steps=4))
    return rows


OPERATOR = {"red-diff": "sr4-bicubic", "dps": "sr4-bicubic", "ddrm": "inpaint-box"}
OPERATOR["pigdm"] = "inpaint-box"


@pytest.mark.parametrize(
    ("solver", "backward", "backward_in_memory_run"),
    [
        ("forward", 0, 0),
        ("red-diff", 0, 0),  # the denoiser under no_grad
        ("ddrm", 0, 0),  # no gradients at all
        ("dps", 3, 1),  # one VJP per step but the last (Tweedie's x0)
        ("pigdm", 3, 1),
        ("forward+vjp", 4, 2),
        ("forward+graph", 0, 0),  # the official RED-diff loop: a graph, never used
    ],
)
def test_each_step_is_timed_and_backward_passes_are_counted(
    records, solver, backward, backward_in_memory_run
):
    record = records[solver]
    assert record["nfe"] == 4 and record["network_calls"] == 4
    assert record["network_backward"] == backward
    # Solvers: the intervals between consecutive network calls (3); references: every call.
    assert len(record["step_wall_seconds"]) == (3 if solver in OPERATOR else 4)
    assert record["s_per_nfe_per_image"] == pytest.approx(record["s_per_nfe"] / 2)
    assert record["cpu_s_per_nfe"] > 0 and record["ratio_to_forward_cpu"] > 0
    assert record["working_peak_mb"] >= 0  # in-process: not exact, see the script
    assert record["memory_network_backward"] == backward_in_memory_run  # memory_steps = 2


def test_tables_put_measured_ratios_beside_the_claims(inverse_cost, records):
    rows = list(records.values())
    (row,) = inverse_cost.comparisons(rows)
    assert row["network"] == "tiny" and row["batch"] == 2
    assert row["dps_over_red_time"] > 0 and row["vjp_over_forward_time"] > 0
    assert set(row["cpu_s_per_image_at_budget"]) == {"dps", "pigdm", "ddrm", "red-diff"}
    table = inverse_cost.claims_table([row])
    assert "DPS / RED-diff, time per NFE" in table and "DPS-1000 / DDRM-20" in table
    assert "| tiny | 2 | DPS | sr4-bicubic |" in inverse_cost.results_table(rows)
