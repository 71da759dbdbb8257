"""Bad input ends with a one-line message naming the problem and a non-zero exit code."""


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
