"""Keeps a call count in module state.

Inside one Python process the count grows with every call. toolsmith runs every invocation in a
fresh process, so under toolsmith this tool returns 1 every time; any other answer means state
leaked from one invocation into the next.
"""

_calls = 0


def run() -> int:
    """Count this call and return how many calls this process has seen."""
    global _calls
    _calls += 1
    return _calls
