"""A greeting tool: the starting point for your own."""
