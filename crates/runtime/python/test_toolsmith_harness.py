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


FRAMES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote_frames.json")
with open(FRAMES, encoding="utf-8") as f:
    FIXTURE = json.load(f)


def fixture_frame(direction: str, kind: str, ident: int | None = None) -> dict:
    """The fixture's first frame of ``kind`` (with id ``ident``, when given)."""
    return next(f for f in FIXTURE[direction] if f["kind"] == kind and ident in (None, f["id"]))


def start_payload(**fields) -> dict:
    """The fixture's start frame with ``fields`` replaced: every field the server sends, no other."""
    payload = json.loads(json.dumps(fixture_frame("to_zygote", "S")["payload"]))
    payload.update(fields)
    return payload


class Session:
    """A harness process with a tool module written into a temporary project."""

    def __init__(
        self, source: str, env: dict | None = None, limits: dict | None = None, start: bytes | None = None
    ):
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
        if start is None:
            limits = {**start_payload()["limits"], "output_bytes": 1024, **(limits or {})}
            payload = start_payload(takes_context="context" in source, env=env or {}, limits=limits)
            self.send(ord("S"), 0, json.dumps(payload).encode())
        else:
            self.write(start)
        kind, _, payload = self.receive()
        self.assert_kind(kind, "Y")
        self.ready = json.loads(payload)
        self.next_id = 1

    def write(self, frame: bytes) -> None:
        self.process.stdin.write(frame)
        self.process.stdin.flush()

    def send(self, kind: int, ident: int, payload: bytes) -> None:
        self.write(struct.pack(">IBQ", 9 + len(payload), kind, ident) + payload)

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
        kind, body, truncated, logs = self.receive_report(ident)
        answer = json.loads(body) if kind == "A" else {"crashed": True, "status": body.decode()}
        answer["truncated"] = truncated
        answer["logs"] = logs
        return answer

    def receive_report(self, ident: int) -> tuple[str, bytes, bool, str]:
        """The next ``A`` or ``C`` frame, which must be for ``ident``: its kind, body, truncation
        flag and logs."""
        kind, answered, payload = self.receive()
        if answered != ident:
            raise AssertionError(f"answer for {answered}, expected {ident}")
        if kind != ord("A"):
            self.assert_kind(kind, "C")
        (length,) = struct.unpack(">I", payload[:4])
        body, rest = payload[4 : 4 + length], payload[4 + length :]
        return chr(kind), body, bool(rest[0]), rest[1:].decode("utf-8", "replace")

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
            self.assertEqual(session.ready, fixture_frame("from_zygote", "Y")["payload"])
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
            self.assertEqual(failed["output"], "")
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
            self.assertEqual(session.ready["type"], "ModuleNotFoundError")
            self.assertEqual(list(session.ready), list(fixture_frame("from_zygote", "Y")["payload"]))
        finally:
            session.process.wait(timeout=10)
            session.process.stdin.close()
            session.process.stdout.close()
            session.project.cleanup()


