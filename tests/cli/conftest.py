"""Shared fixtures of the CLI tests: a runner, and one tiny trained run on the digits data set.

The commands change process-wide torch settings (threads, denormal flushing); every test gets
them restored afterwards.
"""

import pytest
import torch
from typer.testing import CliRunner

from diffvi.cli.main import app

# A tiny but not trivial model: 3 epochs of 22 steps, latent dim 4, MLP 64 (~2 s on one core).
TINY_TRAIN = [
    "train", "vae", "--dataset", "digits", "--objective", "elbo", "--k", "1",
    "--latent-dim", "4", "--hidden", "64", "--batch-size", "64", "--lr", "3e-3",
    "--adam", "torch", "--max-epochs", "3", "--seed", "0", "--threads", "1", "--no-progress",
    "--log-every-n-steps", "10",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_torch_settings():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(False)  # torch's default


@pytest.fixture
def cli():
    """``cli(*args)`` runs ``diffvi ARGS`` in-process; the result has ``exit_code``,
    ``stdout``, ``stderr`` and ``output`` (both streams)."""
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run folder trained once per session with ``TINY_TRAIN`` (and the command's result)."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, [*TINY_TRAIN, "--run-dir", str(run_dir)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return run_dir, result


@pytest.fixture(scope="session")
def easy_plink(tmp_path_factory):
    """Out of Africa (YRI, CEU, CHB; Gutenkunst et al. 2009), 30 individuals each, 2 Mb, as a
    PLINK prefix with its labels: three well-separated populations (PCA + GMM NMI ≈ 0.93)."""
    pytest.importorskip("msprime")
    pytest.importorskip("stdpopsim")
    from diffvi.data.genotype_simulation import (
        genotypes_from_tree_sequence,
        simulate_stdpopsim,
        write_simulation,
    )

    ts = simulate_stdpopsim("OutOfAfrica_3G09", 30, length=2e6, seed=1)
    prefix = tmp_path_factory.mktemp("genotypes") / "ooa"
    write_simulation(genotypes_from_tree_sequence(ts), prefix, "plink")
    return prefix
