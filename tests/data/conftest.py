"""Fixtures for the data tests: an empty per-test user cache and a network guard."""

import io
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point ``XDG_CACHE_HOME`` at an empty folder; returns the diffvi cache folder in it."""
    root = tmp_path_factory.mktemp("xdg_cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(root))
    return root / "diffvi"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that would open a URL without installing a fake ``urlopen``."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"tests must not use the network (urlopen{args})")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


class FakeResponse(io.BytesIO):
    """A stand-in for an HTTP response: bytes, a Content-Length header, a read hook."""

    def __init__(self, data: bytes, on_read: Callable[[], None] | None = None) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}
        self.on_read = on_read

    def read(self, size: int | None = -1) -> bytes:
        if self.on_read is not None:
            self.on_read()
        return super().read(size)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """``serve({url: bytes}, on_read=None)`` installs a fake ``urlopen`` serving those bytes.

    Returns the list that records every requested URL. Downloads are allowed while it is on.
    """

    def install(files: dict[str, bytes], on_read: Callable[[], None] | None = None) -> list[str]:
        requested: list[str] = []

        def fake_urlopen(request: urllib.request.Request | str, timeout: float | None = None):
            url = request.full_url if isinstance(request, urllib.request.Request) else request
            requested.append(url)
            if url not in files:
                raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)  # type: ignore[arg-type]
            return FakeResponse(files[url], on_read)

        monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
        monkeypatch.setenv("DIFFVI_OFFLINE", "0")
        return requested

    return install
