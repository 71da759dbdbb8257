"""The installed wheel works like the checkout: built from the working tree, installed without
dependencies into a fresh virtual environment that borrows the project's installed ones, and
run from a folder outside the checkout with no data or model folders set."""

import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("mnist", "fashion-mnist")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the working tree (built from a copy, so the checkout gets no build/)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(out)],
        check=True,
    )  # fmt: skip
    (built,) = out.glob("diffvi-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """``bin/`` of a new virtual environment holding the wheel alone (no editable diffvi), with
    this environment's site-packages appended for the dependencies."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # A path line: the dependencies, not the .pth files there (the editable diffvi's).
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    Path(purelib, "borrowed_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--quiet", str(wheel)],
        check=True,
    )  # fmt: skip
    return venv / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(cwd), "XDG_CACHE_HOME": str(cwd)}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_wheel_holds_the_shipped_priors_and_one_version(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for prior in SHIPPED:
        for file in ("model.json", "model.safetensors"):
            assert f"diffvi/shipped_models/{prior}/{file}" in names
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    import diffvi

    assert f"Version: {diffvi.__version__}\n" in text
    assert "License-Expression: MIT" in text


def test_the_installed_command_samples_and_restores_outside_the_checkout(installed, tmp_path):
    where = _run(installed, tmp_path, "python", "-c", "import diffvi; print(diffvi.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout
    for args in (("diffvi", "--help"), ("python", "-m", "diffvi", "--version")):
        result = _run(installed, tmp_path, *args)
        assert result.returncode == 0, result.stderr
    assert "diffvi" in result.stdout
    sampled = _run(
        installed, tmp_path, "diffvi", "sample", "mnist", "--num", "2", "--steps", "2",
        "--no-progress", "-o", "digits/",
    )  # fmt: skip
    assert sampled.returncode == 0, sampled.stderr
    assert len(list((tmp_path / "digits").glob("*.png"))) == 2
    restored = _run(
        installed, tmp_path, "diffvi", "restore", "--task", "inpaint-box", "--solver",
        "red-diff", "--prior", "mnist", "--input", "digits/000.png", "--steps", "2",
        "--out", "restored/",
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert (tmp_path / "restored" / "metrics.json").is_file()
