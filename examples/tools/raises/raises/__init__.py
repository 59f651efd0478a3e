"""A tool that always fails."""
