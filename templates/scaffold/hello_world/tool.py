"""The tool's entry point.

toolsmith reads the annotated parameters of `run` to build the input schema an agent sees, and
the docstring to describe each parameter. Whatever `run` returns becomes the tool's output: a
string as it is, anything else as JSON.
"""


def run(name: str, excited: bool = False) -> str:
    """Greet someone by name.

    Args:
        name: Who to greet.
        excited: End the greeting with an exclamation mark instead of a full stop.
    """
    return f"Hello, {name}{'!' if excited else '.'}"
