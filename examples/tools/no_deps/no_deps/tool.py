"""The smallest useful tool: it returns what it is given."""


def run(text: str) -> str:
    """Echo the text back.

    Args:
        text: The text to return.
    """
    return text
