"""Derive a tool's input schema from its entrypoint.

Run with the tool's own interpreter, with the project directory on ``sys.path``::

    python toolsmith_introspect.py package.module:function

It prints one JSON object: ``{"ok": true, "input_schema": {...}, "takes_context": bool}``, or
``{"ok": false, "error_kind": ..., "message": ..., "traceback": ...}`` where ``error_kind`` is
``import_error``, ``not_a_function`` or ``bad_signature``. It exits 0 either way, so that a
non-zero exit always means this script itself failed.

The schema is JSON Schema 2020-12. Every annotated parameter becomes a property; parameters
with a default are optional and carry it; a parameter named ``context`` is left out, because
toolsmith fills it with the invocation mode and user variables. Descriptions come from the
docstring (Google ``Args:``, reST ``:param x:`` and NumPy ``Parameters`` sections).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import importlib
import inspect
import json
import re
import sys
import traceback
import types
import typing
import uuid

CONTEXT_PARAMETER = "context"


class SignatureError(Exception):
    """The entrypoint's signature cannot be turned into a schema; the message says why."""


def _is_typeddict(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _is_pydantic_model(tp) -> bool:
    return isinstance(tp, type) and hasattr(tp, "model_json_schema") and hasattr(tp, "model_fields")


def _json_default(value, where: str):
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise SignatureError(f"{where}: the default {value!r} cannot be written as JSON") from None
    return value


class SchemaBuilder:
    """Turns annotations into schemas, collecting named types under ``$defs``."""

    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}

    def ref(self, name: str, build) -> dict:
        if name not in self.defs:
            self.defs[name] = {}  # placeholder first: recursive types refer to themselves
            self.defs[name] = build()
        return {"$ref": f"#/$defs/{name}"}

    def schema(self, tp, where: str) -> dict:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            return self.schema(args[0], where)
        if tp is typing.Any or tp is object:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if tp is datetime.datetime:
            return {"type": "string", "format": "date-time"}
        if tp is datetime.date:
            return {"type": "string", "format": "date"}
        if tp is uuid.UUID:
            return {"type": "string", "format": "uuid"}
        if origin is typing.Union or (hasattr(types, "UnionType") and isinstance(tp, types.UnionType)):
            return {"anyOf": [self.schema(a, where) for a in args]}
        if origin is typing.Literal:
            values = [a.value if isinstance(a, enum.Enum) else a for a in args]
            return {"enum": values}
        if origin in (list, typing.List) or origin in _sequence_origins():
            item = self.schema(args[0], where) if args else {}
            return {"type": "array", "items": item}
        if origin in (set, frozenset):
            item = self.schema(args[0], where) if args else {}
            return {"type": "array", "items": item, "uniqueItems": True}
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.schema(args[0], where)}
            if not args:
                return {"type": "array"}
            items = [self.schema(a, where) for a in args]
            return {"type": "array", "prefixItems": items, "items": False, "minItems": len(items), "maxItems": len(items)}
        if origin in (dict, typing.Dict) or origin in _mapping_origins():
            if args and args[0] is not str:
                raise SignatureError(f"{where}: dictionary keys must be str, not {_name(args[0])}")
            value = self.schema(args[1], where) if len(args) == 2 else {}
            return {"type": "object", "additionalProperties": value}
        if tp in (list, tuple, set):
            return {"type": "array"}
        if tp is dict:
            return {"type": "object"}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self.ref(tp.__name__, lambda: {"title": tp.__name__, "enum": [m.value for m in tp]})
        if _is_pydantic_model(tp):
            return self._pydantic(tp)
        if _is_typeddict(tp):
            return self.ref(tp.__name__, lambda: self._typeddict(tp))
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.ref(tp.__name__, lambda: self._dataclass(tp))
        raise SignatureError(f"{where}: the annotation {_name(tp)} has no JSON Schema equivalent")

    def _typeddict(self, tp) -> dict:
        hints = typing.get_type_hints(tp, include_extras=True)
        properties = {k: self.schema(v, f"{tp.__name__}.{k}") for k, v in hints.items()}
        schema = {"title": tp.__name__, "type": "object", "properties": properties, "additionalProperties": False}
        required = [k for k in hints if k in tp.__required_keys__]
        if required:
            schema["required"] = required
        return schema

    def _dataclass(self, tp) -> dict:
        hints = typing.get_type_hints(tp, include_extras=True)
        properties, required = {}, []
        for field in dataclasses.fields(tp):
            prop = self.schema(hints[field.name], f"{tp.__name__}.{field.name}")
            if field.default is not dataclasses.MISSING:
                prop["default"] = _json_default(field.default, f"{tp.__name__}.{field.name}")
            elif field.default_factory is dataclasses.MISSING:
                required.append(field.name)
            properties[field.name] = prop
        schema = {"title": tp.__name__, "type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        return schema

    def _pydantic(self, tp) -> dict:
        model_schema = tp.model_json_schema(ref_template="#/$defs/{model}")
        for name, definition in model_schema.pop("$defs", {}).items():
            self.defs.setdefault(name, definition)
        name = model_schema.get("title", tp.__name__)
        self.defs.setdefault(name, model_schema)
        return {"$ref": f"#/$defs/{name}"}


def _sequence_origins():
    import collections.abc as abc

    return (abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)


def _mapping_origins():
    import collections.abc as abc

    return (abc.Mapping, abc.MutableMapping)


def _name(tp) -> str:
    return getattr(tp, "__qualname__", None) or getattr(tp, "__name__", None) or repr(tp)


_GOOGLE_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params)\s*:\s*$")
_GOOGLE_ITEM = re.compile(r"^(\s*)(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_REST_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph) and the parameter descriptions of a docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary_lines = []
    for line in lines:
        if not line.strip():
            break
        summary_lines.append(line.strip())
    params: dict[str, str] = {}
    _google(lines, params)
    _rest(lines, params)
    _numpy(lines, params)
    return " ".join(summary_lines), params


def _google(lines: list[str], params: dict[str, str]) -> None:
    i = 0
    while i < len(lines):
        if _GOOGLE_SECTION.match(lines[i]):
            i += 1
            item_indent = None
            current = None
            while i < len(lines):
                line = lines[i]
                if not line.strip():
                    i += 1
                    continue
                indent = len(line) - len(line.lstrip())
                if item_indent is None:
                    item_indent = indent
                if indent < item_indent or (indent == 0 and line.rstrip().endswith(":")):
                    break
                match = _GOOGLE_ITEM.match(line)
                if indent == item_indent and match:
                    current = match.group(2).lstrip("*")
                    params.setdefault(current, match.group(4).strip())
                elif current and indent > item_indent:
                    params[current] = (params[current] + " " + line.strip()).strip()
                i += 1
        else:
            i += 1


def _rest(lines: list[str], params: dict[str, str]) -> None:
    current = None
    for line in lines:
        match = _REST_PARAM.match(line)
        if match:
            current = match.group(1)
            params.setdefault(current, match.group(2).strip())
        elif current and line.startswith((" ", "\t")) and line.strip() and not line.strip().startswith(":"):
            params[current] = (params[current] + " " + line.strip()).strip()
        else:
            current = None


def _numpy(lines: list[str], params: dict[str, str]) -> None:
    for i in range(len(lines) - 1):
        if lines[i].strip() in ("Parameters", "Arguments") and set(lines[i + 1].strip()) == {"-"}:
            j = i + 2
            current = None
            while j < len(lines):
                line = lines[j]
                if j + 1 < len(lines) and line.strip() and set(lines[j + 1].strip() or "x") == {"-"}:
                    break  # the next section starts
                if line.strip() and not line.startswith((" ", "\t")):
                    current = line.split(":")[0].strip()
                    params.setdefault(current, "")
                elif current and line.strip():
                    params[current] = (params[current] + " " + line.strip()).strip()
                j += 1
            return


def derive_schema(func) -> tuple[dict, bool]:
    """The input schema of ``func`` and whether it takes a ``context`` parameter."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise SignatureError(f"its signature cannot be read: {exc}") from None
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # an annotation that does not evaluate
        raise SignatureError(f"its annotations cannot be evaluated: {exc}") from None
    summary, descriptions = parse_docstring(func.__doc__)
    builder = SchemaBuilder()
    properties: dict[str, dict] = {}
    required: list[str] = []
    takes_context = False
    for name, parameter in signature.parameters.items():
        where = f"parameter '{name}'"
        if name == CONTEXT_PARAMETER:
            takes_context = True
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise SignatureError(f"{where}: *args and **kwargs cannot be described to an agent; name each input")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise SignatureError(f"{where}: positional-only parameters cannot be passed by name")
        if name not in hints:
            raise SignatureError(f"{where} has no type annotation; annotate it (for example `{name}: str`)")
        prop = dict(builder.schema(hints[name], where))
        if name in descriptions and descriptions[name]:
            prop["description"] = descriptions[name]
        if parameter.default is parameter.empty:
            required.append(name)
        else:
            prop["default"] = _json_default(parameter.default, where)
        properties[name] = prop
    schema: dict = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if summary:
        schema["description"] = summary
    if builder.defs:
        schema["$defs"] = builder.defs
    return schema, takes_context


def introspect(entrypoint: str) -> dict:
    """The result object for an entrypoint written as ``module:function``."""
    module_name, sep, function_name = entrypoint.partition(":")
    if not sep or not module_name or not function_name:
        return {"ok": False, "error_kind": "not_a_function", "message": f"the entrypoint {entrypoint!r} must have the form module:function", "traceback": ""}
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # the tool's own import-time code may raise anything
        return {
            "ok": False,
            "error_kind": "import_error",
            "message": f"importing {module_name} failed: {type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    func = getattr(module, function_name, None)
    if func is None:
        return {"ok": False, "error_kind": "not_a_function", "message": f"{module_name} has no attribute {function_name!r}", "traceback": ""}
    if not (inspect.isfunction(func) or inspect.isbuiltin(func) or inspect.ismethod(func)):
        return {"ok": False, "error_kind": "not_a_function", "message": f"{entrypoint} is a {type(func).__name__}, not a function", "traceback": ""}
    if inspect.iscoroutinefunction(func):
        return {"ok": False, "error_kind": "not_a_function", "message": f"{entrypoint} is async; tool entrypoints are plain functions", "traceback": ""}
    try:
        schema, takes_context = derive_schema(func)
    except SignatureError as exc:
        return {"ok": False, "error_kind": "bad_signature", "message": f"{entrypoint}: {exc}", "traceback": ""}
    return {"ok": True, "input_schema": schema, "takes_context": takes_context}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: toolsmith_introspect.py module:function", file=sys.stderr)
        return 2
    print(json.dumps(introspect(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
