def run(a: int, b: int) -> int:
    """Add two numbers (wrongly, on purpose)."""
    return a - b
