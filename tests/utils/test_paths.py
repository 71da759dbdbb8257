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
