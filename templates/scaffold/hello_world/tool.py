"""The tool: `run` is the function an agent calls.

The agent is shown `run`'s parameters, with their types and the descriptions from the docstring,
and passes a value for each. Whatever `run` returns becomes the tool's result: a string as it is,
anything else as JSON.
"""


def run(name: str, excited: bool = False) -> str:
    """Greet someone by name.

    Args:
        name: Who to greet.
        excited: End the greeting with an exclamation mark instead of a full stop.
    """
    return f"Hello, {name}{'!' if excited else '.'}"
