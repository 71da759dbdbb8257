"""DDP across 2 CPU processes (gloo): both ranks train in step and end with equal parameters."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import sys
    import lightning as L
    import torch
    from diffvi.training import TrainConfig, fit

    class SaveParameters(L.Callback):
        def on_train_end(self, trainer, module):
            flat = torch.cat([p.detach().flatten() for p in module.parameters()])
            torch.save({"params": flat, "steps": trainer.global_step},
                       f"{sys.argv[1]}/rank{trainer.global_rank}.pt")

    config = TrainConfig(dataset="digits", latent_dims=[4], hidden=[[32]], k=5,
                         batch_size=32, max_epochs=1, val_size=64, seed=0)
    fit(config, sys.argv[1] + "/run", accelerator="cpu", devices=2, strategy="ddp",
        progress_bar=False, callbacks=[SaveParameters()])
    """
)


@pytest.mark.slow
def test_ddp_two_cpu_processes_end_with_identical_parameters(tmp_path: Path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = Path(__file__).resolve().parents[2] / "src"
    env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    # 1437 training digits / 2 ranks / batch 32 → 22 full batches on each rank
    assert ranks[0]["steps"] == ranks[1]["steps"] == 22
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
