"""A deliberately hostile tool, for testing the sandbox that runs tools.

Each action attempts one thing a sandboxed tool must not be able to do, or must not be able to
do without bound. Under toolsmith each must be stopped or contained: files outside the tool stay
invisible and unwritable, memory, CPU time, processes and output are capped, the server survives,
network access follows the tool's setting, and the secret is masked in the output.

Run these actions only inside a sandbox: on an unprotected machine `allocate`, `spin`, `fork` and
`flood` do exactly what they say.
"""

import os
import socket
import sys
import time

_CHUNK = 1 << 20  # 1 MiB


def _read(path: str) -> str:
    if os.path.isdir(path):
        return "\n".join(sorted(os.listdir(path)))
    with open(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def _write(path: str) -> str:
    with open(path, "w") as f:
        f.write("written by the hostile test tool\n")
    return f"wrote {path}"


def _allocate() -> str:
    hoard = []
    while True:
        # bytearray touches every page, so the memory is really used, not just reserved.
        hoard.append(bytearray(64 * _CHUNK))


def _spin() -> str:
    while True:
        pass


def _fork() -> str:
    # Forks until the system refuses. The children sleep rather than fork in turn, so the
    # growth is only as fast as one loop can go; without a process limit it still has no end.
    children = 0
    while True:
        try:
            pid = os.fork()
        except OSError as err:
            return f"fork failed after {children} children: {err}"
        if pid == 0:
            try:
                time.sleep(3600)
            finally:
                os._exit(0)
        children += 1


def _flood() -> str:
    line = ("x" * 1023 + "\n") * 1024  # 1 MiB
    for _ in range(8 * 1024):  # 8 GiB in total
        sys.stdout.write(line)
    sys.stdout.flush()
    return "printed 8 GiB"


def _kill_parent() -> str:
    parent = os.getppid()
    os.kill(parent, 9)
    return f"sent SIGKILL to the parent process {parent}"


def _connect(address: str) -> str:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"connect needs host:port, not {address!r}")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
        return f"connected to {address}"


def _secret() -> str:
    return os.environ["API_TOKEN"]


def _environ() -> str:
    return "\n".join(f"{key}={value}" for key, value in sorted(os.environ.items()))


_WITHOUT_ARGUMENT = {
    "allocate": _allocate,
    "spin": _spin,
    "fork": _fork,
    "flood": _flood,
    "kill_parent": _kill_parent,
    "secret": _secret,
    "environ": _environ,
}
_WITH_ARGUMENT = {"read": _read, "write": _write, "connect": _connect}


def run(action: str) -> str:
    """Misbehave in the way that `action` names.

    Args:
        action: One of `read:<path>` (return a file's content, or a directory's listing),
            `write:<path>` (create or overwrite a file), `allocate` (use memory without bound),
            `spin` (loop forever), `fork` (create processes until refused), `flood` (print 8 GiB
            to stdout), `kill_parent` (SIGKILL the parent process), `connect:<host>:<port>` (open
            a TCP connection), `secret` (return the secret API_TOKEN) or `environ` (return the
            whole environment).
    """
    verb, has_argument, argument = action.partition(":")
    if verb in _WITH_ARGUMENT and has_argument and argument:
        return _WITH_ARGUMENT[verb](argument)
    if verb in _WITHOUT_ARGUMENT and not has_argument:
        return _WITHOUT_ARGUMENT[verb]()
    known = sorted([f"{v}:<argument>" for v in _WITH_ARGUMENT] + list(_WITHOUT_ARGUMENT))
    raise ValueError(f"unknown action {action!r}; use one of {', '.join(known)}")
