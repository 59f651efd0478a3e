"""A tool with one third-party dependency, pinned by a committed uv.lock."""
