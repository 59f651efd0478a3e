"""The harmless actions run as they are; the dangerous ones only against stand-ins or in a child
process held by resource limits, so these tests are safe to run anywhere."""

import io
import os
import signal
import socket
import subprocess
import sys

import pytest

from hostile import tool
from hostile.tool import run

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_in_child(action: str, limits: str = "") -> subprocess.CompletedProcess:
    """Run an action in a separate Python, with `limits` (Python code) applied to it first."""
    code = f"import resource\n{limits}\nfrom hostile.tool import run\nprint(run({action!r}))\n"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, env={**os.environ, "PYTHONPATH": PROJECT},
        capture_output=True, text=True, timeout=60,
    )


def test_reads_files_and_lists_directories(tmp_path):
    (tmp_path / "a.txt").write_text("inside")
    assert run(f"read:{tmp_path / 'a.txt'}") == "inside"
    assert run(f"read:{tmp_path}") == "a.txt"


def test_writes_files(tmp_path):
    target = tmp_path / "out.txt"
    assert run(f"write:{target}") == f"wrote {target}"
    assert target.read_text() == "written by the hostile test tool\n"


def test_returns_its_secret(monkeypatch):
    monkeypatch.setenv("API_TOKEN", "tok-123")
    assert run("secret") == "tok-123"
    assert "API_TOKEN=tok-123" in run("environ").splitlines()


def test_connects_over_tcp():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert run(f"connect:127.0.0.1:{port}") == f"connected to 127.0.0.1:{port}"


def test_fork_reports_how_many_children_it_made_before_refusal(monkeypatch):
    made = []

    def fake_fork():
        if len(made) == 3:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        made.append(1)
        return 1000 + len(made)  # a parent's view: never the child branch

    monkeypatch.setattr(tool.os, "fork", fake_fork)
    assert run("fork") == "fork failed after 3 children: [Errno 11] Resource temporarily unavailable"


def test_flood_prints_eight_gibibytes(monkeypatch):
    class Counter(io.TextIOBase):
        written = 0

        def write(self, text):
            self.written += len(text)
            return len(text)

    sink = Counter()
    monkeypatch.setattr(sys, "stdout", sink)
    assert run("flood") == "printed 8 GiB"
    assert sink.written == 8 << 30


def test_allocate_runs_into_a_memory_limit():
    limit = "resource.setrlimit(resource.RLIMIT_AS, (256 << 20, 256 << 20))"
    child = run_in_child("allocate", limit)
    assert child.returncode == 1
    assert "MemoryError" in child.stderr


def test_spin_runs_into_a_cpu_limit():
    child = run_in_child("spin", "resource.setrlimit(resource.RLIMIT_CPU, (1, 2))")
    assert child.returncode in (-signal.SIGXCPU, -signal.SIGKILL)


def test_kill_parent_kills_its_parent():
    # The tool runs in a grandchild, so the parent it kills is the child in between, not pytest.
    code = (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'from hostile.tool import run; run(\"kill_parent\")'])\n"
        "print('the parent survived')\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, env={**os.environ, "PYTHONPATH": PROJECT},
        capture_output=True, text=True, timeout=60,
    )
    assert child.returncode == -signal.SIGKILL
    assert "survived" not in child.stdout


@pytest.mark.parametrize("action", ["nothing", "read", "read:", "spin:now", "connect:nowhere"])
def test_refuses_unknown_or_malformed_actions(action):
    with pytest.raises(ValueError, match="unknown action|connect needs host:port"):
        run(action)
