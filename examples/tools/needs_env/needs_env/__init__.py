"""A tool that needs one plain environment variable and one secret."""
