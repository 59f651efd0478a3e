import humanize


def run(count: int) -> str:
    """Write a number with thousands separators.

    Args:
        count: The number to format.
    """
    return humanize.intcomma(count)
