"""The zygote of one tool version: import the tool once, then fork a fresh child per invocation.

toolsmith starts this script with the version's own interpreter, inside the version's sandbox,
as PID 1 of the sandbox's PID namespace (so a tool cannot kill it, and every orphaned process
comes back to it to be reaped and removed), already running as the organization's unprivileged
identity under a seccomp filter.

Frames between the server and the zygote: ``u32 length | u8 kind | u64 id | payload`` (big
endian; the length counts everything after itself).

1. The server sends ``S`` (start): JSON ``{"entrypoint", "takes_context", "env", "limits":
   {"memory_bytes", "cpu_secs", "file_size_bytes", "output_bytes"}, "slots"}``: the entrypoint,
   whether it takes ``context``, the tool's environment (env vars and decrypted secrets), the
   per-invocation limits and the per-invocation cgroup slots (for each slot, descriptors of its
   ``cgroup.procs`` files). The environment reaches the process this way, never through a
   command line.
2. This script imports the tool with that environment and answers ``Y`` with JSON
   ``{"ready", "type", "message", "traceback"}`` (the last three empty when it is ready).
3. Each ``R`` (request) frame's payload is ``u32 length | JSON {"input", "context"}``; it is
   handed, unread, to a child forked from the imported state. One child is always forked
   ahead: it has joined a free cgroup slot, applied the invocation's limits, made its scratch
   directory and pointed its stdout and stderr at a memory file of the zygote's, and waits for
   its request, so none of that is on the critical path. It calls the tool and writes back
   ``u32 length | JSON {"ok", "output", "type", "message", "trace", "duration_ms"}`` (``output``
   empty when the tool raised, the exception's fields empty when it returned), then exits. The
   zygote relays that, unread, as ``A`` (answer) with payload
   ``u32 length | answer | u8 truncated | logs`` (the first bytes of the memory file).
4. ``K`` (kill, no payload) stops that invocation's process group (the server's wall-clock
   timeout); a child that ends without answering is reported as ``C`` (crashed) with payload
   ``u32 length | status text | u8 truncated | logs``.

Every JSON payload has exactly the fields listed, both ways: here they are the records below
(``Start``, ``Limits``, ``Ready``, ``Request``, ``Answer``), on the server's side structs of the
same names, and ``zygote_frames.json`` next to this file holds an example of every frame kind,
byte for byte, that the tests of both sides check their encoding and decoding against.

Whatever passes through for one caller (requests, answers, output) is held only in buffers
that are zeroed once relayed, never in Python objects of the zygote: a child forked later
inherits the zygote's memory and must find no trace of an earlier caller. The zygote and its
children are not dumpable, so no process of the sandbox can read another's memory or
descriptors through ``/proc`` (the seccomp filter refuses ``ptrace`` and
``process_vm_readv`` besides).

Whatever the tool prints while it is imported goes to stderr, never into the protocol.
This file uses the standard library only.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import importlib
import json
import os
import resource
import select
import selectors
import shutil
import signal
import struct
import sys
import time
import traceback
import types
import typing

KIND_START = ord("S")
KIND_REQUEST = ord("R")
KIND_KILL = ord("K")
KIND_READY = ord("Y")
KIND_ANSWER = ord("A")
KIND_CRASHED = ord("C")
HEADER = struct.Struct(">IBQ")
PR_SET_DUMPABLE = 4

PROJECT_DIR = "/project"
SCRATCH_ROOT = "/tmp"
SHM_ROOT = "/dev/shm"


def read_exact(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_into(fd: int, buffer: bytearray) -> bool:
    """Fills ``buffer`` from ``fd``; reading into it creates no other copy of the bytes."""
    view = memoryview(buffer)
    while view:
        n = os.readv(fd, [view])
        if n == 0:
            return False
        view = view[n:]
    return True


def zero(buffer: bytearray) -> None:
    """Overwrites a buffer that held a caller's bytes, in place."""
    buffer[:] = bytes(len(buffer))


