"""Tests of the input and output schema derivation.

Standard library only: the pydantic cases skip without pydantic, and every derived schema is also
checked against the JSON Schema 2020-12 meta-schema (and against sample inputs) when jsonschema
is installed. Run with ``python3 -m unittest discover -s crates/runtime/python``.
"""

import collections.abc
import dataclasses
import datetime
import enum
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest
import uuid
from typing import Annotated, Any, Dict, List, Literal, NewType, NotRequired, Optional, Required, TypedDict, Union

import toolsmith_introspect as ti

try:
    import pydantic
except ImportError:  # depends on the environment the suite runs in
    pydantic = None

try:
    import jsonschema
except ImportError:  # depends on the environment the suite runs in
    jsonschema = None

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toolsmith_introspect.py")


def derive(func):
    """``derive_schema(func)``, with the schema checked against the 2020-12 meta-schema when possible."""
    schema, takes_context = ti.derive_schema(func)
    if jsonschema is not None:
        jsonschema.Draft202012Validator.check_schema(schema)
    json.dumps(schema, allow_nan=False)  # the schema must be plain JSON data
    return schema, takes_context


def schema_of(func) -> dict:
    return derive(func)[0]


class Color(enum.Enum):
    """A paint color."""

    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 3


class Mixed(enum.Enum):
    ONE = 1
    TWO = "two"


class Bad(enum.Enum):
    BLOB = b"bytes"


class Address(TypedDict):
    """A postal address.

    Attributes:
        street: Street and number.
    """

    street: str
    zip_code: int


class Partial(TypedDict, total=False):
    note: str
    must: Required[int]


class WithOptionalKey(TypedDict):
    name: str
    nickname: NotRequired[str]


class ExtendedAddress(Address):
    country: str


@dataclasses.dataclass
class Window:
    """The days to cover.

    Attributes:
        days: How many days.
    """

    days: int
    hourly: bool = False
    tags: list[str] = dataclasses.field(default_factory=list)
    computed: int = dataclasses.field(default=0, init=False)


@dataclasses.dataclass
class Tree:
    label: str
    children: "list[Tree]" = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Holder:
    address: Address
    color: Color


@dataclasses.dataclass
class BytesField:
    data: bytes


UserId = NewType("UserId", int)


def other_window_class():
    """A second class named ``Window``, as another module of a tool might define one."""

    @dataclasses.dataclass
    class Window:  # the name clash with the module-level Window is the point
        hours: int

    return Window


