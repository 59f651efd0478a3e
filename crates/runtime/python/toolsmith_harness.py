"""The zygote of one tool version: import the tool once, then fork a fresh child per invocation.

toolsmith starts this script with the version's own interpreter, inside the version's sandbox,
as PID 1 of the sandbox's PID namespace (so a tool cannot kill it, and every orphaned process
comes back to it to be reaped and removed). It speaks length-prefixed JSON frames: a 4-byte
big-endian length, then UTF-8 JSON.

1. The server sends one configuration frame on stdin: the entrypoint, whether it takes
   ``context``, the tool's environment (env vars and decrypted secrets) and the per-invocation
   limits. The environment reaches the process this way, never through a command line.
2. This script imports the tool with that environment and answers ``{"ready": true}`` or
   ``{"ready": false, "message": ..., "traceback": ...}`` on stdout.
3. Then every request frame ``{"id", "input", "context"}`` is handed to a child forked from the
   imported state. One child is always forked ahead and waits for its request, so the fork is
   off the critical path. The child applies the invocation's limits, captures its stdout and
   stderr up to a cap, calls the tool and sends back ``{"id", "ok", "output" | "type", "message",
   "trace", "duration_ms", "logs", "truncated"}``, then exits. Nothing it did survives it: its
   memory dies with it and its scratch directory is removed.
4. ``{"kill": id}`` stops that invocation's process group (the server's wall-clock timeout); a
   child that ends without answering is reported as ``{"id", "crashed": true, "status": ...}``.

Whatever the tool prints while it is imported goes to stderr, never into the protocol.
This file uses the standard library only.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import json
import os
import resource
import selectors
import shutil
import signal
import struct
import sys
import threading
import time
import traceback
import types
import typing

PROJECT_DIR = "/project"
SCRATCH_ROOT = "/tmp"


def read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int):
    head = read_exact(fd, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">I", head)
    body = read_exact(fd, length)
    if body is None:
        return None
    return json.loads(body)


def write_frame(fd: int, message) -> None:
    body = json.dumps(message, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
    data = struct.pack(">I", len(body)) + body
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# --------------------------------------------------------------------------------------------
# Calling the tool


def _convert(value, hint):
    """Turns JSON input into the parameter's declared type where a type needs constructing."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None:
            return None
        for arm in typing.get_args(hint):
            if arm is not type(None):
                try:
                    return _convert(value, arm)
                except Exception:
                    continue
        return value
    if origin is typing.Annotated:
        return _convert(value, typing.get_args(hint)[0])
    if origin in (list, typing.List) and isinstance(value, list):
        (item,) = typing.get_args(hint) or (typing.Any,)
        return [_convert(v, item) for v in value]
    if not isinstance(hint, type):
        return value
    if hasattr(hint, "model_validate") and isinstance(value, dict):
        return hint.model_validate(value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        try:
            hints = typing.get_type_hints(hint)
        except Exception:
            hints = {}
        return hint(**{k: _convert(v, hints.get(k, typing.Any)) for k, v in value.items()})
    if issubclass(hint, enum.Enum):
        return hint(value)
    return value


class Tool:
    def __init__(self, entrypoint: str, takes_context: bool):
        module_name, _, function_name = entrypoint.partition(":")
        module = importlib.import_module(module_name)
        self.function = getattr(module, function_name)
        self.takes_context = takes_context
        try:
            self.hints = typing.get_type_hints(self.function, include_extras=True)
        except Exception:
            self.hints = {}
        self.parameters = set(inspect.signature(self.function).parameters)

    def call(self, arguments: dict, context: dict) -> str:
        kwargs = {name: _convert(value, self.hints.get(name, typing.Any)) for name, value in arguments.items()}
        if self.takes_context:
            kwargs["context"] = context
        result = self.function(**kwargs)
        if isinstance(result, str):
            return result
        if dataclasses.is_dataclass(result) and not isinstance(result, type):
            result = dataclasses.asdict(result)
        elif hasattr(result, "model_dump"):
            result = result.model_dump(mode="json")
        return json.dumps(result, ensure_ascii=False)


def _tool_frames(exc: BaseException) -> list[str]:
    """The traceback of a tool exception without this harness's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    return [line.rstrip("\n") for line in lines]


class Capture:
    """The child's fds 1 and 2, read by a thread that keeps the first ``cap`` bytes.

    Once the cap is reached, fds 1 and 2 are pointed at /dev/null, so a tool that prints
    without end neither blocks on a full pipe nor fills memory."""

    def __init__(self, cap: int):
        self.cap = cap
        self.kept = bytearray()
        self.truncated = False
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        self.read_end = read_end
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.read_end, 65536)
            except OSError:
                return
            if not chunk:
                return
            room = self.cap - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
            if len(chunk) > room and not self.truncated:
                self.truncated = True
                # Past the cap, the kernel discards the rest: the tool runs on at full speed
                # instead of spending its time limit feeding this thread.
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                os.close(null)

    def finish(self) -> tuple[str, bool]:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        # A process the tool started may still hold the pipe open; do not wait for it.
        self.thread.join(0.2)
        return bytes(self.kept).decode("utf-8", "replace"), self.truncated


def _set_limit(resource_id: int, value) -> None:
    if value:
        try:
            resource.setrlimit(resource_id, (int(value), int(value)))
        except (ValueError, OSError):
            pass


def run_child(tool: Tool, limits: dict, request_fd: int, result_fd: int) -> None:
    """The body of a forked child: wait for the request, run it, answer, exit."""
    os.setpgid(0, 0)
    request = read_frame(request_fd)
    if request is None:
        os._exit(0)
    invocation_id = request["id"]
    scratch = os.path.join(SCRATCH_ROOT, f"invocation-{os.getpid()}")
    os.mkdir(scratch, 0o700)
    os.environ["TMPDIR"] = scratch
    os.environ["HOME"] = scratch
    _set_limit(resource.RLIMIT_AS, limits.get("memory_bytes"))
    _set_limit(resource.RLIMIT_CPU, limits.get("cpu_secs"))
    _set_limit(resource.RLIMIT_FSIZE, limits.get("file_size_bytes"))
    capture = Capture(int(limits.get("output_bytes") or 1 << 20))
    started = time.perf_counter()
    try:
        output = tool.call(request.get("input") or {}, request.get("context") or {})
        answer = {"id": invocation_id, "ok": True, "output": output}
    except BaseException as exc:  # the tool's failure is the invocation's result
        answer = {
            "id": invocation_id,
            "ok": False,
            "type": type(exc).__name__,
            "message": str(exc),
            "trace": _tool_frames(exc),
        }
    answer["duration_ms"] = (time.perf_counter() - started) * 1000.0
    answer["logs"], answer["truncated"] = capture.finish()
    try:
        write_frame(result_fd, answer)
    except Exception as exc:  # an output that cannot be encoded
        write_frame(
            result_fd,
            {
                "id": invocation_id,
                "ok": False,
                "type": type(exc).__name__,
                "message": f"the tool's result could not be sent: {exc}",
                "trace": [],
                "duration_ms": answer["duration_ms"],
                "logs": "",
                "truncated": False,
            },
        )
    os._exit(0)


# --------------------------------------------------------------------------------------------
# The zygote


class Zygote:
    def __init__(self, tool: Tool, limits: dict, proto_in: int, proto_out: int):
        self.tool = tool
        self.limits = limits
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.selector = selectors.DefaultSelector()
        self.selector.register(proto_in, selectors.EVENT_READ, ("control", None))
        # pid -> [invocation id, result read end, collected bytes]
        self.running: dict[int, list] = {}
        self.by_id: dict[int, int] = {}
        self.idle: tuple[int, int, int] | None = None
        # Sweeping orphans and emptying /tmp are only right as PID 1 of the sandbox; run
        # anywhere else (a developer trying the harness), they would touch the host's.
        self.sandboxed = os.getpid() == 1
        # Ended invocations whose leftovers are still to be removed.
        self.ended: list[int] = []
        # Exit statuses of invocation children reaped before their result pipe was drained.
        self.statuses: dict[int, int] = {}

    def fork_child(self) -> tuple[int, int, int]:
        request_read, request_write = os.pipe()
        result_read, result_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                # Nothing of the zygote's other channels may reach the tool: not the protocol,
                # not another invocation's pipes.
                os.dup2(request_read, 3)
                os.dup2(result_write, 4)
                os.closerange(5, 1 << 16)
                run_child(self.tool, self.limits, 3, 4)
            finally:
                os._exit(70)
        os.close(request_read)
        os.close(result_write)
        return pid, request_write, result_read

    def dispatch(self, request: dict) -> None:
        # What ended invocations left must be gone before the next one starts; usually the
        # idle loop has done it already.
        while self.ended:
            self.clean_up(self.ended.pop())
        if self.idle is None:
            self.idle = self.fork_child()
        pid, request_write, result_read = self.idle
        self.idle = None
        try:
            write_frame(request_write, request)
        except OSError:
            pass
        os.close(request_write)
        self.running[pid] = [request["id"], result_read, bytearray()]
        self.by_id[request["id"]] = pid
        self.selector.register(result_read, selectors.EVENT_READ, ("result", pid))

    def kill(self, invocation_id: int) -> None:
        pid = self.by_id.get(invocation_id)
        if pid is not None:
            for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    target()
                except OSError:
                    pass

    def collect(self, pid: int) -> None:
        entry = self.running[pid]
        try:
            chunk = os.read(entry[1], 1 << 20)
        except OSError:
            chunk = b""
        if chunk:
            entry[2] += chunk
            return
        self.selector.unregister(entry[1])
        os.close(entry[1])
        status = self.reap(pid)
        del self.running[pid]
        self.by_id.pop(entry[0], None)
        data = bytes(entry[2])
        answer = None
        if len(data) >= 4:
            (length,) = struct.unpack(">I", data[:4])
            if len(data) == 4 + length:
                try:
                    answer = json.loads(data[4:])
                except ValueError:
                    answer = None
        if answer is None or answer.get("id") != entry[0]:
            answer = {"id": entry[0], "crashed": True, "status": status}
        write_frame(self.proto_out, answer)
        self.ended.append(pid)

    def reap(self, pid: int) -> str:
        status = self.statuses.pop(pid, None)
        if status is None:
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                return "unknown"
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            try:
                return f"killed by {signal.Signals(number).name}"
            except ValueError:
                return f"killed by signal {number}"
        return f"exited with status {os.WEXITSTATUS(status)}"

    def clean_up(self, pid: int) -> None:
        """Removes what an ended invocation left: its processes and its scratch directory."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        self.sweep()
        shutil.rmtree(os.path.join(SCRATCH_ROOT, f"invocation-{pid}"), ignore_errors=True)
        if not self.running and self.sandboxed:
            # With nothing running, nothing in /tmp belongs to anyone: a file a tool wrote
            # outside its scratch directory must not reach the next invocation.
            for name in os.listdir(SCRATCH_ROOT):
                path = os.path.join(SCRATCH_ROOT, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass

    def sweep(self) -> None:
        """Kills orphans: processes re-parented to this PID 1 that are no invocation's child.

        They are what an invocation left running after it ended or was killed; they must not
        outlive it. Repeats until none are left, since killing one can orphan its children."""
        if not self.sandboxed:
            return
        keep = set(self.running)
        if self.idle is not None:
            keep.add(self.idle[0])
        for _ in range(100):
            found = False
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                pid = int(name)
                if pid == 1 or pid in keep:
                    continue
                try:
                    with open(f"/proc/{pid}/stat", "rb") as stat:
                        fields = stat.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == 1:
                    found = True
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            self.reap_orphans()
            if not found:
                return

    def reap_orphans(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.running:
                # An invocation ended before its result pipe was drained; `collect` reports it.
                self.statuses[pid] = status

    def serve(self) -> None:
        """The event loop. Answers go out first; the work that follows an invocation (forking
        the next waiting child, cleaning up after an ended one) is done when no request or
        answer is waiting, so it stays off the critical path of the next call."""
        self.idle = self.fork_child()
        while True:
            pending = self.idle is None or bool(self.ended)
            events = self.selector.select(timeout=0 if pending else 1.0)
            for key, _ in events:
                kind, pid = key.data
                if kind == "control":
                    message = read_frame(self.proto_in)
                    if message is None:
                        return
                    if "kill" in message:
                        self.kill(message["kill"])
                    else:
                        self.dispatch(message)
                else:
                    self.collect(pid)
            if events:
                continue
            if self.idle is None:
                self.idle = self.fork_child()
            elif self.ended:
                self.clean_up(self.ended.pop())
            else:
                self.sweep()


def main() -> int:
    # The protocol gets private descriptors; fds 0-2 of the process are no channel to anything.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    for fd in (proto_in, proto_out):
        os.set_inheritable(fd, False)
    # PID 1 gets no default signal actions; set the ones the zygote relies on explicitly.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    config = read_frame(proto_in)
    if config is None:
        return 1
    os.environ.clear()
    os.environ.update(config.get("env") or {})
    os.environ.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    os.environ["HOME"] = SCRATCH_ROOT
    os.environ["TMPDIR"] = SCRATCH_ROOT
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    sys.dont_write_bytecode = True
    if PROJECT_DIR not in sys.path:
        sys.path.insert(0, PROJECT_DIR)
    os.chdir(PROJECT_DIR)
    try:
        tool = Tool(config["entrypoint"], bool(config.get("takes_context")))
    except BaseException as exc:
        write_frame(
            proto_out,
            {"ready": False, "message": f"{type(exc).__name__}: {exc}", "traceback": "".join(_tool_frames(exc))},
        )
        return 1
    sys.stdout.flush()
    write_frame(proto_out, {"ready": True})
    Zygote(tool, config.get("limits") or {}, proto_in, proto_out).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
