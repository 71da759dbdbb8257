"""Progress bars that stay quiet when not wanted."""

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str = "", enable: bool = True, **kwargs) -> Iterator[T]:
    """Wrap ``items`` in a tqdm bar when ``enable``; pass them through untouched otherwise."""
    if not enable:
        return iter(items)
    return iter(tqdm(items, desc=desc, dynamic_ncols=True, **kwargs))