class Scalars(unittest.TestCase):
    def test_types_required_defaults_and_descriptions(self):
        def run(name: str, count: int, ratio: float = 0.5, loud: bool = False) -> str:
            """Say hello.

            Args:
                name: Who to greet.
                count: How many times,
                    at least once.
                ratio: Unused.
            """

        schema, takes_context = derive(run)
        self.assertFalse(takes_context)
        self.assertEqual(
            schema,
            {
                "type": "object",
                "description": "Say hello.",
                "properties": {
                    "name": {"type": "string", "description": "Who to greet."},
                    "count": {"type": "integer", "description": "How many times, at least once."},
                    "ratio": {"type": "number", "description": "Unused.", "default": 0.5},
                    "loud": {"type": "boolean", "default": False},
                },
                "required": ["name", "count"],
                "additionalProperties": False,
            },
        )

    def test_no_parameters_and_no_docstring(self):
        def run():
            pass

        self.assertEqual(
            schema_of(run), {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
        )

    def test_keyword_only_parameters_are_ordinary_inputs(self):
        def run(a: int, *, b: str, c: bool = True):
            pass

        schema = schema_of(run)
        self.assertEqual(list(schema["properties"]), ["a", "b", "c"])
        self.assertEqual(schema["required"], ["a", "b"])

    def test_special_scalars(self):
        def run(
            when: datetime.datetime, day: datetime.date, at: datetime.time, key: uuid.UUID, anything: Any, user: UserId
        ):
            pass

        props = schema_of(run)["properties"]
        self.assertEqual(props["when"], {"type": "string", "format": "date-time"})
        self.assertEqual(props["day"], {"type": "string", "format": "date"})
        self.assertEqual(props["at"], {"type": "string", "format": "time"})
        self.assertEqual(props["key"], {"type": "string", "format": "uuid"})
        self.assertEqual(props["anything"], {})
        self.assertEqual(props["user"], {"type": "integer"})

    @unittest.skipIf(jsonschema is None, "jsonschema is not installed")
    def test_the_schema_validates_inputs_as_the_signature_would(self):
        def run(name: str, count: int = 1):
            pass

        validator = jsonschema.Draft202012Validator(schema_of(run))
        self.assertTrue(validator.is_valid({"name": "Ada"}))
        self.assertTrue(validator.is_valid({"name": "Ada", "count": 2}))
        self.assertFalse(validator.is_valid({}), "a required parameter is missing")
        self.assertFalse(validator.is_valid({"name": "Ada", "count": "2"}), "a wrong type")
        self.assertFalse(validator.is_valid({"name": "Ada", "colour": "red"}), "an unknown parameter")


class Unions(unittest.TestCase):
    def test_optional_spellings(self):
        def run(a: Optional[str], b: int | None = None, c: Union[int, str] = 1):
            pass

        props = schema_of(run)["properties"]
        self.assertEqual(props["a"], {"anyOf": [{"type": "string"}, {"type": "null"}]})
        self.assertEqual(props["b"], {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None})
        self.assertEqual(props["c"], {"anyOf": [{"type": "integer"}, {"type": "string"}], "default": 1})
        self.assertEqual(schema_of(run)["required"], ["a"], "Optional without a default is still required")


class Literals(unittest.TestCase):
    def test_literal_values(self):
        def run(
            flag: Literal[True],
            mixed: Literal["a", 1, None],
            color: Literal[Color.RED],
            unit: Literal["c", "f"] = "c",
            level: Literal[1, 2, 3] = 1,
        ):
            pass

        props = schema_of(run)["properties"]
        self.assertEqual(props["unit"], {"enum": ["c", "f"], "default": "c"})
        self.assertEqual(props["level"], {"enum": [1, 2, 3], "default": 1})
        self.assertEqual(props["flag"], {"enum": [True]})
        self.assertEqual(props["mixed"], {"enum": ["a", 1, None]})
        self.assertEqual(props["color"], {"enum": ["red"]}, "an enum member stands for its value")

    def test_a_literal_of_something_json_lacks_is_refused(self):
        def run(raw: Literal[b"x"]):
            pass

        with self.assertRaisesRegex(ti.SignatureError, r"parameter 'raw': .*b'x'.* not a JSON value"):
            ti.derive_schema(run)


class Collections(unittest.TestCase):
    def test_sequences_sets_and_tuples(self):
        def run(
            a: list[str],
            b: List[int],
            c: list,
            d: collections.abc.Sequence[float],
            e: set[str],
            f: frozenset[int],
            g: tuple[int, str],
            h: tuple[int, ...],
            i: tuple,
            j: list[list[bool]],
            k: tuple[()],
        ):
            pass

        props = schema_of(run)["properties"]
        self.assertEqual(props["a"], {"type": "array", "items": {"type": "string"}})
        self.assertEqual(props["b"], {"type": "array", "items": {"type": "integer"}})
        self.assertEqual(props["c"], {"type": "array"})
        self.assertEqual(props["d"], {"type": "array", "items": {"type": "number"}})
        self.assertEqual(props["e"], {"type": "array", "uniqueItems": True, "items": {"type": "string"}})
        self.assertEqual(props["f"], {"type": "array", "uniqueItems": True, "items": {"type": "integer"}})
        self.assertEqual(
            props["g"],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": False,
                "minItems": 2,
                "maxItems": 2,
            },
        )
        self.assertEqual(props["h"], {"type": "array", "items": {"type": "integer"}})
        self.assertEqual(props["i"], {"type": "array"})
        self.assertEqual(props["j"], {"type": "array", "items": {"type": "array", "items": {"type": "boolean"}}})
        self.assertEqual(props["k"], {"type": "array", "maxItems": 0})

    def test_mappings(self):
        def run(
            a: dict[str, float],
            b: Dict[str, list[int]],
            c: dict,
            d: collections.abc.Mapping[str, str],
            e: Optional[dict[str, Any]] = None,
        ):
            pass

        props = schema_of(run)["properties"]
        self.assertEqual(props["a"], {"type": "object", "additionalProperties": {"type": "number"}})
        self.assertEqual(
            props["b"], {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}}
        )
        self.assertEqual(props["c"], {"type": "object"})
        self.assertEqual(props["d"], {"type": "object", "additionalProperties": {"type": "string"}})
        self.assertEqual(props["e"], {"anyOf": [{"type": "object", "additionalProperties": {}}, {"type": "null"}], "default": None})

    @unittest.skipIf(jsonschema is None, "jsonschema is not installed")
    def test_a_fixed_tuple_accepts_exactly_its_items(self):
        def run(pair: tuple[int, str]):
            pass

        validator = jsonschema.Draft202012Validator(schema_of(run))
        self.assertTrue(validator.is_valid({"pair": [1, "a"]}))
        self.assertFalse(validator.is_valid({"pair": [1]}))
        self.assertFalse(validator.is_valid({"pair": [1, "a", 2]}))
        self.assertFalse(validator.is_valid({"pair": ["a", 1]}))