class FramesTest(unittest.TestCase):
    """The frames of ``zygote_frames.json``, which the server's tests check too: what the server
    sends decodes to the harness's records, and what the harness sends is the fixture's bytes."""

    def test_frames_the_server_sends_decode_to_the_harness_records(self):
        for frame in FIXTURE["to_zygote"]:
            with self.subTest(kind=frame["kind"]):
                read, write = os.pipe()
                try:
                    os.write(write, bytes.fromhex(frame["hex"]))
                    kind, ident, buffer = harness.read_message(read)
                finally:
                    os.close(read)
                    os.close(write)
                payload = bytes(buffer[9:])
                self.assertEqual((chr(kind), ident), (frame["kind"], frame["id"]))
                if kind == harness.KIND_START:
                    start = harness.decode(harness.Start, json.loads(payload))
                    self.assertIsInstance(start.limits, harness.Limits)
                    self.assertEqual(dataclasses.asdict(start), frame["payload"])
                elif kind == harness.KIND_REQUEST:
                    (length,) = struct.unpack(">I", payload[:4])
                    self.assertEqual(length, len(payload) - 4)
                    request = harness.decode(harness.Request, json.loads(payload[4:]))
                    self.assertEqual(dataclasses.asdict(request), frame["payload"])
                else:
                    self.assertEqual(kind, harness.KIND_KILL)
                    self.assertEqual(payload, b"")

    def test_frames_the_harness_sends_are_the_fixtures_byte_for_byte(self):
        for frame in FIXTURE["from_zygote"]:
            with self.subTest(kind=frame["kind"], id=frame["id"]):
                kind = ord(frame["kind"])
                if kind == harness.KIND_READY:
                    parts = [harness.encode(harness.decode(harness.Ready, frame["payload"]))]
                else:
                    body = (
                        harness.encode(harness.decode(harness.Answer, frame["answer"]))
                        if kind == harness.KIND_ANSWER
                        else frame["status"].encode()
                    )
                    parts = harness.report(body, frame["truncated"], frame["logs"].encode())
                read, write = os.pipe()
                try:
                    harness.send_message(write, kind, frame["id"], *parts)
                    sent = os.read(read, 1 << 16)
                finally:
                    os.close(read)
                    os.close(write)
                self.assertEqual(sent.hex(), frame["hex"])

    def test_a_record_with_a_missing_or_unknown_field_is_refused_without_its_values(self):
        request = {"input": {}, "context": {}}
        with self.assertRaisesRegex(ValueError, r"lacks \['context'\]"):
            harness.decode(harness.Request, {"input": {}})
        with self.assertRaisesRegex(ValueError, r"unknown \['inputs'\]"):
            harness.decode(harness.Request, {**request, "inputs": {}})
        with self.assertRaises(ValueError) as raised:
            harness.decode(harness.Start, {**start_payload(), "takes_context": "sk-not-a-bool"})
        self.assertIn("Start.takes_context", str(raised.exception))
        self.assertNotIn("sk-not-a-bool", str(raised.exception))
        bad_limits = {**start_payload(), "limits": {"memory_bytes": 1}}
        with self.assertRaisesRegex(ValueError, "Limits lacks"):
            harness.decode(harness.Start, bad_limits)

    def test_a_harness_driven_by_the_servers_frames_answers_in_the_fixtures_shape(self):
        start = fixture_frame("to_zygote", "S")
        session = Session(
            """
            import os
            def run(city: str, context=None) -> dict:
                print("looking up", city)
                return {"city": city, "key": os.environ["API_KEY"], "mode": context["invocation_mode"]}
            """,
            start=bytes.fromhex(start["hex"]),
        )
        try:
            self.assertEqual(session.ready, fixture_frame("from_zygote", "Y")["payload"])
            request = fixture_frame("to_zygote", "R")
            session.write(bytes.fromhex(request["hex"]))
            kind, body, truncated, logs = session.receive_report(request["id"])
            self.assertEqual(kind, "A")
            answer = json.loads(body)
            self.assertEqual(list(answer), list(fixture_frame("from_zygote", "A")["answer"]))
            self.assertTrue(answer["ok"])
            self.assertEqual(
                json.loads(answer["output"]),
                {
                    "city": request["payload"]["input"]["city"],
                    "key": start["payload"]["env"]["API_KEY"],
                    "mode": request["payload"]["context"]["invocation_mode"],
                },
            )
            answered = fixture_frame("from_zygote", "A", request["id"])
            self.assertEqual((truncated, logs), (answered["truncated"], answered["logs"]))
        finally:
            session.close()

    def test_the_servers_kill_frame_ends_the_invocation_with_the_fixtures_crash_frame(self):
        session = Session(
            """
            import time
            def run(city: str, context=None) -> str:
                time.sleep(60)
                return city
            """,
            start=bytes.fromhex(fixture_frame("to_zygote", "S")["hex"]),
        )
        try:
            self.assertTrue(session.ready["ready"])
            session.write(bytes.fromhex(fixture_frame("to_zygote", "R")["hex"]))
            kill = fixture_frame("to_zygote", "K")
            session.write(bytes.fromhex(kill["hex"]))
            crashed = fixture_frame("from_zygote", "C")
            kind, body, truncated, logs = session.receive_report(kill["id"])
            self.assertEqual((kind, body.decode(), truncated, logs), ("C", crashed["status"], False, ""))
        finally:
            session.close()


if __name__ == "__main__":
    unittest.main()