def write_all(fd: int, parts: list) -> None:
    views = [memoryview(p) for p in parts if len(p)]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def read_message(fd: int):
    """One frame from the server: ``(kind, id, buffer)`` with the payload at ``buffer[9:]``,
    or ``None`` when the channel closed."""
    head = bytearray(4)
    if not read_into(fd, head):
        return None
    (length,) = struct.unpack(">I", head)
    if length < 9:
        return None
    buffer = bytearray(length)
    if not read_into(fd, buffer):
        return None
    kind = buffer[0]
    (ident,) = struct.unpack_from(">Q", buffer, 1)
    return kind, ident, buffer


def send_message(fd: int, kind: int, ident: int, *parts) -> None:
    total = sum(len(p) for p in parts)
    write_all(fd, [HEADER.pack(9 + total, kind, ident), *parts])


def read_request(fd: int):
    """A child's request: ``u32 length | JSON``, as a :class:`Request`."""
    head = read_exact(fd, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">I", head)
    body = read_exact(fd, length)
    if body is None:
        return None
    return decode(Request, json.loads(body))


def write_answer(fd: int, answer: Answer) -> None:
    body = encode(answer)
    write_all(fd, [struct.pack(">I", len(body)), body])


def not_dumpable() -> None:
    """Makes this process (and the children it forks) non-dumpable: its ``/proc`` entries
    then belong to root, out of reach of every other process of the sandbox's user."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except Exception:
        pass


# --------------------------------------------------------------------------------------------
# Frames


@dataclasses.dataclass(frozen=True)
class Limits:
    """Each invocation's limits (``0`` leaves a limit as the sandbox has it)."""

    memory_bytes: int
    cpu_secs: int
    file_size_bytes: int
    output_bytes: int


@dataclasses.dataclass(frozen=True)
class Start:
    """The ``S`` frame: what the zygote is to import, with which environment and limits."""

    entrypoint: str
    takes_context: bool
    env: dict
    limits: Limits
    slots: list


@dataclasses.dataclass(frozen=True)
class Ready:
    """The ``Y`` frame: whether the tool imported, and if not, the exception."""

    ready: bool
    type: str
    message: str
    traceback: str


@dataclasses.dataclass(frozen=True)
class Request:
    """An ``R`` frame's JSON, as the child reads it."""

    input: dict
    context: dict


@dataclasses.dataclass(frozen=True)
class Answer:
    """A child's answer, relayed in an ``A`` frame: the output, or the exception it raised."""

    ok: bool
    output: str
    type: str
    message: str
    trace: list
    duration_ms: float


_JSON_TYPES = {bool: bool, str: str, int: int, float: (int, float), dict: dict, list: list}
# Resolved once, in the zygote, so that a child decoding its request does not evaluate them.
_HINTS = {record: typing.get_type_hints(record) for record in (Limits, Start, Ready, Request, Answer)}


def decode(record: type, data):
    """``data`` (parsed JSON) as ``record``, which must have exactly its fields, each of its
    type. The error names the fields, never their values: they may be secrets."""
    if not isinstance(data, dict):
        raise ValueError(f"{record.__name__} is not a JSON object")
    hints = _HINTS[record]
    names = [field.name for field in dataclasses.fields(record)]
    missing = [name for name in names if name not in data]
    unknown = sorted(set(data) - set(names))
    if missing or unknown:
        raise ValueError(f"{record.__name__} lacks {missing} and has unknown {unknown}")
    values = {}
    for name in names:
        hint, value = hints[name], data[name]
        if dataclasses.is_dataclass(hint):
            value = decode(hint, value)
        elif not isinstance(value, _JSON_TYPES[hint]) or (hint is not bool and isinstance(value, bool)):
            raise ValueError(f"{record.__name__}.{name} is not {hint.__name__}")
        values[name] = value
    return record(**values)


def encode(record) -> bytes:
    # Lone surrogates (a str Python allows, UTF-8 does not) become replacements rather than a
    # frame the server cannot read.
    return json.dumps(dataclasses.asdict(record), ensure_ascii=False, default=str).encode("utf-8", "replace")


