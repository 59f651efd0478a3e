"""Echoes the `context` argument back as JSON data.

A tool that declares a parameter named `context` receives the invocation mode and the user
variables through it; the parameter is not part of the tool's input schema. This tool returns
whatever arrived, converted to plain JSON data whatever its shape (a mapping, a dataclass, an
object with attributes), so tests can see exactly what a tool is given.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump())
    if hasattr(value, "__dict__"):
        return {key: _plain(item) for key, item in vars(value).items() if not key.startswith("_")}
    return repr(value)


def run(note: str = "", context: Any = None) -> dict:
    """Return the note and the invocation context this call received.

    Args:
        note: Any text; it is returned as it is, to tell calls apart.
    """
    return {"note": note, "context_type": type(context).__name__, "context": _plain(context)}
