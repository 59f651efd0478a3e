"""Formats a byte count the way people read it, using the humanize package."""

import humanize


def run(size_bytes: int, binary: bool = False) -> str:
    """Describe a size in bytes in human terms.

    Args:
        size_bytes: The number of bytes.
        binary: Use powers of 1024 (KiB, MiB) instead of powers of 1000 (kB, MB).
    """
    return humanize.naturalsize(size_bytes, binary=binary)