def report(body, truncated: bool, logs) -> list:
    """The payload of an ``A`` or ``C`` frame, in parts: ``u32 length | body | u8 truncated | logs``."""
    return [struct.pack(">I", len(body)), body, bytes([int(truncated)]), logs]


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

    def call(self, arguments: dict, context: dict) -> str:
        kwargs = {name: _convert(value, self.hints.get(name, typing.Any)) for name, value in arguments.items()}
        if self.takes_context:
            kwargs["context"] = context
        return result_text(self.function(**kwargs))


def result_text(result) -> str:
    """A tool's result as the invocation's output: a str as it is, anything else as JSON (what
    an output schema derived from the return annotation describes)."""
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


def _set_limit(resource_id: int, value) -> None:
    if value:
        try:
            resource.setrlimit(resource_id, (int(value), int(value)))
        except (ValueError, OSError):
            pass


def read_output(fd: int, cap: int) -> tuple[bytearray, bool]:
    """The first ``cap`` bytes an invocation wrote to stdout and stderr, and whether it wrote
    more. They are in a memory file the zygote created, so they survive a crash or a kill.
    The bytes are read into a buffer of their own, which the caller zeroes once sent."""
    try:
        size = os.fstat(fd).st_size
        data = bytearray(min(size, cap))
        if data:
            os.preadv(fd, [data], 0)
    except OSError:
        return bytearray(), False
    return data, size > cap


def join_slot(slot: list) -> None:
    """Moves this process into its invocation's cgroups, through descriptors the server opened
    for them: every process it starts is counted there, against the invocation's own memory and
    process limits."""
    for fd in slot:
        os.write(fd, b"0")


def prepare_child(limits: Limits, output_fd: int) -> None:
    """Everything a child does before it has a request, so that none of it is on the critical
    path: its own process group, its scratch directory, its limits, stdout and stderr into the
    output file. Collection is left to the exit: the child lives for one call."""
    os.setpgid(0, 0)
    scratch = os.path.join(SCRATCH_ROOT, f"invocation-{os.getpid()}")
    os.mkdir(scratch, 0o700)
    os.environ["TMPDIR"] = scratch
    os.environ["HOME"] = scratch
    _set_limit(resource.RLIMIT_AS, limits.memory_bytes)
    _set_limit(resource.RLIMIT_CPU, limits.cpu_secs)
    # The file size limit also bounds the output file: a tool that prints without end is
    # stopped there (SIGXFSZ) instead of filling memory.
    _set_limit(resource.RLIMIT_FSIZE, limits.file_size_bytes)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    gc.disable()


def run_child(tool: Tool, request_fd: int, result_fd: int) -> None:
    """The body of a forked child once prepared: wait for the request, run it, answer, exit."""
    request = read_request(request_fd)
    if request is None:
        os._exit(0)
    started = time.perf_counter()
    try:
        output = tool.call(request.input, request.context)
        answer = Answer(True, output, "", "", [], 0.0)
    except BaseException as exc:  # the tool's failure is the invocation's result
        answer = Answer(False, "", type(exc).__name__, str(exc), _tool_frames(exc), 0.0)
    answer = dataclasses.replace(answer, duration_ms=(time.perf_counter() - started) * 1000.0)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        write_answer(result_fd, answer)
    except Exception as exc:  # an output that cannot be encoded
        message = f"the tool's result could not be sent: {exc}"
        write_answer(result_fd, Answer(False, "", type(exc).__name__, message, [], answer.duration_ms))
    os._exit(0)


# --------------------------------------------------------------------------------------------
# The zygote


