"""Counts words.

The bug is deliberate: splitting on a single space counts empty strings between repeated spaces
as words. The project's test catches it, so publishing this project must fail its CI checks.
"""


def run(text: str) -> int:
    """Count the words in a text.

    Args:
        text: The text to count the words of.
    """
    return len(text.split(" "))
