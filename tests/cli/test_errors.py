"""Bad input ends with a one-line message naming the problem and a non-zero exit code."""

import pytest
from read_only import make_read_only, make_writable


def _assert_clean_failure(result, *needles):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_train_with_an_unknown_dataset_names_it_and_the_valid_ones(cli, tmp_path):
    result = cli("train", "vae", "--dataset", "no-such-data", "--run-dir", tmp_path / "r")
    _assert_clean_failure(result, "no-such-data", "digits")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert not (tmp_path / "r").exists()


def test_train_with_k_below_one_is_a_usage_error(cli, tmp_path):
    result = cli("train", "vae", "--k", "0", "--run-dir", tmp_path / "r")
    _assert_clean_failure(result, "--k")
    assert result.exit_code == 2


def test_train_with_malformed_hidden_sizes_names_the_option(cli, tmp_path):
    result = cli("train", "vae", "--dataset", "digits", "--hidden", "200,x", "--run-dir", tmp_path)
    _assert_clean_failure(result, "--hidden", "200,x")


def test_resume_without_a_run_folder_says_what_is_missing(cli, tmp_path):
    result = cli("train", "vae", "--run-dir", tmp_path / "none", "--resume")
    _assert_clean_failure(result, "config.json")


def test_evaluate_a_missing_checkpoint_names_the_path(cli, tmp_path):
    missing = tmp_path / "no-run"
    result = cli("evaluate", missing)
    _assert_clean_failure(result, str(missing))
    assert result.exit_code == 1


def test_evaluate_a_run_folder_without_checkpoint_says_so(cli, tmp_path):
    result = cli("evaluate", tmp_path)
    _assert_clean_failure(result, "last.ckpt")


def test_evaluate_a_corrupt_checkpoint_says_it_is_unreadable(cli, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    result = cli("evaluate", bad)
    _assert_clean_failure(result, "not a readable diffvi checkpoint")


def test_evaluate_on_an_unknown_dataset_or_split_names_it(cli, trained_run):
    result = cli("evaluate", trained_run[0], "--dataset", "no-such-data")
    _assert_clean_failure(result, "no-such-data")
    result = cli("evaluate", trained_run[0], "--split", "valid")
    _assert_clean_failure(result, "valid", "test")


def test_sample_a_missing_checkpoint_names_the_path(cli, tmp_path):
    result = cli("sample", tmp_path / "nothing.ckpt")
    _assert_clean_failure(result, "nothing.ckpt")


def test_unknown_device_is_rejected_with_the_valid_forms(cli, trained_run):
    result = cli("sample", trained_run[0], "--device", "tpu9")
    _assert_clean_failure(result, "tpu9")


SBN = ["--dataset", "digits", "--layers", "4", "--val-k", "2", "--threads", "1", "--no-progress"]


def test_resume_from_a_truncated_or_broken_run_is_a_one_line_error(cli, tmp_path):
    run = tmp_path / "run"
    result = cli("train", "sbn", *SBN, "--max-steps", "2", "--val-every", "2", "--run-dir", run)
    assert result.exit_code == 0, result.output
    checkpoint = run / "checkpoints" / "last.ckpt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # killed while writing
    result = cli("train", "sbn", "--run-dir", run, "--resume", "--max-steps", "4", "--no-progress")
    _assert_clean_failure(result, str(checkpoint), "truncated")
    assert result.exit_code == 1
    (run / "config.json").write_text("{not json")
    result = cli("train", "sbn", "--run-dir", run, "--resume", "--no-progress")
    _assert_clean_failure(result, str(run / "config.json"), "not valid JSON")


def test_a_hand_edited_config_json_is_refused_on_resume_naming_the_key(cli, tmp_path):
    import json

    run = tmp_path / "run"
    result = cli("train", "sbn", *SBN, "--max-steps", "2", "--val-every", "2", "--run-dir", run)
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "lr": 0.5}))
    result = cli("train", "sbn", "--run-dir", run, "--resume", "--max-steps", "4", "--no-progress")
    _assert_clean_failure(result, "lr: checkpoint 0.0003, now 0.5")
    assert result.exit_code == 1


def test_an_empty_checkpoint_says_so(cli, tmp_path):
    empty = tmp_path / "last.ckpt"
    empty.write_bytes(b"")
    _assert_clean_failure(cli("evaluate", empty), "the file is empty")