class NamedTypes(unittest.TestCase):
    def test_enums_become_definitions_and_defaults_their_values(self):
        def run(color: Color = Color.BLUE, size: Size = Size.SMALL, mixed: Mixed = Mixed.TWO):
            pass

        schema = schema_of(run)
        self.assertEqual(schema["properties"]["color"], {"$ref": "#/$defs/Color", "default": "blue"})
        self.assertEqual(schema["properties"]["size"], {"$ref": "#/$defs/Size", "default": 1})
        self.assertEqual(
            schema["$defs"]["Color"], {"title": "Color", "enum": ["red", "blue"], "description": "A paint color."}
        )
        self.assertEqual(schema["$defs"]["Size"], {"title": "Size", "enum": [1, 3]})
        self.assertEqual(schema["$defs"]["Mixed"], {"title": "Mixed", "enum": [1, "two"]})

    def test_typeddicts(self):
        def run(address: Address, partial: Partial, person: WithOptionalKey, extended: ExtendedAddress):
            pass

        schema = schema_of(run)
        self.assertEqual(schema["properties"]["address"], {"$ref": "#/$defs/Address"})
        self.assertEqual(
            schema["$defs"]["Address"],
            {
                "title": "Address",
                "type": "object",
                "properties": {"street": {"type": "string", "description": "Street and number."}, "zip_code": {"type": "integer"}},
                "required": ["street", "zip_code"],
                "additionalProperties": False,
                "description": "A postal address.",
            },
        )
        self.assertEqual(schema["$defs"]["Partial"]["required"], ["must"], "total=False with one Required key")
        self.assertEqual(schema["$defs"]["Partial"]["properties"]["must"], {"type": "integer"})
        self.assertEqual(schema["$defs"]["WithOptionalKey"]["required"], ["name"])
        self.assertEqual(list(schema["$defs"]["ExtendedAddress"]["properties"]), ["street", "zip_code", "country"])
        self.assertEqual(schema["$defs"]["ExtendedAddress"]["required"], ["street", "zip_code", "country"])

    def test_dataclasses(self):
        def run(window: Window):
            pass

        schema = schema_of(run)
        self.assertEqual(
            schema["$defs"]["Window"],
            {
                "title": "Window",
                "type": "object",
                "properties": {
                    "days": {"type": "integer", "description": "How many days."},
                    "hourly": {"type": "boolean", "default": False},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["days"],
                "additionalProperties": False,
                "description": "The days to cover.",
            },
            "init=False fields are left out; a default_factory makes a field optional without a default",
        )

    def test_a_type_used_twice_is_defined_once_and_nested_types_get_their_own_definitions(self):
        def run(first: Holder, second: Optional[Holder] = None, colors: list[Color] = []):
            pass

        schema = schema_of(run)
        self.assertEqual(sorted(schema["$defs"]), ["Address", "Color", "Holder"])
        self.assertEqual(schema["properties"]["first"], {"$ref": "#/$defs/Holder"})
        self.assertEqual(schema["properties"]["second"]["anyOf"][0], {"$ref": "#/$defs/Holder"})
        self.assertEqual(schema["properties"]["colors"], {"type": "array", "items": {"$ref": "#/$defs/Color"}, "default": []})
        self.assertEqual(schema["$defs"]["Holder"]["properties"], {"address": {"$ref": "#/$defs/Address"}, "color": {"$ref": "#/$defs/Color"}})

    def test_recursive_types_refer_to_themselves(self):
        def run(tree: Tree):
            pass

        schema = schema_of(run)
        self.assertEqual(schema["$defs"]["Tree"]["properties"]["children"], {"type": "array", "items": {"$ref": "#/$defs/Tree"}})
        if jsonschema is not None:
            validator = jsonschema.Draft202012Validator(schema)
            self.assertTrue(validator.is_valid({"tree": {"label": "a", "children": [{"label": "b"}]}}))
            self.assertFalse(validator.is_valid({"tree": {"label": "a", "children": [{"children": []}]}}))

    def test_two_types_with_one_name_get_two_definitions(self):
        OtherWindow = other_window_class()

        def run(a: Window, b: OtherWindow):
            pass

        schema = schema_of(run)
        self.assertEqual(len(schema["$defs"]), 2)
        ref_a = schema["properties"]["a"]["$ref"].rsplit("/", 1)[1]
        ref_b = schema["properties"]["b"]["$ref"].rsplit("/", 1)[1]
        self.assertEqual(ref_a, "Window")
        self.assertNotEqual(ref_b, "Window")
        self.assertIn("hours", schema["$defs"][ref_b]["properties"])
        self.assertIn("days", schema["$defs"][ref_a]["properties"])

    @unittest.skipIf(jsonschema is None, "jsonschema is not installed")
    def test_definitions_validate_nested_input(self):
        def run(address: Address, color: Color = Color.RED):
            pass

        validator = jsonschema.Draft202012Validator(schema_of(run))
        self.assertTrue(validator.is_valid({"address": {"street": "Main 1", "zip_code": 1000}, "color": "blue"}))
        self.assertFalse(validator.is_valid({"address": {"street": "Main 1"}}))
        self.assertFalse(validator.is_valid({"address": {"street": "Main 1", "zip_code": 1, "x": 1}}))
        self.assertFalse(validator.is_valid({"address": {"street": "Main 1", "zip_code": 1}, "color": "green"}))


class Defaults(unittest.TestCase):
    def test_defaults_are_written_as_json(self):
        def run(
            when: datetime.date = datetime.date(2026, 1, 2),
            pair: tuple[int, int] = (1, 2),
            names: set[str] = frozenset({"b", "c", "a"}),
            window: Window = Window(days=2),
            key: uuid.UUID = uuid.UUID(int=1),
            nested: dict[str, list[Color]] = {"x": [Color.RED]},
        ):
            pass

        props = schema_of(run)["properties"]
        self.assertEqual(props["when"]["default"], "2026-01-02")
        self.assertEqual(props["pair"]["default"], [1, 2])
        self.assertEqual(props["names"]["default"], ["a", "b", "c"], "sets are sorted, so the schema is stable")
        self.assertEqual(props["window"]["default"], {"days": 2, "hourly": False, "tags": []}, "init=False left out")
        self.assertEqual(props["key"]["default"], "00000000-0000-0000-0000-000000000001")
        self.assertEqual(props["nested"]["default"], {"x": ["red"]})

    @unittest.skipIf(jsonschema is None, "jsonschema is not installed")
    def test_a_default_is_valid_input(self):
        def run(window: Window = Window(days=2), color: Color = Color.RED, names: set[str] = {"a"}):
            pass

        schema = schema_of(run)
        defaults = {name: prop["default"] for name, prop in schema["properties"].items()}
        jsonschema.Draft202012Validator(schema).validate(defaults)

    def test_defaults_without_a_json_form_are_refused(self):
        def nan(x: float = float("nan")):
            pass

        def thing(x: Any = object()):
            pass

        def keys(x: dict[str, int] = {1: 2}):
            pass

        for func, pattern in [
            (nan, r"parameter 'x': the default nan is not a JSON number"),
            (thing, r"parameter 'x': the default <object object at .*> cannot be written as JSON"),
            (keys, r"parameter 'x': the default \{1: 2\} has keys that are not strings"),
        ]:
            with self.subTest(func.__name__), self.assertRaisesRegex(ti.SignatureError, pattern):
                ti.derive_schema(func)


class AnnotatedDescriptions(unittest.TestCase):
    def test_annotated_is_transparent_and_may_carry_a_description(self):
        def run(a: Annotated[int, "How many."], b: Annotated[str, object()], c: Annotated[str, "Ignored."]):
            """Do it.

            Args:
                c: From the docstring.
            """

        props = schema_of(run)["properties"]
        self.assertEqual(props["a"], {"type": "integer", "description": "How many."})
        self.assertEqual(props["b"], {"type": "string"})
        self.assertEqual(props["c"], {"type": "string", "description": "From the docstring."}, "the docstring wins")


class Docstrings(unittest.TestCase):
    def test_google(self):
        doc = ti.parse_docstring(
            """Fetch the weather.
            Second summary line.

            Longer text that is not the summary.

            Args:
                city (str): The city.
                days (int, optional): How many
                    days ahead.
                unit:
                    Degrees, on the next line.
                *extras: Star names lose their stars.

            Returns:
                dict: Not a parameter.
            """
        )
        self.assertEqual(doc.summary, "Fetch the weather. Second summary line.")
        self.assertEqual(
            doc.params,
            {
                "city": "The city.",
                "days": "How many days ahead.",
                "unit": "Degrees, on the next line.",
                "extras": "Star names lose their stars.",
            },
        )

    def test_google_description_may_contain_colons(self):
        doc = ti.parse_docstring("Do.\n\nArgs:\n    url: Where to go: a full URL.\n    mode: One of a: b.\n")
        self.assertEqual(doc.params, {"url": "Where to go: a full URL.", "mode": "One of a: b."})

    def test_rest(self):
        doc = ti.parse_docstring(
            """Summary line.

            :param a: The first,
                continued.
            :param str b: The second.
            :type b: str
            :keyword c: The third.
            :returns: Nothing.
            """
        )
        self.assertEqual(doc.summary, "Summary line.")
        self.assertEqual(doc.params, {"a": "The first, continued.", "b": "The second.", "c": "The third."})

    def test_numpy(self):
        doc = ti.parse_docstring(
            """Summary.

            Parameters
            ----------
            a : int
                The number
                to use.
            b, c : str
                Both of these.
            flag

            Returns
            -------
            str
                Not a parameter.
            """
        )
        self.assertEqual(doc.summary, "Summary.")
        self.assertEqual(doc.params, {"a": "The number to use.", "b": "Both of these.", "c": "Both of these.", "flag": ""})

    def test_a_docstring_that_starts_with_a_section_has_no_summary(self):
        self.assertEqual(ti.parse_docstring("Args:\n    a: The a.\n").summary, "")
        self.assertEqual(ti.parse_docstring(":param a: The a.").summary, "")
        self.assertEqual(ti.parse_docstring("Parameters\n----------\na : int\n    The a.\n").summary, "")

    def test_a_summary_may_end_in_a_colon(self):
        self.assertEqual(ti.parse_docstring("Look up the following:\n\nArgs:\n    a: The a.").summary, "Look up the following:")
        self.assertEqual(ti.parse_docstring("Do it.\nReturns:\n    Nothing.").summary, "Do it.")

    def test_empty_and_missing_docstrings(self):
        self.assertEqual(ti.parse_docstring(None), ti.Docstring())
        self.assertEqual(ti.parse_docstring("   \n  "), ti.Docstring())
        self.assertEqual(ti.parse_docstring(42), ti.Docstring())

    def test_descriptions_reach_the_schema_in_each_style(self):
        def rest(a: int):
            """:param a: reST."""

        def numpy(a: int):
            """Parameters
            ----------
            a : int
                NumPy.
            """

        self.assertEqual(schema_of(rest)["properties"]["a"]["description"], "reST.")
        self.assertEqual(schema_of(numpy)["properties"]["a"]["description"], "NumPy.")
        self.assertNotIn("description", schema_of(rest), "no summary, no description")

    def test_descriptions_of_unknown_parameters_are_ignored(self):
        def run(a: int):
            """Do.

            Args:
                a: Known.
                ghost: Not a parameter.
            """

        self.assertEqual(list(schema_of(run)["properties"]), ["a"])


class Context(unittest.TestCase):
    def test_context_is_recognized_and_left_out(self):
        def run(city: str, context):
            pass

        schema, takes_context = derive(run)
        self.assertTrue(takes_context)
        self.assertEqual(list(schema["properties"]), ["city"])
        self.assertEqual(schema["required"], ["city"])

    def test_context_may_be_annotated_with_anything_and_come_first(self):
        def run(context: "NameNobodyDefined", city: str = "x"):  # noqa: F821 - never evaluated
            pass

        schema, takes_context = derive(run)
        self.assertTrue(takes_context)
        self.assertEqual(list(schema["properties"]), ["city"])

    def test_keyword_only_context(self):
        def run(*, context=None):
            pass

        schema, takes_context = derive(run)
        self.assertTrue(takes_context)
        self.assertEqual(schema["properties"], {})


class BadSignatures(unittest.TestCase):
    def assertRefused(self, func, pattern):
        with self.assertRaisesRegex(ti.SignatureError, pattern):
            ti.derive_schema(func)

    def test_variadic_parameters(self):
        def star(a: int, *items: int):
            pass

        def stars(a: int, **options: str):
            pass

        self.assertRefused(star, r"^parameter '\*items': \*items cannot be described .* \(for example `items: list\[str\]`\)$")
        self.assertRefused(stars, r"^parameter '\*\*options': \*\*options cannot be described")

    def test_missing_annotation(self):
        def run(a: int, b):
            pass

        self.assertRefused(run, r"^parameter 'b' has no type annotation; add one, for example `b: str`$")

    def test_positional_only(self):
        def run(a: int, /, b: int):
            pass

        self.assertRefused(run, r"^parameter 'a' is positional-only")

    def test_unsupported_annotations_name_parameter_and_annotation(self):
        def raw(data: bytes):
            pass

        def number(z: complex = 1j):
            pass

        def keys(m: dict[int, str]):
            pass

        def inner(h: list[BytesField]):
            pass

        def enum_value(b: Bad):
            pass

        self.assertRefused(raw, r"^parameter 'data': the annotation bytes has no JSON Schema equivalent \(supported: str, ")
        self.assertRefused(number, r"^parameter 'z': the annotation complex has no JSON Schema")
        self.assertRefused(keys, r"^parameter 'm': in dict\[int, str\] the keys are int, .* use dict\[str, \.\.\.\]")
        self.assertRefused(inner, r"^parameter 'h', field BytesField\.data: the annotation bytes has no JSON Schema")
        self.assertRefused(enum_value, r"^parameter 'b': the enum test_toolsmith_introspect\.Bad has the value b'bytes'")

    def test_an_annotation_that_does_not_evaluate(self):
        def run(a: int, b: "Missing"):  # noqa: F821 - the point of the test
            pass

        self.assertRefused(run, r"^parameter 'b': the annotation 'Missing' cannot be evaluated: NameError")


@unittest.skipIf(pydantic is None, "pydantic is not installed")
class PydanticModels(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        class Inner(pydantic.BaseModel):
            """The inner part."""

            level: int = pydantic.Field(default=1, ge=0, description="How deep.")

        class Outer(pydantic.BaseModel):
            name: str
            inner: Inner
            extra: Optional[Inner] = None

        cls.Inner, cls.Outer = Inner, Outer

    def test_nested_models_share_one_set_of_definitions(self):
        Inner, Outer = self.Inner, self.Outer

        def run(payload: Outer, also: list[Inner] = [], maybe: Optional[Outer] = None):
            """Take models.

            Args:
                payload: The main model.
            """

        schema = schema_of(run)
        self.assertEqual(schema["properties"]["payload"], {"$ref": "#/$defs/Outer", "description": "The main model."})
        self.assertEqual(schema["properties"]["also"], {"type": "array", "items": {"$ref": "#/$defs/Inner"}, "default": []})
        self.assertEqual(schema["properties"]["maybe"], {"anyOf": [{"$ref": "#/$defs/Outer"}, {"type": "null"}], "default": None})
        self.assertEqual(sorted(schema["$defs"]), ["Inner", "Outer"])
        self.assertEqual(schema["$defs"]["Outer"]["properties"]["inner"], {"$ref": "#/$defs/Inner"})
        self.assertEqual(schema["$defs"]["Outer"]["required"], ["name", "inner"])
        self.assertEqual(schema["$defs"]["Inner"]["description"], "The inner part.")
        level = schema["$defs"]["Inner"]["properties"]["level"]
        self.assertEqual((level["type"], level["minimum"], level["default"], level["description"]), ("integer", 0, 1, "How deep."))

    def test_a_model_default_is_dumped_as_json(self):
        Inner = self.Inner

        def run(inner: Inner = Inner(level=4)):
            pass

        self.assertEqual(schema_of(run)["properties"]["inner"], {"$ref": "#/$defs/Inner", "default": {"level": 4}})

    def test_a_model_inside_a_dataclass(self):
        Inner = self.Inner

        @dataclasses.dataclass
        class Box:
            inner: Inner

        def run(box: Box):
            pass

        schema = schema_of(run)
        self.assertEqual(schema["$defs"]["Box"]["properties"]["inner"], {"$ref": "#/$defs/Inner"})
        self.assertIn("Inner", schema["$defs"])

    def test_a_stdlib_type_named_like_a_model_gets_another_name(self):
        Inner = self.Inner

        @dataclasses.dataclass
        class Outer:
            inner: Inner

        def run(a: Outer, b: self.Outer):
            pass

        schema = schema_of(run)
        self.assertEqual(schema["properties"]["b"], {"$ref": "#/$defs/Outer"}, "the pydantic model keeps its name")
        dataclass_ref = schema["properties"]["a"]["$ref"].rsplit("/", 1)[1]
        self.assertNotEqual(dataclass_ref, "Outer")
        self.assertEqual(schema["$defs"][dataclass_ref]["properties"], {"inner": {"$ref": "#/$defs/Inner"}})

    @unittest.skipIf(jsonschema is None, "jsonschema is not installed")
    def test_the_schema_validates_model_input(self):
        Outer = self.Outer

        def run(payload: Outer):
            pass

        validator = jsonschema.Draft202012Validator(schema_of(run))
        self.assertTrue(validator.is_valid({"payload": {"name": "a", "inner": {"level": 2}}}))
        self.assertFalse(validator.is_valid({"payload": {"name": "a", "inner": {"level": -1}}}))
        self.assertFalse(validator.is_valid({"payload": {"name": "a"}}))

    def test_a_model_pydantic_cannot_describe_names_the_parameter(self):
        class Opaque:
            pass

        class Holder(pydantic.BaseModel):
            model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
            thing: Opaque

        def run(holder: Holder):
            pass

        with self.assertRaisesRegex(ti.SignatureError, r"^parameter 'holder': pydantic cannot describe the model .*Holder"):
            ti.derive_schema(run)


def returning(annotation):
    """A function whose return annotation is ``annotation``."""

    def run():
        pass

    run.__annotations__ = {"return": annotation}
    return run


def output_of(func):
    """``derive_output_schema(func)``, a schema checked against the 2020-12 meta-schema when possible."""
    schema, problem = ti.derive_output_schema(func)
    if schema is not None:
        json.dumps(schema, allow_nan=False)  # the schema must be plain JSON data
        if jsonschema is not None:
            jsonschema.Draft202012Validator.check_schema(schema)
    return schema, problem


class Mood(str, enum.Enum):
    HAPPY = "happy"
    GRUMPY = "grumpy"


@dataclasses.dataclass
class Forecast:
    """A day's forecast.

    Attributes:
        city: Where.
    """

    city: str
    windows: list[Window]
    by_hour: dict[str, Window]
    mood: Mood = Mood.HAPPY
    note: Optional[str] = None


class Reading(TypedDict):
    celsius: float
    station: NotRequired[str]


class OutputSchemas(unittest.TestCase):
    """The schema of what the harness writes for a tool's result, from the return annotation."""

    def test_scalars_collections_and_unions(self):
        cases = [
            (str, {"type": "string"}),
            (int, {"type": "integer"}),
            (float, {"type": "number"}),
            (bool, {"type": "boolean"}),
            (None, {"type": "null"}),
            (Any, {}),
            (dict, {"type": "object"}),
            (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
            (Dict[str, List[float]], {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "number"}}}),
            (list[str], {"type": "array", "items": {"type": "string"}}),
            (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
            (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
            (Literal["ok", "late"], {"enum": ["ok", "late"]}),
            (tuple[int, str], {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False, "minItems": 2, "maxItems": 2}),
            (Annotated[int, "a count"], {"type": "integer"}),
        ]
        for annotation, expected in cases:
            with self.subTest(annotation=annotation):
                self.assertEqual(output_of(returning(annotation)), (expected, None))

    def test_no_return_annotation_means_no_schema_and_nothing_to_report(self):
        def run(x: int):
            return x

        self.assertEqual(ti.derive_output_schema(run), (None, None))

    def test_dataclasses_have_every_field_they_write_and_typeddicts_their_keys(self):
        schema, problem = output_of(returning(Forecast))
        self.assertIsNone(problem)
        self.assertEqual(schema["$ref"], "#/$defs/Forecast")
        forecast = schema["$defs"]["Forecast"]
        self.assertEqual(forecast["description"], "A day's forecast.")
        self.assertEqual(forecast["properties"]["city"], {"type": "string", "description": "Where."})
        self.assertEqual(forecast["required"], ["city", "windows", "by_hour", "mood", "note"], "defaults are written too")
        self.assertEqual(forecast["properties"]["windows"], {"type": "array", "items": {"$ref": "#/$defs/Window"}})
        self.assertEqual(schema["$defs"]["Mood"]["enum"], ["happy", "grumpy"])
        window = schema["$defs"]["Window"]
        self.assertEqual(list(window["properties"]), ["days", "hourly", "tags", "computed"], "init=False fields are written")
        self.assertEqual(window["required"], ["days", "hourly", "tags", "computed"])
        self.assertNotIn("default", window["properties"]["hourly"])

        schema, problem = output_of(returning(list[Reading]))
        self.assertIsNone(problem)
        self.assertEqual(schema["items"], {"$ref": "#/$defs/Reading"})
        self.assertEqual(schema["$defs"]["Reading"]["required"], ["celsius"])

    def test_what_the_harness_cannot_write_has_no_schema_and_a_reason(self):
        cases = [
            (set[int], "set[int] has no JSON form in a result; return a list"),
            (datetime.datetime, "datetime.datetime has no JSON form in a result; return it as a str"),
            (collections.abc.Iterable[int], "may be an iterator"),
            (Color, f"the enum {__name__}.Color has no JSON form in a result"),
            (list[Window], f"the dataclass {__name__}.Window is written as JSON only as the result or inside another dataclass"),
            (dict[str, Window], "is written as JSON only as the result or inside another dataclass"),
            (Holder, "field Holder.color: the enum"),
            (dict[int, str], "JSON object keys are always strings"),
            (bytes, "the annotation bytes has no JSON Schema equivalent"),
            ("Missing", "the return value: the annotation 'Missing' cannot be evaluated: NameError"),
        ]
        for annotation, reason in cases:
            with self.subTest(annotation=annotation):
                schema, problem = output_of(returning(annotation))
                self.assertIsNone(schema)
                self.assertTrue(problem.startswith("the return value"), problem)
                self.assertIn(reason, problem)

    @unittest.skipIf(pydantic is None, "pydantic is not installed")
    def test_pydantic_models_as_they_serialize_and_only_as_the_whole_result(self):
        class Place(pydantic.BaseModel):
            city: str
            country: str = "NL"

            @pydantic.computed_field
            @property
            def label(self) -> str:
                return f"{self.city}, {self.country}"

        schema, problem = output_of(returning(Optional[Place]))
        self.assertIsNone(problem)
        self.assertEqual(schema["anyOf"], [{"$ref": "#/$defs/Place"}, {"type": "null"}])
        place = schema["$defs"]["Place"]
        self.assertIn("label", place["properties"], "computed fields are part of what a model writes")
        self.assertIn("label", place["required"])

        schema, problem = output_of(returning(list[Place]))
        self.assertIsNone(schema)
        self.assertIn("is written as JSON only as the whole result", problem)

    @unittest.skipIf(jsonschema is None, "jsonschema is not installed")
    def test_the_schema_describes_what_the_harness_writes(self):
        import toolsmith_harness as harness

        window = Window(days=2, tags=["rain"])
        results = [
            (str, "plain text"),
            (Optional[dict[str, int]], {"a": 1}),
            (Optional[dict[str, int]], None),
            (tuple[int, str], (1, "x")),
            (Forecast, Forecast(city="Utrecht", windows=[window], by_hour={"09": window}, mood=Mood.GRUMPY)),
            (list[Reading], [{"celsius": 11.5}, {"celsius": 3, "station": "De Bilt"}]),
            (Tree, Tree("root", [Tree("leaf")])),
        ]
        if pydantic is not None:

            class Place(pydantic.BaseModel):
                city: str
                when: datetime.date

            results.append((Place, Place(city="Utrecht", when=datetime.date(2024, 5, 1))))
        for annotation, value in results:
            with self.subTest(annotation=annotation):
                schema, problem = output_of(returning(annotation))
                self.assertIsNone(problem)
                text = harness.result_text(value)
                written = text if isinstance(value, str) else json.loads(text)
                jsonschema.Draft202012Validator(schema).validate(written)


class Entrypoints(unittest.TestCase):
    """``introspect()`` against modules written to a temporary directory on ``sys.path``."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        sys.path.insert(0, self.dir.name)

    def tearDown(self):
        sys.path.remove(self.dir.name)
        for name in [m for m in sys.modules if m.startswith("sample_")]:
            del sys.modules[name]
        self.dir.cleanup()

    def module(self, name, source):
        path = os.path.join(self.dir.name, *name.split(".")) + ".py"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(source))

    def test_a_good_entrypoint_in_a_package(self):
        self.module("sample_pkg.__init__", "")
        self.module(
            "sample_pkg.tool",
            '''
            def run(x: int, context=None) -> str:
                """Double it.

                Args:
                    x: The number.
                """
                return str(2 * x)
            ''',
        )
        result = ti.introspect("sample_pkg.tool:run")
        self.assertEqual(
            result,
            {
                "ok": True,
                "input_schema": {
                    "type": "object",
                    "description": "Double it.",
                    "properties": {"x": {"type": "integer", "description": "The number."}},
                    "required": ["x"],
                    "additionalProperties": False,
                },
                "takes_context": True,
                "output_schema": {"type": "string"},
                "output_schema_problem": None,
            },
        )

    def test_an_output_schema_that_cannot_be_derived_is_reported_and_the_input_schema_kept(self):
        self.module(
            "sample_tags",
            """
            def run(text: str) -> set[str]:
                return set(text.split())
            """,
        )
        result = ti.introspect("sample_tags:run")
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["input_schema"]["required"], ["text"])
        self.assertIsNone(result["output_schema"])
        self.assertEqual(
            result["output_schema_problem"], "the return value: set[str] has no JSON form in a result; return a list"
        )

    def test_string_annotations_are_evaluated_in_the_tools_module(self):
        self.module(
            "sample_future",
            """
            from __future__ import annotations
            from typing import TYPE_CHECKING, NotRequired, Optional, TypedDict
            if TYPE_CHECKING:
                from somewhere import Context

            class Options(TypedDict):
                size: int
                label: NotRequired[str]

            def run(options: Options, note: Optional[str] = None, context: Context = None) -> Options:
                return options
            """,
        )
        result = ti.introspect("sample_future:run")
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["output_schema"]["$ref"], "#/$defs/Options")
        self.assertEqual(result["output_schema"]["$defs"]["Options"]["required"], ["size"])
        schema = result["input_schema"]
        self.assertEqual(schema["properties"]["note"]["anyOf"], [{"type": "string"}, {"type": "null"}])
        self.assertEqual(schema["$defs"]["Options"]["required"], ["size"], "NotRequired seen through string annotations")
        self.assertTrue(result["takes_context"])

    def test_a_decorated_entrypoint_keeps_its_signature(self):
        self.module(
            "sample_decorated",
            """
            import functools

            def logged(func):
                @functools.wraps(func)
                def wrapper(*args, **kwargs):
                    return func(*args, **kwargs)
                return wrapper

            @logged
            def run(city: str, days: int = 1) -> str:
                return city
            """,
        )
        result = ti.introspect("sample_decorated:run")
        self.assertTrue(result["ok"], result)
        self.assertEqual(result["input_schema"]["required"], ["city"])

    def test_a_bound_method(self):
        self.module(
            "sample_method",
            """
            class Weather:
                def forecast(self, city: str, days: int = 1) -> str:
                    return city

            run = Weather().forecast
            """,
        )
        result = ti.introspect("sample_method:run")
        self.assertTrue(result["ok"], result)
        self.assertEqual(list(result["input_schema"]["properties"]), ["city", "days"], "self is not an input")

    def test_a_missing_dependency(self):
        self.module("sample_needs_dep", "import requests_that_are_not_installed\ndef run(x: int): pass\n")
        result = ti.introspect("sample_needs_dep:run")
        self.assertEqual(result["error_kind"], "import_error")
        self.assertEqual(
            result["message"],
            "importing sample_needs_dep failed: No module named 'requests_that_are_not_installed'; "
            "is the package that provides it listed in [project] dependencies in pyproject.toml?",
        )
        self.assertTrue(result["traceback"].startswith("Traceback (most recent call last):\n"))
        self.assertIn("sample_needs_dep.py\", line 1", result["traceback"])
        self.assertNotIn("toolsmith_introspect.py", result["traceback"], "the tool's frames only")
        self.assertNotIn("importlib", result["traceback"])

    def test_a_missing_entrypoint_module(self):
        result = ti.introspect("sample_nowhere.tool:run")
        self.assertEqual(result["error_kind"], "import_error")
        self.assertEqual(
            result["message"],
            "the entrypoint's module sample_nowhere.tool was not found: the project has no sample_nowhere.py "
            "and no sample_nowhere/ package; check [tool.toolsmith] entrypoint in pyproject.toml",
        )

    def test_a_missing_module_of_the_project_itself(self):
        self.module("sample_proj.__init__", "")
        self.module("sample_proj.tool", "from sample_proj import helpers\n")
        result = ti.introspect("sample_proj.tool:run")
        self.assertEqual(result["error_kind"], "import_error")
        self.assertIn("helpers", result["message"])

    def test_code_that_raises_or_exits_at_import(self):
        self.module("sample_raises", "raise RuntimeError('no config file')\n")
        self.module("sample_exits", "import sys\nsys.exit(3)\n")
        self.module("sample_syntax", "def run(x: int)\n    pass\n")
        raised = ti.introspect("sample_raises:run")
        self.assertEqual(raised["error_kind"], "import_error")
        self.assertEqual(raised["message"], "importing sample_raises failed: RuntimeError: no config file")
        self.assertIn('sample_raises.py", line 1, in <module>', raised["traceback"])
        exited = ti.introspect("sample_exits:run")
        self.assertEqual(exited["message"], "importing sample_exits failed: it called sys.exit(3) while being imported")
        syntax = ti.introspect("sample_syntax:run")
        self.assertEqual(syntax["error_kind"], "import_error")
        self.assertRegex(syntax["message"], r"SyntaxError: .*sample_syntax\.py, line 1")

    def test_not_functions(self):
        self.module(
            "sample_values",
            """
            import functools
            value = 3
            class Tool:
                pass
            async def later(x: int):
                pass
            def numbers(x: int):
                yield x
            def real(x: int):
                pass
            partial = functools.partial(real, 1)
            builtin = len
            """,
        )
        cases = {
            "sample_values:value": "sample_values:value is not a function but a value of type int",
            "sample_values:Tool": "sample_values:Tool is a class, not a function; point the entrypoint at a function defined with def",
            "sample_values:later": "sample_values:later is an async function; tool entrypoints must be plain functions defined with def",
            "sample_values:numbers": "sample_values:numbers is a generator function (it uses yield); return the result instead",
            "sample_values:partial": "sample_values:partial is not a function defined with def but a functools.partial",
            "sample_values:builtin": "sample_values:builtin is not a function defined with def but a builtin_function_or_method",
            "sample_values:reel": "sample_values has no function 'reel'; did you mean 'real'?",
            "sample_values:zzz": "sample_values has no function 'zzz'; it defines later, numbers, real",
            "sample_values": "the entrypoint 'sample_values' must have the form package.module:function (for example my_tool.tool:run)",
            "sample_values:": "the entrypoint 'sample_values:' must have the form package.module:function (for example my_tool.tool:run)",
            "sample values:run": "the entrypoint 'sample values:run' must have the form package.module:function (for example my_tool.tool:run)",
        }
        for spec, message in cases.items():
            with self.subTest(spec):
                result = ti.introspect(spec)
                self.assertEqual((result["ok"], result["error_kind"], result["message"]), (False, "not_a_function", message))

    def test_bad_signatures_are_reported_with_the_entrypoint(self):
        self.module("sample_bad", "def run(city, days: int = 1):\n    pass\n")
        result = ti.introspect("sample_bad:run")
        self.assertEqual(
            result,
            {
                "ok": False,
                "error_kind": "bad_signature",
                "message": "sample_bad:run: parameter 'city' has no type annotation; add one, for example `city: str`",
                "traceback": "",
            },
        )


class CommandLine(unittest.TestCase):
    """The script as the server runs it: a separate interpreter, the project on PYTHONPATH."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def run_script(self, *args, source=None):
        if source is not None:
            with open(os.path.join(self.dir.name, "sample_cli.py"), "w") as f:
                f.write(textwrap.dedent(source))
        env = {**os.environ, "PYTHONPATH": self.dir.name, "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.run(
            [sys.executable, SCRIPT, *args], cwd=self.dir.name, env=env, capture_output=True, text=True, timeout=60
        )

    def test_prints_one_json_object_even_when_the_tool_prints_at_import(self):
        done = self.run_script(
            "sample_cli:run",
            source="""
            import os, sys
            print("hello from print")
            sys.stdout.flush()
            os.write(1, b"hello from the file descriptor\\n")
            def run(x: int) -> int:
                return x
            """,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.count("\n"), 1)
        answer = json.loads(done.stdout)
        self.assertEqual(answer["ok"], True)
        self.assertEqual(answer["input_schema"]["properties"], {"x": {"type": "integer"}})
        self.assertIn("hello from print", done.stderr)
        self.assertIn("hello from the file descriptor", done.stderr)

    def test_errors_are_answers_and_exit_zero(self):
        done = self.run_script("sample_cli:run", source="raise ValueError('boom')\n")
        self.assertEqual(done.returncode, 0, done.stderr)
        answer = json.loads(done.stdout)
        self.assertEqual(sorted(answer), ["error_kind", "message", "ok", "traceback"])
        self.assertEqual((answer["ok"], answer["error_kind"]), (False, "import_error"))
        self.assertIn("ValueError: boom", answer["traceback"])

    def test_a_usage_error_exits_non_zero(self):
        done = self.run_script()
        self.assertEqual(done.returncode, 2)
        self.assertEqual(done.stdout, "")
        self.assertIn("usage:", done.stderr)


if __name__ == "__main__":
    unittest.main()
