"""The GPU benchmark script (benchmarks/gpu.py) on the CPU at tiny sizes: it refuses a missing
GPU, its FLOP counts are the CPU benchmark's, and its sections give consistent figures."""

import importlib
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def gpu():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("gpu")
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_refuses_without_a_gpu(gpu, capsys):
    with pytest.raises(SystemExit):
        gpu.parse_args([])
    assert "no CUDA device" in capsys.readouterr().err


def test_rejects_unknown_sections(gpu, capsys):
    with pytest.raises(SystemExit):
        gpu.parse_args(["--device", "cpu", "--sections", "iwae,nope"])
    assert "nope" in capsys.readouterr().err


def test_iwae_flops_match_the_cpu_benchmark(gpu):
    assert (
        gpu.iwae_step_flops(gpu.iwae_speed.BATCH)
        == (gpu.iwae_speed.step_flops()["forward_backward_3x"])
    )
    assert gpu.iwae_step_flops(1000) > 49 * gpu.iwae_step_flops(20)  # the decoder dominates


def test_seconds_per_call_counts_calls(gpu):
    calls = []
    seconds = gpu.seconds_per_call(lambda: calls.append(1), torch.device("cpu"), budget=0.0)
    assert len(calls) == 2 + 3  # two warm-up calls, then the minimum of three
    assert seconds >= 0


def test_quick_sections_on_cpu(gpu):
    args = gpu.parse_args(["--quick", "--device", "cpu", "--eval-images", "2", "--repeats", "1"])
    device = torch.device("cpu")
    torch.set_num_threads(1)
    card = gpu.card(args, device)
    assert card["fp32_gflops"] > 0 and card["device"] == "cpu"
    row = gpu.iwae_row(args, device, card["fp32_gflops"], 20)
    assert row["batch"] == 20 and row["images_per_s"] == pytest.approx(20 * row["steps_per_s"])
    assert 0 < row["fraction_of_roofline"] < 1.5  # timed at a real rate, not a broken clock
    ev = gpu.evaluation(args, device, card["fp32_gflops"])
    assert ev["images"] == 2 and ev["over_bound"] > 0.5
    text = gpu.render({"mode": "quick", "command": "test", "card": card, "iwae": [row],
                       "eval": ev})  # fmt: skip
    assert "IWAE(k = 50) training" in text and "k = 5000" in text