def empty(root: str, keep: str | None = None) -> None:
    """Removes everything in ``root`` but ``keep``."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        if name == keep:
            continue
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


class Invocation:
    """One running child, as the zygote tracks it."""

    def __init__(self, invocation_id: int, result_read: int, output: int, exit_fd: int, slot: int | None):
        self.id = invocation_id
        # Closed (None) once the answer is in: a process the tool started may hold the pipe's
        # other end for ever, so the pipe's end says nothing about the child's.
        self.result_read: int | None = result_read
        # The answer frame: its length prefix, then a buffer of exactly its size.
        self.head = bytearray(4)
        self.body: bytearray | None = None
        self.filled = 0
        self.output = output
        # A pidfd: readable once the child has exited.
        self.exit_fd = exit_fd
        self.answered = False
        self.slot = slot


class Zygote:
    def __init__(self, tool: Tool, limits: Limits, slots: list, proto_in: int, proto_out: int):
        self.tool = tool
        self.limits = limits
        self.slots = slots
        self.free_slots = list(range(len(slots)))
        self.proto_in = proto_in
        self.proto_out = proto_out
        self.selector = selectors.DefaultSelector()
        self.selector.register(proto_in, selectors.EVENT_READ, ("control", None))
        self.running: dict[int, Invocation] = {}
        self.by_id: dict[int, int] = {}
        # The child forked ahead: (pid, request write end, result read end, output file, slot).
        self.idle: tuple[int, int, int, int, int | None] | None = None
        # Sweeping orphans and emptying /tmp are only right as PID 1 of the sandbox; run
        # anywhere else (a developer trying the harness), they would touch the host's.
        self.sandboxed = os.getpid() == 1
        # Ended invocations whose leftovers are still to be removed, with their slots.
        self.ended: list[tuple[int, int | None]] = []

    def fork_child(self) -> tuple[int, int, int, int, int | None]:
        slot = None
        if self.slots:
            if not self.free_slots:
                raise OSError("every invocation slot is taken")
            slot = self.free_slots.pop(0)
        try:
            request_read, request_write = os.pipe()
            result_read, result_write = os.pipe()
            output = os.memfd_create("invocation-output", os.MFD_CLOEXEC)
            pid = os.fork()
        except OSError:
            if slot is not None:
                self.free_slots.append(slot)
            raise
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                if slot is not None:
                    join_slot(self.slots[slot])
                # Nothing of the zygote's other channels may reach the tool: not the protocol,
                # not the cgroup slots, not another invocation's pipes or output.
                os.dup2(request_read, 3)
                os.dup2(result_write, 4)
                os.dup2(output, 5)
                os.closerange(6, 1 << 16)
                prepare_child(self.limits, 5)
                os.close(5)
                run_child(self.tool, 3, 4)
            finally:
                os._exit(70)
        os.close(request_read)
        os.close(result_write)
        return pid, request_write, result_read, output, slot

    def dispatch(self, invocation_id: int, buffer: bytearray) -> None:
        """Hands a request (``buffer[9:]``, the child's frame) to the waiting child, then zeroes
        the buffer."""
        try:
            self._dispatch(invocation_id, memoryview(buffer)[9:])
        finally:
            zero(buffer)

    def _dispatch(self, invocation_id: int, request: memoryview) -> None:
        # What ended invocations left must be gone before the next one starts: children that
        # answered are given the moment they need to exit, then cleaned up after. Usually the
        # idle loop has done it already.
        for pid in [pid for pid, inv in self.running.items() if inv.answered]:
            ready, _, _ = select.select([self.running[pid].exit_fd], [], [], 1.0)
            if not ready:
                self.kill(self.running[pid].id)
                select.select([self.running[pid].exit_fd], [], [], 1.0)
            self.exited(pid)
        while self.ended:
            self.clean_up(*self.ended.pop())
        if self.idle is None:
            try:
                self.idle = self.fork_child()
            except OSError as exc:
                # The sandbox's process limit is reached (or memory is short): this invocation
                # cannot start, the zygote carries on.
                self.report_crash(invocation_id, f"no process could be started ({exc})", None)
                return
        pid, request_write, result_read, output, slot = self.idle
        self.idle = None
        try:
            exit_fd = os.pidfd_open(pid)
        except OSError:
            os.kill(pid, signal.SIGKILL)
            self.report_crash(invocation_id, "lost", None)
            return
        try:
            write_all(request_write, [request])
        except OSError:
            pass
        os.close(request_write)
        self.running[pid] = Invocation(invocation_id, result_read, output, exit_fd, slot)
        self.by_id[invocation_id] = pid
        self.selector.register(result_read, selectors.EVENT_READ, ("result", pid))
        self.selector.register(exit_fd, selectors.EVENT_READ, ("exit", pid))

    def kill(self, invocation_id: int) -> None:
        pid = self.by_id.get(invocation_id)
        if pid is not None:
            for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    target()
                except OSError:
                    pass

    def read_result(self, pid: int, block: bool = True) -> None:
        """Reads what is in a child's result pipe; the answer goes out as soon as its frame is
        complete, before the child has even exited."""
        inv = self.running.get(pid)
        if inv is None or inv.result_read is None:
            return
        if not block:
            os.set_blocking(inv.result_read, False)
        target = memoryview(inv.head)[inv.filled :] if inv.body is None else memoryview(inv.body)[inv.filled :]
        try:
            n = os.readv(inv.result_read, [target])
        except OSError:
            n = 0
        if n == 0:
            self.close_result(inv)
            return
        inv.filled += n
        if inv.body is None and inv.filled == 4:
            (length,) = struct.unpack(">I", inv.head)
            inv.body = bytearray(length)
            inv.filled = 0
        if inv.body is not None and inv.filled == len(inv.body):
            self.close_result(inv)
            try:
                self.relay(KIND_ANSWER, inv.id, inv.body, inv.output)
            finally:
                zero(inv.body)
            inv.answered = True

    def close_result(self, inv: Invocation) -> None:
        if inv.result_read is not None:
            self.selector.unregister(inv.result_read)
            os.close(inv.result_read)
            inv.result_read = None

    def exited(self, pid: int) -> None:
        """Handles a child that has exited: reaps it, reports it if it never answered, queues
        its clean-up."""
        inv = self.running.get(pid)
        if inv is None:
            return
        status = self.reap(pid)
        # An answer written just before the exit may still be in the pipe.
        while inv.result_read is not None and not inv.answered:
            before = inv.filled
            self.read_result(pid, block=False)
            if inv.result_read is not None and inv.filled == before:
                break
        self.close_result(inv)
        if inv.body is not None and not inv.answered:
            zero(inv.body)
        self.selector.unregister(inv.exit_fd)
        os.close(inv.exit_fd)
        del self.running[pid]
        self.by_id.pop(inv.id, None)
        if not inv.answered:
            self.report_crash(inv.id, status, inv.output)
        os.close(inv.output)
        self.ended.append((pid, inv.slot))

    def relay(self, kind: int, invocation_id: int, body, output: int | None) -> None:
        """Sends a child's answer (or a crash status) with the invocation's output; the output
        buffer is zeroed once sent."""
        cap = self.limits.output_bytes or 1 << 20
        logs, truncated = read_output(output, cap) if output is not None else (bytearray(), False)
        try:
            send_message(self.proto_out, kind, invocation_id, *report(body, truncated, logs))
        finally:
            zero(logs)

    def report_crash(self, invocation_id: int, status: str, output: int | None) -> None:
        self.relay(KIND_CRASHED, invocation_id, status.encode("utf-8", "replace"), output)

    def reap(self, pid: int) -> str:
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

    def clean_up(self, pid: int, slot: int | None) -> None:
        """Removes what an ended invocation left: its processes, its scratch directory, and
        with nothing else running, everything in ``/tmp`` and ``/dev/shm``; then frees its
        slot."""
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        self.sweep()
        if slot is not None:
            self.free_slots.append(slot)
        scratch = os.path.join(SCRATCH_ROOT, f"invocation-{pid}")
        try:
            os.rmdir(scratch)
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)
        if not self.running and self.sandboxed:
            # With nothing running, nothing in /tmp belongs to anyone: a file a tool wrote
            # outside its scratch directory must not reach the next invocation.
            waiting = f"invocation-{self.idle[0]}" if self.idle is not None else None
            for root in (SCRATCH_ROOT, SHM_ROOT):
                empty(root, keep=waiting if root == SCRATCH_ROOT else None)

    def orphans(self, keep: set) -> list[int]:
        """Processes whose parent is this PID 1 and that are no invocation's child: what an
        invocation left behind. The kernel lists PID 1's children in one file; where it does
        not, every process's parent is read instead."""
        try:
            with open("/proc/1/task/1/children", "rb") as f:
                children = [int(pid) for pid in f.read().split()]
        except OSError:
            children = []
            for name in os.listdir("/proc"):
                if not name.isdigit() or name == "1":
                    continue
                try:
                    with open(f"/proc/{name}/stat", "rb") as stat:
                        fields = stat.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == 1:
                    children.append(int(name))
        return [pid for pid in children if pid not in keep]

    def sweep(self) -> None:
        """Kills orphans. They must not outlive the invocation that started them; this repeats
        until none are left, since killing one can orphan its children."""
        if not self.sandboxed:
            return
        keep = set(self.running)
        if self.idle is not None:
            keep.add(self.idle[0])
        for _ in range(100):
            found = self.orphans(keep)
            if not found:
                return
            for pid in found:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.001)
            for pid in found:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def serve(self) -> None:
        """The event loop. Answers go out first; the work that follows an invocation (cleaning
        up after an ended one, forking the next waiting child) is done when no request or
        answer is waiting, so it stays off the critical path of the next call."""
        self.idle = self.fork_child()
        fork_failed = False
        while True:
            pending = self.idle is None or bool(self.ended)
            timeout = 1.0 if not pending else (0.05 if fork_failed and not self.ended else 0)
            events = self.selector.select(timeout=timeout)
            for key, _ in events:
                kind, pid = key.data
                if kind == "control":
                    message = read_message(self.proto_in)
                    if message is None:
                        return
                    frame_kind, ident, buffer = message
                    if frame_kind == KIND_KILL:
                        self.kill(ident)
                    elif frame_kind == KIND_REQUEST:
                        self.dispatch(ident, buffer)
                    else:
                        zero(buffer)
                elif kind == "result":
                    self.read_result(pid)
                else:
                    self.exited(pid)
            if events:
                continue
            if self.ended:
                self.clean_up(*self.ended.pop())
            elif self.idle is None:
                try:
                    self.idle = self.fork_child()
                    fork_failed = False
                except OSError:
                    fork_failed = True
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
    not_dumpable()
    # PID 1 gets no default signal actions; set the ones the zygote relies on explicitly.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    message = read_message(proto_in)
    if message is None or message[0] != KIND_START:
        return 1
    try:
        config = decode(Start, json.loads(bytes(memoryview(message[2])[9:])))
    except ValueError as exc:
        # The server and this script come from one build: a frame of another shape is a bug.
        print(f"toolsmith_harness: the start frame does not fit: {exc}", file=sys.stderr)
        return 1
    slots = [[int(fd) for fd in slot] for slot in config.slots]
    # Descriptors the sandbox was started with and that are no slot (bubblewrap's own) go.
    keep = {proto_in, proto_out, *[fd for slot in slots for fd in slot]}
    for fd in range(3, 64):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    for fd in keep:
        os.set_inheritable(fd, False)
    sys.dont_write_bytecode = True
    if PROJECT_DIR not in sys.path:
        sys.path.insert(0, PROJECT_DIR)
    os.chdir(PROJECT_DIR)
    try:
        # A value the process environment cannot hold (a NUL character) fails here, and is
        # reported like any other reason the tool cannot start.
        os.environ.clear()
        os.environ.update(config.env)
        os.environ.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        os.environ["HOME"] = SCRATCH_ROOT
        os.environ["TMPDIR"] = SCRATCH_ROOT
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        tool = Tool(config.entrypoint, config.takes_context)
    except BaseException as exc:
        failed = Ready(False, type(exc).__name__, str(exc), "".join(_tool_frames(exc)))
        send_message(proto_out, KIND_READY, 0, encode(failed))
        return 1
    sys.stdout.flush()
    # Objects that exist now are never collected in a child: freezing them keeps a child's
    # garbage collector from touching (and so copying) the pages they live on.
    gc.freeze()
    send_message(proto_out, KIND_READY, 0, encode(Ready(True, "", "", "")))
    Zygote(tool, config.limits, slots, proto_in, proto_out).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
