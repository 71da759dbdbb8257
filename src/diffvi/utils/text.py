"""Wording of the messages the commands print."""


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``"1 image"``, ``"2 images"``: ``count`` and ``noun``, or its plural ``nouns`` (default
    ``noun + "s"``) unless ``count`` is 1."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
