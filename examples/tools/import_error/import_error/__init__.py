"""A tool whose entrypoint module cannot be imported."""
