"""Tests of the zygote harness, run as a plain subprocess (the sandbox is tested from Rust).

Run with ``python3 -m unittest discover -s crates/runtime/python``.
"""

import dataclasses
import enum
import json
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import unittest

import toolsmith_harness as harness

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toolsmith_harness.py")


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class ConversionTest(unittest.TestCase):
    def test_dataclasses_enums_and_lists_of_them_are_built_from_json(self):
        self.assertEqual(harness._convert({"x": 1, "y": 2}, Point), Point(1, 2))
        self.assertIs(harness._convert("red", Color), Color.RED)
        self.assertEqual(harness._convert([{"x": 1, "y": 2}], list[Point]), [Point(1, 2)])
        self.assertIsNone(harness._convert(None, Point | None))
        self.assertEqual(harness._convert({"x": 3, "y": 4}, Point | None), Point(3, 4))

    def test_plain_values_pass_through(self):
        self.assertEqual(harness._convert({"a": 1}, dict), {"a": 1})
        self.assertEqual(harness._convert("text", str), "text")


class Session:
    """A harness process with a tool module written into a temporary project."""

    def __init__(self, source: str, env: dict | None = None, limits: dict | None = None):
        self.project = tempfile.TemporaryDirectory()
        with open(os.path.join(self.project.name, "tool_under_test.py"), "w") as f:
            f.write(textwrap.dedent(source))
        code = (
            "import sys, toolsmith_harness as h; "
            f"h.PROJECT_DIR = {self.project.name!r}; h.SCRATCH_ROOT = {self.project.name!r}; "
            "sys.exit(h.main())"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=os.path.dirname(HARNESS),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        start = {
            "entrypoint": "tool_under_test:run",
            "takes_context": "context" in source,
            "env": env or {},
            "limits": limits or {"output_bytes": 1024},
        }
        self.send(ord("S"), 0, json.dumps(start).encode())
        kind, _, payload = self.receive()
        self.assert_kind(kind, "Y")
        self.ready = json.loads(payload)
        self.next_id = 1

    def send(self, kind: int, ident: int, payload: bytes) -> None:
        self.process.stdin.write(struct.pack(">IBQ", 9 + len(payload), kind, ident) + payload)
        self.process.stdin.flush()

    def receive(self) -> tuple[int, int, bytes]:
        (length,) = struct.unpack(">I", self.process.stdout.read(4))
        frame = self.process.stdout.read(length)
        kind, ident = struct.unpack(">BQ", frame[:9])
        return kind, ident, frame[9:]

    @staticmethod
    def assert_kind(kind: int, expected: str) -> None:
        if kind != ord(expected):
            raise AssertionError(f"expected a {expected!r} frame, got {chr(kind)!r}")

    def invoke(self, arguments: dict, context: dict | None = None) -> dict:
        """Sends a request and returns the answer as one dict, the way the server reads it:
        the child's answer with the zygote's ``logs`` and ``truncated`` beside it."""
        body = json.dumps({"input": arguments, "context": context or {}}).encode()
        ident = self.next_id
        self.send(ord("R"), ident, struct.pack(">I", len(body)) + body)
        self.next_id += 1
        kind, answered, payload = self.receive()
        if answered != ident:
            raise AssertionError(f"answer for {answered}, expected {ident}")
        (length,) = struct.unpack(">I", payload[:4])
        body, rest = payload[4 : 4 + length], payload[4 + length :]
        if kind == ord("A"):
            answer = json.loads(body)
        else:
            self.assert_kind(kind, "C")
            answer = {"crashed": True, "status": body.decode()}
        answer["truncated"] = bool(rest[0])
        answer["logs"] = rest[1:].decode("utf-8", "replace")
        return answer

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()
        self.project.cleanup()


class ZygoteTest(unittest.TestCase):
    def test_each_invocation_starts_from_the_imported_state(self):
        session = Session(
            """
            calls = 0
            def run() -> int:
                global calls
                calls += 1
                return calls
            """
        )
        try:
            self.assertEqual(session.ready, {"ready": True})
            answers = [session.invoke({}) for _ in range(3)]
            self.assertEqual([a["output"] for a in answers], ["1", "1", "1"])
            self.assertTrue(all(a["ok"] for a in answers))
        finally:
            session.close()

    def test_environment_context_exceptions_and_output(self):
        session = Session(
            """
            import os
            def run(mode: str, context=None) -> dict:
                print("hello from the tool")
                if mode == "fail":
                    raise KeyError("missing thing")
                return {"token": os.environ["TOKEN"], "mode": context["invocation_mode"]}
            """,
            env={"TOKEN": "abc"},
        )
        try:
            answer = session.invoke({"mode": "ok"}, {"invocation_mode": "regular"})
            self.assertEqual(json.loads(answer["output"]), {"token": "abc", "mode": "regular"})
            self.assertEqual(answer["logs"], "hello from the tool\n")
            failed = session.invoke({"mode": "fail"})
            self.assertFalse(failed["ok"])
            self.assertEqual(failed["type"], "KeyError")
            self.assertEqual(failed["message"], "'missing thing'")
            self.assertTrue(any("tool_under_test.py" in line for line in failed["trace"]))
            self.assertFalse(any("toolsmith_harness" in line for line in failed["trace"]))
        finally:
            session.close()

    def test_output_beyond_the_cap_is_dropped_without_stopping_the_tool(self):
        session = Session(
            """
            import sys
            def run() -> str:
                for _ in range(10000):
                    sys.stdout.write("x" * 1000)
                return "done"
            """
        )
        try:
            answer = session.invoke({})
            self.assertEqual(answer["output"], "done")
            self.assertEqual(len(answer["logs"]), 1024)
            self.assertTrue(answer["truncated"])
        finally:
            session.close()

    def test_a_string_that_is_not_valid_unicode_does_not_break_the_channel(self):
        session = Session(
            """
            def run(kind: str) -> str:
                return "broken \\ud800 text" if kind == "surrogate" else "fine"
            """
        )
        try:
            answer = session.invoke({"kind": "surrogate"})
            self.assertTrue(answer["ok"])
            self.assertTrue(answer["output"].startswith("broken "))
            self.assertEqual(session.invoke({"kind": "plain"})["output"], "fine")
        finally:
            session.close()

    def test_an_environment_value_with_a_nul_is_reported_instead_of_ready(self):
        session = Session("def run() -> str:\n    return 'x'\n", env={"BAD": "a\x00b"})
        try:
            self.assertFalse(session.ready["ready"])
            self.assertIn("null", session.ready["message"])
        finally:
            session.process.wait(timeout=10)
            session.process.stdin.close()
            session.process.stdout.close()
            session.project.cleanup()

    def test_an_import_failure_is_reported_instead_of_ready(self):
        session = Session("import not_a_module_anywhere\n")
        try:
            self.assertFalse(session.ready["ready"])
            self.assertIn("not_a_module_anywhere", session.ready["message"])
        finally:
            session.process.wait(timeout=10)
            session.process.stdin.close()
            session.process.stdout.close()
            session.project.cleanup()


if __name__ == "__main__":
    unittest.main()
