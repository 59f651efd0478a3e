"""Tests of the input schema derivation (stdlib only; pydantic cases skip without pydantic)."""

import dataclasses
import enum
import os
import sys
import tempfile
import textwrap
import typing
import unittest
from typing import Literal, Optional, TypedDict

import toolsmith_introspect as ti

try:
    import pydantic
except ImportError:  # pragma: no cover - depends on the machine
    pydantic = None


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(TypedDict):
    street: str
    zip_code: int


@dataclasses.dataclass
class Window:
    days: int
    hourly: bool = False


class DerivedSchemas(unittest.TestCase):
    def test_scalars_defaults_and_required(self):
        def run(name: str, count: int, ratio: float = 0.5, loud: bool = False) -> str:
            """Say hello.

            Args:
                name: Who to greet.
                count: How many times,
                    at least once.
                ratio: Unused.
            """

        schema, takes_context = ti.derive_schema(run)
        self.assertFalse(takes_context)
        self.assertEqual(schema["description"], "Say hello.")
        self.assertEqual(schema["required"], ["name", "count"])
        self.assertFalse(schema["additionalProperties"])
        self.assertEqual(schema["properties"]["name"], {"type": "string", "description": "Who to greet."})
        self.assertEqual(schema["properties"]["count"], {"type": "integer", "description": "How many times, at least once."})
        self.assertEqual(schema["properties"]["ratio"], {"type": "number", "description": "Unused.", "default": 0.5})
        self.assertEqual(schema["properties"]["loud"], {"type": "boolean", "default": False})

    def test_optional_literal_lists_dicts_enums(self):
        def run(
            city: Optional[str],
            unit: Literal["c", "f"] = "c",
            tags: list[str] = [],
            weights: dict[str, float] | None = None,
            color: Color = Color.RED,
            pair: tuple[int, str] = (1, "a"),
        ):
            pass

        props = ti.derive_schema(run)[0]["properties"]
        self.assertEqual(props["city"], {"anyOf": [{"type": "string"}, {"type": "null"}]})
        self.assertEqual(props["unit"], {"enum": ["c", "f"], "default": "c"})
        self.assertEqual(props["tags"], {"type": "array", "items": {"type": "string"}, "default": []})
        self.assertEqual(props["weights"]["anyOf"][0], {"type": "object", "additionalProperties": {"type": "number"}})
        self.assertEqual(props["color"], {"$ref": "#/$defs/Color", "default": "red"})
        self.assertEqual(props["pair"]["prefixItems"], [{"type": "integer"}, {"type": "string"}])

    def test_typeddict_and_dataclass_become_definitions(self):
        def run(address: Address, window: Window, context=None):
            pass

        schema, takes_context = ti.derive_schema(run)
        self.assertTrue(takes_context, "context is recognized")
        self.assertNotIn("context", schema["properties"])
        self.assertEqual(schema["properties"]["address"], {"$ref": "#/$defs/Address"})
        self.assertEqual(schema["$defs"]["Address"]["required"], ["street", "zip_code"])
        self.assertEqual(schema["$defs"]["Address"]["properties"]["zip_code"], {"type": "integer"})
        self.assertEqual(schema["$defs"]["Window"]["required"], ["days"])
        self.assertEqual(schema["$defs"]["Window"]["properties"]["hourly"], {"type": "boolean", "default": False})

    def test_rest_and_numpy_docstrings(self):
        def rest(a: int, b: str):
            """Summary line.

            :param a: The first.
            :param str b: The second.
            """

        def numpy(a: int):
            """Summary.

            Parameters
            ----------
            a : int
                The number
                to use.

            Returns
            -------
            str
            """

        self.assertEqual(ti.derive_schema(rest)[0]["properties"]["b"]["description"], "The second.")
        self.assertEqual(ti.derive_schema(numpy)[0]["properties"]["a"]["description"], "The number to use.")

    def test_bad_signatures_name_the_parameter(self):
        def star(*args: int):
            pass

        def bare(x):
            pass

        def keys(m: dict[int, str]):
            pass

        def weird(x: complex):
            pass

        for func, needle in [(star, "*args"), (bare, "no type annotation"), (keys, "keys must be str"), (weird, "complex")]:
            with self.assertRaises(ti.SignatureError) as caught:
                ti.derive_schema(func)
            self.assertIn(needle, str(caught.exception))
            self.assertIn("parameter '", str(caught.exception))

    @unittest.skipIf(pydantic is None, "pydantic is not installed")
    def test_pydantic_models_nest(self):
        class Inner(pydantic.BaseModel):
            level: int = 1

        class Outer(pydantic.BaseModel):
            name: str
            inner: Inner

        def run(payload: Outer):
            pass

        schema = ti.derive_schema(run)[0]
        self.assertEqual(schema["properties"]["payload"], {"$ref": "#/$defs/Outer"})
        self.assertEqual(schema["$defs"]["Outer"]["properties"]["inner"], {"$ref": "#/$defs/Inner"})
        self.assertIn("Inner", schema["$defs"])


class Entrypoints(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        sys.path.insert(0, self.dir.name)

    def tearDown(self):
        sys.path.remove(self.dir.name)
        for name in [m for m in sys.modules if m.startswith("sample_")]:
            del sys.modules[name]
        self.dir.cleanup()

    def module(self, name, source):
        with open(os.path.join(self.dir.name, f"{name}.py"), "w") as f:
            f.write(textwrap.dedent(source))

    def test_a_good_entrypoint(self):
        self.module("sample_good", "def run(x: int) -> str:\n    return str(x)\n")
        result = ti.introspect("sample_good:run")
        self.assertTrue(result["ok"])
        self.assertEqual(result["input_schema"]["required"], ["x"])

    def test_import_errors_carry_the_traceback(self):
        self.module("sample_broken", "import does_not_exist_anywhere\n")
        result = ti.introspect("sample_broken:run")
        self.assertEqual(result["error_kind"], "import_error")
        self.assertIn("does_not_exist_anywhere", result["message"])
        self.assertIn("Traceback", result["traceback"])

    def test_not_functions(self):
        self.module("sample_values", "run = 3\nclass Tool:\n    pass\nasync def later(x: int):\n    pass\n")
        for spec in ["sample_values:run", "sample_values:Tool", "sample_values:missing", "sample_values:later", "sample_values"]:
            self.assertEqual(ti.introspect(spec)["error_kind"], "not_a_function", spec)


if __name__ == "__main__":
    unittest.main()
