"""DDP across 2 CPU processes (gloo), for every family: both ranks train in step, end with
equal parameters, and rank 0 writes the run folder."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    import lightning as L
    import torch
    from diffvi.training import fit
    from diffvi.training.family import family_class

    class SaveParameters(L.Callback):
        def on_train_end(self, trainer, module):
            flat = torch.cat([p.detach().flatten().double() for p in module.parameters()])
            torch.save({"params": flat, "steps": trainer.global_step},
                       f"{sys.argv[1]}/rank{trainer.global_rank}.pt")

    kind, values = sys.argv[2], json.loads(sys.argv[3])
    config = family_class(kind).config_class(**values)
    fit(config, sys.argv[1] + "/run", accelerator="cpu", devices=2, strategy="ddp",
        progress_bar=False, callbacks=[SaveParameters()])
    """
)

STEPS = dict(max_steps=4, val_every_n_steps=4)
FAMILIES = {
    # 1437 training digits / 2 ranks / batch 32 → 22 full batches on each rank
    "vae": (dict(dataset="digits", latent_dims=[4], hidden=[[32]], k=5, batch_size=32,
                 max_epochs=1, val_size=64), 22),
    "diffusion": (dict(dataset="digits", base_channels=8, channel_mults=[1],
                       attention_resolutions=[], batch_size=32, warmup_steps=1, val_size=32,
                       **STEPS), 4),
    "cvdm": (dict(task="microscopy-sr", task_options={"size": 16}, train_size=64, val_size=4,
                  base_channels=8, channel_mults=[1], batch_size=8, timesteps=10,
                  sample_steps=2, val_sample_size=2, **STEPS), 4),
    "sbn": (dict(dataset="digits", layers=[8], batch_size=32, val_size=32, val_k=2, **STEPS), 4),
    "vaedgp": (dict(dataset="digits", latent_dims=[2], num_inducing=4, recognition_hidden=[8],
                    train_size=40, batch_size=10, val_size=10, refine_steps=1, **STEPS), 4),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("kind", FAMILIES)
def test_ddp_two_cpu_processes_end_with_identical_parameters(tmp_path: Path, kind: str):
    values, steps = FAMILIES[kind]
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = Path(__file__).resolve().parents[2] / "src"
    env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), kind, json.dumps(values)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == steps
    torch.testing.assert_close(ranks[0]["params"], ranks[1]["params"], rtol=0, atol=1e-12)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    spec = json.loads((tmp_path / "run" / "export" / "model.json").read_text())
    assert spec["kind"] == kind and spec["metadata"]["steps"] == steps
