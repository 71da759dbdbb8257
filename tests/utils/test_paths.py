"""The user cache location."""

from pathlib import Path

import pytest

from diffvi.utils.paths import cache_dir


def test_cache_dir_follows_an_absolute_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "diffvi"


@pytest.mark.parametrize("value", [None, "", "relative/cache"])
def test_cache_dir_defaults_to_home_dot_cache_when_xdg_is_unset_empty_or_relative(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", value)
    assert cache_dir() == Path.home() / ".cache" / "diffvi"


def _save_model(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text("{}")


def test_a_bare_name_never_resolves_to_a_folder_of_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffvi.utils.paths import find_model, is_model_name

    shipped, here = tmp_path / "shipped", tmp_path / "here"
    _save_model(shipped / "mnist")
    _save_model(here / "mnist")  # a look-alike where the user stands
    monkeypatch.setenv("DIFFVI_MODELS", str(shipped))
    monkeypatch.chdir(here)
    assert is_model_name("mnist") and not is_model_name("./mnist")
    assert not is_model_name(Path("mnist")) and not is_model_name("last.ckpt")
    assert find_model("mnist") == shipped / "mnist"
    assert find_model("./mnist") == Path("./mnist")
    with pytest.raises(FileNotFoundError, match=r"\./elsewhere"):
        find_model("elsewhere")


def test_every_diffvi_data_folder_is_searched_for_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from diffvi.utils.paths import find_model, model_search_path

    monkeypatch.delenv("DIFFVI_MODELS", raising=False)
    monkeypatch.setenv("DIFFVI_DATA", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    _save_model(tmp_path / "b" / "models" / "toy")
    assert {tmp_path / "a" / "models", tmp_path / "b" / "models"} <= set(model_search_path())
    assert find_model("toy") == tmp_path / "b" / "models" / "toy"


def test_shipped_priors_are_package_data_searched_after_diffvi_models(tmp_path, monkeypatch):
    import diffvi
    from diffvi.utils.paths import find_model, model_search_path, shipped_models_dir

    shipped = shipped_models_dir()
    assert shipped == Path(diffvi.__file__).parent / "shipped_models"
    monkeypatch.setenv("DIFFVI_MODELS", str(tmp_path / "mine"))
    monkeypatch.setenv("DIFFVI_DATA", str(tmp_path / "data"))
    assert model_search_path()[:3] == [tmp_path / "mine", shipped, tmp_path / "data" / "models"]
    assert find_model("mnist") == shipped / "mnist"
    _save_model(tmp_path / "mine" / "mnist")
    assert find_model("mnist") == tmp_path / "mine" / "mnist"
