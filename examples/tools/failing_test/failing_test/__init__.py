"""A word counter with a bug that its test catches."""
