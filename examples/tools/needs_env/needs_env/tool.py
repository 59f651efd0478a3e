"""Reads its configuration from the environment, as tools receive env vars and secrets.

By default it shows that it saw both variables without revealing the secret: it returns the
prefix and the token's length. `leak` makes it reveal the token on purpose, in the output, in an
exception or in its logs, so that secret masking can be tested in each place.
"""

import os
import sys
from typing import Literal


def _required(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise RuntimeError(f"the environment variable {name} is not set")
    return value


def run(name: str, leak: Literal["none", "output", "exception", "log"] = "none") -> str:
    """Greet someone with the configured prefix and report the secret token's length.

    Args:
        name: Who to greet.
        leak: Where to reveal the secret API_TOKEN on purpose: "none" (the default), "output"
            (return it), "exception" (raise an error containing it) or "log" (print it to
            stdout and stderr).
    """
    prefix = _required("GREETING_PREFIX")
    token = _required("API_TOKEN")
    if leak == "output":
        return token
    if leak == "exception":
        raise RuntimeError(f"refusing to continue with token {token}")
    if leak == "log":
        print(f"token on stdout: {token}")
        print(f"token on stderr: {token}", file=sys.stderr)
    return f"{prefix} {name} (API_TOKEN has {len(token)} characters)"
