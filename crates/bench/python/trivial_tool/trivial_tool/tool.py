"""A function that does next to nothing, so that a benchmark measures only what surrounds it."""


def run(name: str) -> str:
    """Greet someone.

    Args:
        name: Who to greet.
    """
    return f"hello, {name}"
