"""Derive a tool's input schema from its entrypoint.

Run with the tool's own interpreter, with the project directory on ``sys.path``::

    python toolsmith_introspect.py package.module:function

It prints exactly one JSON object on stdout, either
``{"ok": true, "input_schema": {...}, "takes_context": bool, "output_schema": {...} | null,
"output_schema_problem": str | null}`` or
``{"ok": false, "error_kind": ..., "message": ..., "traceback": ...}`` where ``error_kind`` is
``import_error``, ``not_a_function`` or ``bad_signature``. It exits 0 in both cases, so that a
non-zero exit always means this script itself failed. Whatever the tool prints while it is
imported goes to stderr, so stdout carries nothing but the answer.

The schema is JSON Schema 2020-12. Every parameter becomes a property; one with a default is
optional and carries the default; a parameter named ``context`` is left out, because toolsmith
fills it with the invocation mode and the user variables. Named types (dataclasses,
``TypedDict``, ``Enum``, pydantic models) are described once under ``$defs`` and referred to with
``$ref``. Descriptions come from the docstring: Google (``Args:``), reST (``:param x:``) and NumPy
(``Parameters`` underlined with dashes) styles.

The output schema describes the JSON the harness makes of the returned value, derived from the
return annotation in the same way. It is null without an annotation, and null with a reason in
``output_schema_problem`` when the annotation names something the harness cannot write as JSON
(a set, a datetime, a dataclass inside a list...): a missing output schema never fails a build.

This file uses the standard library only: it runs in environments that contain nothing but the
tool's own dependencies. pydantic is used when the tool itself has imported it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import difflib
import enum
import importlib
import inspect
import json
import math
import os
import re
import sys
import traceback
import types
import typing
import uuid

CONTEXT_PARAMETER = "context"

IMPORT_ERROR = "import_error"
NOT_A_FUNCTION = "not_a_function"
BAD_SIGNATURE = "bad_signature"


class SignatureError(Exception):
    """The entrypoint's signature cannot be turned into a schema; the message says why and where."""


# --------------------------------------------------------------------------------------------
# Docstrings


@dataclasses.dataclass
class Docstring:
    """What a docstring says: its summary (first paragraph) and one description per parameter."""

    summary: str = ""
    params: dict[str, str] = dataclasses.field(default_factory=dict)


_GOOGLE_HEADER = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters|Attributes)\s*:\s*$"
)
# Section headers that end the summary; any other line ending in a colon may be prose.
_SECTION_HEADER = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters|Attributes|"
    r"Returns?|Yields?|Raises|Examples?|Notes?|See Also|Warnings?|Todo)\s*:\s*$"
)
# `name (type, optional): text`; a type holding a colon is too rare to be worth the ambiguity.
_GOOGLE_ITEM = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^:]*\))?\s*:(?:\s+(.*))?$")
_REST_FIELD = re.compile(r"^:(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?\*{0,2}(\w+)\s*:\s*(.*)$")
_NUMPY_HEADERS = {"Parameters", "Other Parameters", "Arguments", "Keyword Arguments", "Attributes"}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_underline(line: str) -> bool:
    text = line.strip()
    return len(text) >= 3 and set(text) == {"-"}


def _starts_section(lines: list[str], i: int) -> bool:
    """Whether line ``i`` opens a Google, reST or NumPy section (and so ends the summary)."""
    text = lines[i].strip()
    if _SECTION_HEADER.match(text) or text.startswith(":"):
        return True
    return i + 1 < len(lines) and bool(text) and _is_underline(lines[i + 1])


def _append(params: dict[str, str], name: str, text: str) -> None:
    text = text.strip()
    if text:
        params[name] = f"{params[name]} {text}" if params.get(name) else text


