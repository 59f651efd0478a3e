import os


def run(name: str, reveal: bool = False) -> str:
    """Greet with a configured prefix, proving the tool sees its variables.

    Args:
        name: Who to greet.
        reveal: Return the secret itself (it is masked before anyone sees it).
    """
    token = os.environ["API_TOKEN"]
    shown = token if reveal else f"a token of {len(token)} characters"
    return f"{os.environ['GREETING_PREFIX']} {name}, with {shown}"
