"""Imports a module that exists nowhere, so importing this module always fails."""

import a_module_that_is_not_a_dependency  # noqa: F401


def run(text: str) -> str:
    """Never reached: the import above fails first.

    Args:
        text: Anything.
    """
    return text