def parse_docstring(doc: str | None) -> Docstring:
    """Split a docstring into its summary and its parameter descriptions.

    The summary is the first paragraph, joined into one line. A parameter described in more than
    one style keeps its first description.
    """
    if not isinstance(doc, str) or not doc.strip():
        return Docstring()
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for i, line in enumerate(lines):
        if not line.strip() or _starts_section(lines, i):
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    for style in (_google_params, _rest_params, _numpy_params):
        for name, text in style(lines).items():
            params.setdefault(name, text)
    return Docstring(" ".join(summary), params)


def _google_params(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    i = 0
    while i < len(lines):
        header = lines[i]
        i += 1
        if not _GOOGLE_HEADER.match(header.strip()):
            continue
        base = _indent(header)
        item_indent = None
        current = None
        while i < len(lines):
            line = lines[i]
            if line.strip():
                indent = _indent(line)
                if indent <= base:
                    break  # the section ended
                if item_indent is None:
                    item_indent = indent
                match = _GOOGLE_ITEM.match(line.strip()) if indent <= item_indent else None
                if match:
                    current = match.group(1)
                    params.setdefault(current, "")
                    _append(params, current, match.group(2) or "")
                elif current:
                    _append(params, current, line)
            i += 1
    return params


def _rest_params(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    current = None
    for line in lines:
        match = _REST_FIELD.match(line.strip())
        if match:
            current = match.group(1)
            params.setdefault(current, "")
            _append(params, current, match.group(2))
        elif current and line.strip() and _indent(line) > 0 and not line.strip().startswith(":"):
            _append(params, current, line)
        elif line.strip():
            current = None
    return params


def _numpy_params(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    i = 0
    while i + 1 < len(lines):
        if not (lines[i].strip() in _NUMPY_HEADERS and _is_underline(lines[i + 1])):
            i += 1
            continue
        base = _indent(lines[i])
        current: list[str] = []
        i += 2
        while i < len(lines):
            line = lines[i]
            if i + 1 < len(lines) and line.strip() and _is_underline(lines[i + 1]):
                break  # the next section's header
            if line.strip():
                if _indent(line) <= base:
                    # `a, b : int` describes both `a` and `b`.
                    names = line.split(":")[0]
                    current = [n.strip().lstrip("*") for n in names.split(",") if n.strip()]
                    for name in current:
                        params.setdefault(name, "")
                else:
                    for name in current:
                        _append(params, name, line)
            i += 1
    return params


# --------------------------------------------------------------------------------------------
# Values


def _json_type(value) -> str | None:
    """The JSON Schema type of a scalar, or None when it is not a JSON scalar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number" if math.isfinite(value) else None
    if isinstance(value, str):
        return "string"
    return None


def to_json_value(value, where: str):
    """A default value as JSON data, or a SignatureError saying why it has no JSON form."""
    if isinstance(value, enum.Enum):
        return to_json_value(value.value, where)
    if _json_type(value) is not None:
        return value
    if isinstance(value, float):
        raise SignatureError(f"{where}: the default {value!r} is not a JSON number")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_json_value(item, where) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [to_json_value(item, where) for item in value]
        # Sets iterate in hash order, which changes between runs for strings; the schema must not.
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise SignatureError(f"{where}: the default {value!r} has keys that are not strings")
        return {key: to_json_value(item, where) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Like the schema, the default leaves out fields a caller cannot pass (init=False).
        return {f.name: to_json_value(getattr(value, f.name), where) for f in dataclasses.fields(value) if f.init}
    if _is_pydantic_model(type(value)):
        return value.model_dump(mode="json")
    raise SignatureError(f"{where}: the default {value!r} cannot be written as JSON")


# --------------------------------------------------------------------------------------------
# Annotations


def _pydantic_base_model():
    """pydantic's BaseModel if the tool has imported pydantic; the tool decides, not this script."""
    pydantic = sys.modules.get("pydantic")
    return getattr(pydantic, "BaseModel", None)


def _is_pydantic_model(tp) -> bool:
    base = _pydantic_base_model()
    return base is not None and isinstance(tp, type) and issubclass(tp, base)


def _is_pydantic_v1_model(tp) -> bool:
    v1 = sys.modules.get("pydantic.v1")
    base = getattr(v1, "BaseModel", None)
    return base is not None and isinstance(tp, type) and issubclass(tp, base)


def _is_typeddict(tp) -> bool:
    # Structural, so that TypedDicts from typing_extensions count as well.
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _typeddict_key_required(tp, name: str, hint) -> bool:
    # With string annotations (`from __future__ import annotations`) the TypedDict cannot see
    # Required/NotRequired when it is created, so its __required_keys__ may be wrong; the
    # evaluated annotation is not.
    qualifier = getattr(typing.get_origin(hint), "_name", None)
    if qualifier == "NotRequired":
        return False
    if qualifier == "Required":
        return True
    return name in tp.__required_keys__


def type_name(tp) -> str:
    """How an annotation reads in an error message."""
    if isinstance(tp, type):
        if tp.__module__ == "builtins":
            return tp.__qualname__
        return f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp).replace("typing.", "")


def _own_doc(cls) -> str | None:
    """A class's own docstring; dataclasses invent one from the signature, which says nothing."""
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str) or (dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(")):
        return None
    return doc


_SEQUENCES = (list, collections.abc.Sequence, collections.abc.MutableSequence, collections.abc.Iterable, collections.abc.Collection)
_SETS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_QUALIFIERS = {"Required", "NotRequired", "ReadOnly"}
_FORMATS = {datetime.datetime: "date-time", datetime.date: "date", datetime.time: "time", uuid.UUID: "uuid"}
_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}
_SUPPORTED = (
    "str, int, float, bool, None, Optional[...] or X | None, Literal[...], list[...], tuple[...], "
    "set[...], dict[str, ...], Enum, TypedDict, dataclasses, pydantic models, datetime, date, time, UUID, Any"
)


def _by_identity(table: dict, tp):
    # Not `table.get(tp)`: annotation objects may be unhashable or compare in surprising ways.
    return next((value for key, value in table.items() if key is tp), None)


@dataclasses.dataclass
class _Definition:
    """A named type described once under ``$defs``; ``refs`` are the places that point at it."""

    tp: type
    schema: dict = dataclasses.field(default_factory=dict)
    refs: list[dict] = dataclasses.field(default_factory=list)


# How the harness writes a result as JSON, which decides what an output schema may describe:
# the returned value itself (a str as it is, a dataclass through dataclasses.asdict, a pydantic
# model through model_dump, anything else through json.dumps), a value inside a dataclass
# (asdict converts nested dataclasses too) and a value json.dumps must take as it is.
_RESULT, _IN_DATACLASS, _PLAIN_JSON = "result", "in dataclass", "plain JSON"
_ITERABLES = (collections.abc.Iterable, collections.abc.Collection)


class SchemaBuilder:
    """Turns annotations into JSON Schema, collecting named types for ``$defs``.

    A reference is handed out as a dict whose ``$ref`` is filled in by :meth:`definitions`, when
    every named type is known: only then can two different types with the same name be told
    apart, and pydantic asked for all of its models at once so that they share definitions.

    An input schema describes the JSON a caller sends; an output schema (``output=True``) the
    JSON the harness makes of the returned value: dataclasses with every field, pydantic models
    as they serialize, and only what the harness can write at the place where it occurs.
    """

    def __init__(self, output: bool = False) -> None:
        self._named: dict[type, _Definition] = {}
        self._models: dict[type, list[dict]] = {}
        # Where the value being described sits, for an output schema; None for an input schema.
        self._writer: str | None = _RESULT if output else None

    def schema(self, tp, where: str) -> dict:
        """The schema of annotation ``tp``; ``where`` names its place for error messages."""
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            return self.schema(args[0], where)
        if getattr(origin, "_name", None) in _QUALIFIERS:
            return self.schema(args[0], where)
        if isinstance(tp, typing.NewType):
            return self.schema(tp.__supertype__, where)
        if type(tp).__name__ == "TypeAliasType":
            return self.schema(tp.__value__, where)
        if self._writer is not None:
            self._check_writable(tp, origin, where)
        if tp is typing.Any or tp is object:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        scalar = _by_identity(_SCALARS, tp)
        if scalar:
            return {"type": scalar}
        string_format = _by_identity(_FORMATS, tp)
        if string_format:
            return {"type": "string", "format": string_format}
        if origin is typing.Union or type(tp).__name__ == "UnionType":
            return {"anyOf": [self.schema(arg, where) for arg in args]}
        if origin is typing.Literal:
            return self._literal(tp, args, where)
        if tp is tuple:
            return {"type": "array"}
        if origin is tuple:
            return self._tuple(args, where)
        if origin in _SEQUENCES or tp is list:
            return {"type": "array", "items": self._inner(args[0], where)} if args else {"type": "array"}
        if origin in _SETS or tp in (set, frozenset):
            schema = {"type": "array", "uniqueItems": True}
            if args:
                schema["items"] = self._inner(args[0], where)
            return schema
        if origin in _MAPPINGS or tp is dict:
            return self._mapping(tp, args, where)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._reference(tp, lambda: self._enum(tp, where))
        if _is_pydantic_model(tp):
            return self._pydantic_reference(tp, where)
        if _is_pydantic_v1_model(tp):
            raise SignatureError(
                f"{where}: {type_name(tp)} is a pydantic v1 model (pydantic.v1.BaseModel); "
                "use a pydantic 2 BaseModel instead"
            )
        if _is_typeddict(tp):
            return self._reference(tp, lambda: self._typeddict(tp, where))
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._reference(tp, lambda: self._dataclass(tp, where))
        if isinstance(tp, (str, typing.ForwardRef)):
            raise SignatureError(f"{where}: the annotation {tp!r} is a name that could not be resolved")
        raise SignatureError(
            f"{where}: the annotation {type_name(tp)} has no JSON Schema equivalent (supported: {_SUPPORTED})"
        )

    def _inner(self, tp, where: str, in_dataclass: bool = False) -> dict:
        """The schema of a value inside another one (an item, a field, a mapping's value)."""
        writer = self._writer
        if writer is not None:
            self._writer = _IN_DATACLASS if in_dataclass or writer == _IN_DATACLASS else _PLAIN_JSON
        try:
            return self.schema(tp, where)
        finally:
            self._writer = writer

    def _check_writable(self, tp, origin, where: str) -> None:
        """Raises SignatureError when the harness cannot write a value of ``tp`` where it sits
        in a result: json.dumps takes JSON's own types (and enums derived from str, int or
        float) only, dataclasses.asdict converts dataclasses inside dataclasses, and a pydantic
        model is converted only as the whole result."""
        problem = None
        if _by_identity(_FORMATS, tp):
            problem = f"{type_name(tp)} has no JSON form in a result; return it as a str"
        elif origin in _SETS or tp in (set, frozenset):
            problem = f"{type_name(tp)} has no JSON form in a result; return a list"
        elif origin in _ITERABLES or tp in _ITERABLES:
            problem = f"{type_name(tp)} may be an iterator, which has no JSON form in a result; annotate list[...]"
        elif isinstance(tp, type) and issubclass(tp, enum.Enum) and not issubclass(tp, (str, int, float)):
            problem = f"the enum {type_name(tp)} has no JSON form in a result; derive it from str or int, or return its value"
        elif _is_pydantic_model(tp) and self._writer != _RESULT:
            problem = f"the model {type_name(tp)} is written as JSON only as the whole result, not inside another value"
        elif isinstance(tp, type) and dataclasses.is_dataclass(tp) and self._writer == _PLAIN_JSON:
            problem = f"the dataclass {type_name(tp)} is written as JSON only as the result or inside another dataclass"
        if problem:
            raise SignatureError(f"{where}: {problem}")

    def definitions(self) -> dict:
        """Every named type's schema by name, with each reference handed out pointing at it."""
        defs: dict[str, dict] = {}
        if self._models:
            defs.update(self._pydantic_definitions())
        for definition in self._named.values():
            name = self._free_name(definition.tp, defs)
            defs[name] = definition.schema
            for ref in definition.refs:
                ref["$ref"] = f"#/$defs/{name}"
        return defs

    def _reference(self, tp: type, build) -> dict:
        definition = self._named.get(tp)
        if definition is None:
            # Registered before it is built, so that a recursive type finds itself.
            definition = self._named[tp] = _Definition(tp)
            definition.schema = build()
        ref = {"$ref": None}
        definition.refs.append(ref)
        return ref

    @staticmethod
    def _free_name(tp: type, taken: dict) -> str:
        name = tp.__name__
        if name not in taken:
            return name
        name = re.sub(r"[^A-Za-z0-9_]", "_", f"{tp.__module__}__{tp.__qualname__}")
        suffix, candidate = 2, name
        while candidate in taken:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        return candidate

    def _literal(self, tp, args, where: str) -> dict:
        values = []
        for arg in args:
            value = arg.value if isinstance(arg, enum.Enum) else arg
            if _json_type(value) is None:
                raise SignatureError(f"{where}: {type_name(tp)} holds {value!r}, which is not a JSON value")
            values.append(value)
        return {"enum": values}

    def _tuple(self, args, where: str) -> dict:
        if not args:  # tuple[()], the empty tuple
            return {"type": "array", "maxItems": 0}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": self._inner(args[0], where)}
        items = [self._inner(arg, where) for arg in args]
        return {"type": "array", "prefixItems": items, "items": False, "minItems": len(items), "maxItems": len(items)}

    def _mapping(self, tp, args, where: str) -> dict:
        if not args:
            return {"type": "object"}
        if args[0] is not str:
            raise SignatureError(
                f"{where}: in {type_name(tp)} the keys are {type_name(args[0])}, but JSON object keys "
                "are always strings; use dict[str, ...]"
            )
        return {"type": "object", "additionalProperties": self._inner(args[1], where)}

    def _enum(self, tp: type, where: str) -> dict:
        values = [member.value for member in tp]
        for value in values:
            if _json_type(value) is None:
                raise SignatureError(f"{where}: the enum {type_name(tp)} has the value {value!r}, which is not a JSON value")
        schema: dict = {"title": tp.__name__, "enum": values}
        summary = parse_docstring(_own_doc(tp)).summary
        if summary:
            schema["description"] = summary
        return schema

    def _class_hints(self, tp: type, where: str) -> dict:
        try:
            return typing.get_type_hints(tp, include_extras=True)
        except Exception as exc:
            raise SignatureError(f"{where}: the annotations of {type_name(tp)} cannot be evaluated: {exc}") from exc

    def _object(self, tp: type, properties: dict, required: list[str]) -> dict:
        doc = parse_docstring(_own_doc(tp))
        for name, prop in properties.items():
            if doc.params.get(name):
                prop["description"] = doc.params[name]
        schema: dict = {"title": tp.__name__, "type": "object", "properties": properties}
        if required:
            schema["required"] = required
        schema["additionalProperties"] = False
        if doc.summary:
            schema["description"] = doc.summary
        return schema

    def _typeddict(self, tp: type, where: str) -> dict:
        hints = self._class_hints(tp, where)
        properties = {name: self._inner(hint, f"{where}, field {tp.__name__}.{name}") for name, hint in hints.items()}
        required = [name for name, hint in hints.items() if _typeddict_key_required(tp, name, hint)]
        return self._object(tp, properties, required)

    def _dataclass(self, tp: type, where: str) -> dict:
        hints = self._class_hints(tp, where)
        properties, required = {}, []
        for field in dataclasses.fields(tp):
            if self._writer is not None:
                # dataclasses.asdict writes every field, whatever its default.
                properties[field.name] = self._inner(hints[field.name], f"{where}, field {tp.__name__}.{field.name}", True)
                required.append(field.name)
                continue
            if not field.init:
                continue  # not something a caller can pass
            field_where = f"{where}, field {tp.__name__}.{field.name}"
            prop = self.schema(hints[field.name], field_where)
            if field.default is not dataclasses.MISSING:
                prop["default"] = to_json_value(field.default, field_where)
            elif field.default_factory is dataclasses.MISSING:
                required.append(field.name)
            properties[field.name] = prop
        return self._object(tp, properties, required)

    def _pydantic_reference(self, tp: type, where: str) -> dict:
        if tp not in self._models:
            try:
                tp.model_json_schema()  # fails here, where the parameter can still be named
            except Exception as exc:
                raise SignatureError(f"{where}: pydantic cannot describe the model {type_name(tp)}: {exc}") from exc
            self._models[tp] = []
        ref = {"$ref": None}
        self._models[tp].append(ref)
        return ref

    def _pydantic_definitions(self) -> dict:
        from pydantic.json_schema import models_json_schema

        # A result is what model_dump(mode="json") makes of the model, not what it accepts.
        mode = "validation" if self._writer is None else "serialization"
        mapping, top = models_json_schema([(model, mode) for model in self._models], ref_template="#/$defs/{model}")
        for model, refs in self._models.items():
            for ref in refs:
                extra = {key: value for key, value in ref.items() if key != "$ref"}
                ref.clear()
                ref.update(mapping[(model, mode)])
                ref.update(extra)
        return top.get("$defs", {})


# --------------------------------------------------------------------------------------------
# Entrypoints


def _raw_annotations(func) -> dict:
    try:
        return dict(getattr(func, "__annotations__", None) or {})
    except Exception:
        # Python 3.14 evaluates annotations lazily, so reading them can raise; ask for forward
        # references instead and let each parameter's own evaluation below report the failure.
        annotationlib = importlib.import_module("annotationlib")
        return dict(annotationlib.get_annotations(func, format=annotationlib.Format.FORWARDREF))


def _type_hints(func) -> dict:
    """The evaluated annotation of each parameter but ``context``, or an error naming the one that fails.

    Each annotation is evaluated on its own: one that cannot be (a name imported only under
    TYPE_CHECKING, a typo) is reported with its parameter, and the annotation of ``context``,
    which the schema never uses, is not evaluated at all.
    """
    return {
        name: _evaluate(func, name, annotation, f"parameter '{name}'")
        for name, annotation in _raw_annotations(func).items()
        if name not in ("return", CONTEXT_PARAMETER)
    }


def _evaluate(func, name: str, annotation, where: str):
    """One annotation of ``func``, evaluated in the namespace of the module that defines it."""
    target = inspect.unwrap(func)
    namespace = getattr(getattr(target, "__func__", target), "__globals__", {})
    holder = types.SimpleNamespace(__annotations__={name: annotation})
    try:
        return typing.get_type_hints(holder, globalns=namespace, include_extras=True)[name]
    except Exception as exc:
        shown = annotation if isinstance(annotation, str) else type_name(annotation)
        # typing's own frames would be all the traceback shows; the message says it all.
        raise SignatureError(
            f"{where}: the annotation {shown!r} cannot be evaluated: {type(exc).__name__}: {exc}"
        ) from None


def _annotated_description(annotation) -> str | None:
    """A description given as ``Annotated[T, "text"]`` or ``Annotated[T, Field(description=...)]``."""
    if typing.get_origin(annotation) is not typing.Annotated:
        return None
    for meta in annotation.__metadata__:
        text = meta if isinstance(meta, str) else getattr(meta, "description", None)
        if isinstance(text, str) and text.strip():
            return text.strip()
    return None


def derive_schema(func) -> tuple[dict, bool]:
    """The input schema of ``func`` and whether it declares a ``context`` parameter.

    Raises SignatureError, naming the parameter and the annotation, when a parameter cannot be
    described.
    """
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise SignatureError(f"its signature cannot be read: {exc}") from exc
    hints = _type_hints(func)
    doc = parse_docstring(inspect.getdoc(func))
    builder = SchemaBuilder()
    properties: dict[str, dict] = {}
    required: list[str] = []
    takes_context = False
    for name, parameter in signature.parameters.items():
        if parameter.kind is parameter.VAR_POSITIONAL:
            raise SignatureError(
                f"parameter '*{name}': *{name} cannot be described in an input schema; "
                "replace it with named, annotated parameters (for example `items: list[str]`)"
            )
        if parameter.kind is parameter.VAR_KEYWORD:
            raise SignatureError(
                f"parameter '**{name}': **{name} cannot be described in an input schema; "
                "replace it with named, annotated parameters (for example `options: dict[str, str]`)"
            )
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise SignatureError(
                f"parameter '{name}' is positional-only (it comes before `/`), but tool inputs are "
                "passed by name; remove the `/`"
            )
        if name == CONTEXT_PARAMETER:
            takes_context = True
            continue
        where = f"parameter '{name}'"
        if name not in hints:
            raise SignatureError(f"{where} has no type annotation; add one, for example `{name}: str`")
        prop = builder.schema(hints[name], where)
        description = doc.params.get(name) or _annotated_description(hints[name])
        if description:
            prop["description"] = description
        if parameter.default is parameter.empty:
            required.append(name)
        else:
            prop["default"] = to_json_value(parameter.default, where)
        properties[name] = prop
    schema: dict = {"type": "object"}
    if doc.summary:
        schema["description"] = doc.summary
    schema["properties"] = properties
    schema["required"] = required
    schema["additionalProperties"] = False
    try:
        defs = builder.definitions()
    except Exception as exc:
        raise SignatureError(f"the pydantic models' schemas could not be combined: {exc}") from exc
    if defs:
        schema["$defs"] = defs
    return schema, takes_context


def derive_output_schema(func) -> tuple[dict | None, str | None]:
    """The schema of the JSON the harness makes of what ``func`` returns, from its return
    annotation, and why there is none when there is an annotation it cannot be derived from.

    Without a return annotation both are None. An output schema is a description, never a
    condition of the build: whatever keeps it from being derived is reported, not raised.
    """
    annotations = _raw_annotations(func)
    if "return" not in annotations:
        return None, None
    where = "the return value"
    try:
        builder = SchemaBuilder(output=True)
        schema = builder.schema(_evaluate(func, "return", annotations["return"], where), where)
        defs = builder.definitions()
        if defs:
            schema["$defs"] = defs
        json.dumps(schema, allow_nan=False)
    except SignatureError as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"{where}: its schema could not be derived: {type(exc).__name__}: {exc}"
    return schema, None


def _failure(kind: str, message: str, trace: str = "") -> dict:
    return {"ok": False, "error_kind": kind, "message": message, "traceback": trace}


def _tool_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without the frames of this script and of importlib above the tool."""
    tb = exc.__traceback__
    here = os.path.abspath(__file__)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        ours = filename.startswith("<frozen importlib") or os.path.abspath(filename) == here
        if not ours and f"{os.sep}importlib{os.sep}" not in filename:
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _import_message(module_name: str, exc: BaseException) -> str:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        missing = exc.name
        if module_name == missing or module_name.startswith(missing + "."):
            path = missing.replace(".", "/")
            return (
                f"the entrypoint's module {module_name} was not found: the project has no {path}.py "
                f"and no {path}/ package; check [tool.toolsmith] entrypoint in pyproject.toml"
            )
        if missing.split(".")[0] == module_name.split(".")[0]:
            return f"importing {module_name} failed: it imports {missing}, which is not in the project"
        return (
            f"importing {module_name} failed: No module named '{missing}'; "
            "is the package that provides it listed in [project] dependencies in pyproject.toml?"
        )
    if isinstance(exc, SystemExit):
        return f"importing {module_name} failed: it called sys.exit({exc.code!r}) while being imported"
    return f"importing {module_name} failed: {type(exc).__name__}: {exc}"


def _valid_module_name(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def introspect(entrypoint: str) -> dict:
    """The answer object for an entrypoint written as ``module:function``."""
    module_name, sep, function_name = entrypoint.partition(":")
    if not sep or not _valid_module_name(module_name) or not function_name.isidentifier():
        return _failure(
            NOT_A_FUNCTION,
            f"the entrypoint {entrypoint!r} must have the form package.module:function (for example my_tool.tool:run)",
        )
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # the tool's import-time code may raise anything, SystemExit included
        return _failure(IMPORT_ERROR, _import_message(module_name, exc), _tool_traceback(exc))
    try:
        func = getattr(module, function_name)
    except AttributeError:
        functions = [
            name
            for name, value in vars(module).items()
            if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_")
        ]
        message = f"{module_name} has no function {function_name!r}"
        close = difflib.get_close_matches(function_name, functions, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        elif functions:
            message += f"; it defines {', '.join(sorted(functions))}"
        return _failure(NOT_A_FUNCTION, message)
    except Exception as exc:  # a module-level __getattr__ of the tool's own
        return _failure(
            NOT_A_FUNCTION, f"looking up {function_name!r} in {module_name} raised {type(exc).__name__}: {exc}", _tool_traceback(exc)
        )

    kind = _callable_problem(func)
    if kind:
        return _failure(NOT_A_FUNCTION, f"{entrypoint} {kind}")
    try:
        schema, takes_context = derive_schema(func)
    except SignatureError as exc:
        cause = exc.__cause__
        return _failure(BAD_SIGNATURE, f"{entrypoint}: {exc}", _tool_traceback(cause) if cause else "")
    except Exception as exc:
        return _failure(
            BAD_SIGNATURE, f"{entrypoint}: the input schema could not be derived: {type(exc).__name__}: {exc}", _tool_traceback(exc)
        )
    output_schema, output_problem = derive_output_schema(func)
    return {
        "ok": True,
        "input_schema": schema,
        "takes_context": takes_context,
        "output_schema": output_schema,
        "output_schema_problem": output_problem,
    }


def _callable_problem(func) -> str | None:
    """Why ``func`` cannot be an entrypoint, as the end of a sentence; None when it can."""
    if inspect.isclass(func):
        return "is a class, not a function; point the entrypoint at a function defined with def"
    if not callable(func):
        return f"is not a function but a value of type {type_name(type(func))}"
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        return "is an async function; tool entrypoints must be plain functions defined with def"
    if inspect.isgeneratorfunction(func):
        return "is a generator function (it uses yield); return the result instead"
    if not (inspect.isfunction(func) or inspect.ismethod(func)):
        return f"is not a function defined with def but a {type_name(type(func))}"
    return None


def _claim_stdout():
    """Keep the real stdout for the answer and send everything else written to it to stderr.

    The tool's module runs arbitrary code on import; a print() there, or a C library writing to
    file descriptor 1, must not end up in the JSON the server parses.
    """
    sys.stdout.flush()
    answer = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return answer


def main(argv: list[str]) -> int:
    """Command line entry: print the answer for ``argv[1]``; 0 unless this script itself failed."""
    if len(argv) != 2:
        print("usage: toolsmith_introspect.py package.module:function", file=sys.stderr)
        return 2
    answer = _claim_stdout()
    result = introspect(argv[1])
    try:
        text = json.dumps(result, allow_nan=False)
    except ValueError:
        text = json.dumps(
            _failure(BAD_SIGNATURE, f"{argv[1]}: the input schema holds a number JSON cannot represent (NaN or infinity)")
        )
    answer.write(text + "\n")
    answer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
