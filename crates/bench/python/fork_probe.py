"""Times what a zygote does per invocation without any sandbox: fork a child of a process that has
already imported the tool, let the child call the function and exit, and reap it.

Prints one duration in microseconds per line. Usage: python3 fork_probe.py PROJECT_DIR SAMPLES
"""

import os
import sys
import time

sys.path.insert(0, sys.argv[1])
from trivial_tool.tool import run  # noqa: E402

samples = int(sys.argv[2])
for _ in range(samples):
    read_end, write_end = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, run("bench").encode())
        os._exit(0)
    os.read(read_end, 64)
    os.waitpid(pid, 0)
    elapsed = time.perf_counter() - started
    os.close(read_end)
    os.close(write_end)
    print(int(elapsed * 1_000_000))
