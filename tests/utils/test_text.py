"""Message wording: counts take the singular for exactly one."""

from diffvi.utils.text import plural


def test_plural_is_singular_for_one_only():
    assert plural(1, "image") == "1 image"
    assert [plural(n, "image") for n in (0, 2)] == ["0 images", "2 images"]
    assert plural(3, "child", "children") == "3 children"
