"""A tool that shows the invocation context it was given."""
