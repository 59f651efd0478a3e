"""A tool with no dependencies that echoes its input."""
