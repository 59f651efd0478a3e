"""Raises on every call, to exercise failed invocations."""


def run(reason: str = "no reason given") -> str:
    """Fail with a ValueError whose message includes the reason.

    Args:
        reason: Text to put in the error message.
    """
    raise ValueError(f"this tool always fails: {reason}")