def test_a_gpu_accelerator_without_a_gpu_says_how_to_run_on_cpu(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    result = cli("train", "sbn", *SBN, "--max-steps", "2", "--accelerator", "gpu",
                 "--run-dir", tmp_path / "run")  # fmt: skip
    _assert_clean_failure(result, "no CUDA GPU", "--accelerator cpu --devices 2 --strategy ddp")
    assert result.exit_code == 1


# -- outputs that cannot be written ----------------------------------------------------------


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder nothing can be written into (a read-only file system, simulated under root)."""
    folder = make_read_only(tmp_path / "read-only", monkeypatch)
    yield folder
    make_writable(folder)


def _assert_one_line(result, *needles):
    _assert_clean_failure(result, *needles)
    assert result.exit_code == 1
    error = result.stderr[result.stderr.find("Error: ") :]  # after any progress bar
    assert error.startswith("Error: ") and error.count("\n") == 1, result.stderr


def _unwritable_outputs(run, folder, tmp_path):
    """(command, the output it cannot write) for every command that writes files."""
    return [
        (["evaluate", run, "--k", "2", "--limit", "10", "--json", folder / "m.json"],
         folder / "m.json"),
        (["sample", run, "--num", "4", "--out", folder / "s.png"], folder / "s.png"),
        (["embed", run, "--out", folder / "emb"], folder / "emb"),
        (["train", "sbn", *SBN, "--max-steps", "2", "--run-dir", folder / "run"], folder / "run"),
        (["restore", "--dataset", "mnist", "--count", "1", "--steps", "2", "--device", "cpu",
          "--no-progress", "--out", folder / "r"], folder / "r"),
        (["embed", "genotypes", "--input", tmp_path / "g.vcf", "--out", folder / "e"],
         folder / "e"),
        (["simulate", "genotypes", "--out", folder / "sim"], folder / "sim.labels.tsv"),
        (["demo", "--quick", "--out", folder / "d"], folder / "d"),
    ]  # fmt: skip


def test_every_output_in_a_read_only_folder_is_a_one_line_error_naming_it(
    cli, trained_run, read_only, tmp_path
):
    for args, output in _unwritable_outputs(trained_run[0], read_only, tmp_path):
        result = cli(*args)
        _assert_one_line(result, f"cannot write {output}", str(read_only))
        assert "not writable" in result.stderr or "read-only file system" in result.stderr


def test_every_output_under_a_file_is_a_one_line_error_naming_it(cli, trained_run, tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("not a folder")
    for args, output in _unwritable_outputs(trained_run[0], file, tmp_path):
        _assert_one_line(cli(*args), f"cannot write {output}: {file} is a file, not a folder")


def test_evaluate_checks_its_json_output_before_evaluating(cli, trained_run, tmp_path, monkeypatch):
    import diffvi.evaluation.report as report

    def evaluate(*args, **kwargs):
        raise AssertionError("evaluated before checking --json")

    monkeypatch.setattr(report, "evaluate_module", evaluate)
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "m.json"
    _assert_one_line(cli("evaluate", trained_run[0], "--json", out), f"cannot write {out}")


def test_a_full_disk_when_writing_results_is_a_one_line_error(
    cli, trained_run, tmp_path, monkeypatch
):
    import errno
    import os

    import diffvi.cli.evaluate as evaluate

    def full(path, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(evaluate, "write_json", full)
    out = tmp_path / "m.json"
    result = cli("evaluate", trained_run[0], "--k", "2", "--limit", "10", "--json", out)
    _assert_one_line(result, f"cannot write {out}: the disk is full")


def test_a_full_disk_while_training_is_a_one_line_error_naming_the_checkpoint(
    cli, tmp_path, monkeypatch
):
    import errno
    import os

    import torch

    def full(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    run = tmp_path / "run"
    result = cli("train", "sbn", *SBN, "--max-steps", "2", "--val-every", "2", "--run-dir", run)
    _assert_one_line(result, f"cannot write {run / 'checkpoints' / 'last.ckpt'}: the disk is full")


# -- training that diverges ------------------------------------------------------------------


def _assert_diverged(result, run, *needles):
    """Exit 1 with the one line ``Error: training diverged …`` and no checkpoint or export
    written."""
    _assert_clean_failure(result, *needles)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: training diverged ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (run / "checkpoints").exists() and not (run / "export").exists()


def test_an_sbn_that_diverges_with_finite_losses_is_a_one_line_error(cli, tmp_path):
    run = tmp_path / "run"
    result = cli("train", "sbn", "--dataset", "digits", "--layers", "20", "--lr", "1e6",
                 "--max-steps", "60", "--log-every-n-steps", "5", "--threads", "1",
                 "--no-progress", "--run-dir", run)  # fmt: skip
    _assert_diverged(result, run, "negative bound rose to 2", "--lr, now 1e6")


def test_a_vae_dgp_whose_kernel_matrix_breaks_down_is_a_one_line_error(cli, tmp_path):
    run = tmp_path / "run"
    result = cli("train", "vaedgp", "--dataset", "frey-faces", "--layers", "2", "--train-size",
                 "100", "--num-inducing", "8", "--recognition-hidden", "16", "--batch-size", "10",
                 "--lr", "1e6", "--recognition-lr", "1e6", "--max-steps", "20",
                 "--log-every-n-steps", "10", "--threads", "1", "--no-progress",
                 "--run-dir", run)  # fmt: skip
    _assert_diverged(result, run, "at step 1 (K_zz is not positive definite",
                     "--lr, now 1e6; --recognition-lr, now 1e6")  # fmt: skip


# -- genotype files -----------------------------------------------------------------------------


def test_embed_genotypes_of_a_file_that_is_not_a_vcf_is_a_one_line_error(cli, tmp_path):
    import gzip

    import numpy as np

    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    files = {
        "random.vcf": noise,
        "random.vcf.gz": noise,
        "text.vcf.gz": gzip.compress(b"not a vcf\n"),
        "cut.vcf.gz": gzip.compress(b"##fileformat=VCFv4.2\n" * 2000)[:200],
    }
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = cli("embed", "genotypes", "--input", path, "--out", tmp_path / "out")
        _assert_one_line(result, str(path), "VCF file")


def _small_vcf(path, samples, variants=40):
    import numpy as np

    calls = np.random.default_rng(0).choice(["0/0", "0/1", "1/1"], (variants, len(samples)))
    lines = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=1,length=100000>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                   *samples]),
        *("\t".join(["1", str(100 * (j + 1)), f"v{j}", "A", "G", ".", "PASS", ".", "GT", *row])
          for j, row in enumerate(calls)),
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_unlabelled_genotype_samples_are_dropped_with_drop_unlabelled(cli, tmp_path):
    import json

    samples = [f"s{i}" for i in range(12)]
    vcf = _small_vcf(tmp_path / "g.vcf", samples)
    labels = tmp_path / "labels.tsv"
    labels.write_text("sample\tpopulation\n" + "".join(f"{s}\tP{i % 2}\n" for i, s in
                                                      enumerate(samples[:10])))  # fmt: skip
    args = ["embed", "genotypes", "--input", vcf, "--labels", labels, "--method", "pca",
            "--clusters", "2", "--components", "4", "--no-progress", "--threads", "1"]  # fmt: skip
    result = cli(*args, "--out", tmp_path / "a")
    _assert_one_line(result, "2 genotype samples have no label", "--drop-unlabelled")
    result = cli(*args, "--drop-unlabelled", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["num_samples"] == 10
    result = cli("embed", "genotypes", "--input", vcf, "--drop-unlabelled", "--out", tmp_path / "c")
    _assert_one_line(result, "--drop-unlabelled", "--labels")


def test_a_model_path_that_does_not_exist_says_so_for_every_kind_of_model(cli, tmp_path):
    for missing in (
        tmp_path / "no-run",
        tmp_path / "no-run" / "last.ckpt",
        tmp_path / "no" / "export",
    ):
        for args in (
            ["evaluate", missing],
            ["sample", missing],
            ["embed", missing, "--out", tmp_path],
        ):
            result = cli(*args)
            _assert_one_line(result, f"{missing} does not exist")
            assert "diffusion" not in result.output


# -- model descriptions too large to allocate -----------------------------------------------


def test_a_model_json_asking_for_a_billion_channel_unet_is_refused_before_allocating(cli, tmp_path):
    import json

    from diffvi.utils.paths import MODEL_SPEC, find_model

    spec = json.loads((find_model("mnist") / MODEL_SPEC).read_text())
    spec["denoiser"]["base_channels"] = 10**9
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps(spec))
    (folder / "model.safetensors").write_bytes(b"")
    for args in (["sample", folder, "--device", "cpu"], ["evaluate", folder, "--device", "cpu"]):
        result = cli(*args)
        _assert_one_line(result, f"{folder / 'model.json'} asks for a diffusion model",
                         "base_channels=1000000000", "refusing to allocate")  # fmt: skip


def test_a_config_json_asking_for_a_huge_model_is_refused_before_allocating(cli, tmp_path):
    import json

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"kind": "vae", "dataset": "digits", "hidden": [[10**9]]}))
    run = tmp_path / "run"
    result = cli("train", "vae", "--config", config, "--run-dir", run, "--no-progress")
    _assert_one_line(result, "the config asks for a vae model", "hidden=[[1000000000]]")
    assert not (run / "checkpoints").exists()
