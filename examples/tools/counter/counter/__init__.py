"""A tool that counts its calls in a global variable."""
