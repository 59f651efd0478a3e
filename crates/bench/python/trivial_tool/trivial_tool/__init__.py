"""The benchmark's trivial tool."""
